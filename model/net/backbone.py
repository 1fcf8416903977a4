"""The encoder: a timm backbone in `features_only` mode, with its weights from the hub or a file.

Channels and strides come from timm's `feature_info` (efficientnet_b4, out_indices 1-4: 32/56/160/448
channels at strides 4/8/16/32), never from a table here, so any timm model with a feature pyramid
works. Weights: `pretrained=True` downloads timm's ImageNet weights (the cluster has the hub);
`weights=PATH` loads a local state dict instead (see `load_weights`), and `weights=pkg:NAME` the
ImageNet weights a pip package ships (`model.net.weight_packages`); either wins over `pretrained`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from model.errors import DataError
from model.net.weight_packages import is_package_spec, read_package

# Wrappers a state dict may come in: training checkpoints ({"model": ...}), DataParallel ("module."),
# a whole DBNet ("encoder.body.").
_CONTAINER_KEYS = ("state_dict", "model", "module")
_PREFIXES = ("module.", "encoder.body.", "body.", "backbone.")


class Backbone(nn.Module):
    """`forward(image) -> [feature maps]`, finest first; `channels` and `strides` per level."""

    def __init__(
        self,
        model_name: str,
        *,
        pretrained: bool = False,
        weights: str | Path | None = None,
        out_indices: Sequence[int] = (1, 2, 3, 4),
    ):
        super().__init__()
        self.body = create_features_model(model_name, pretrained=pretrained and not weights, out_indices=out_indices)
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.strides: list[int] = list(self.body.feature_info.reduction())
        self.out_indices: list[int] = list(out_indices)
        # every level the model has (not only the chosen ones): what an error can suggest instead
        self.level_strides: list[int] = [int(level["reduction"]) for level in self.body.feature_info.info]
        if weights:
            load_weights(self.body, weights, model_name=model_name)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(image))


def create_features_model(model_name: str, *, pretrained: bool, out_indices: Sequence[int]) -> nn.Module:
    # imported here, not at the top: timm loads torchvision and torch._dynamo (~1.5 s), which the
    # CLI's other commands and test collection, importing model.net only, need not pay
    import timm

    if ":" not in model_name and not timm.is_model(model_name):  # hf-hub:... names are timm's to resolve
        close = difflib.get_close_matches(model_name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else " (see timm.list_models())"
        raise DataError(f"models.encoder.model_name: {model_name!r} is not a timm model{hint}")
    try:
        return timm.create_model(model_name, pretrained=pretrained, features_only=True, out_indices=tuple(out_indices))
    except Exception as exc:
        if pretrained:  # the download: hub unreachable, no weights for this model, ...
            raise DataError(
                f"models.encoder: cannot create {model_name} with pretrained weights ({type(exc).__name__}: {exc}); "
                "without the model hub set models.encoder.pretrained=false or models.encoder.weights=PATH"
            ) from exc
        if isinstance(exc, (IndexError, AssertionError, ValueError)):
            raise DataError(
                f"models.encoder: {model_name} cannot give features out_indices={list(out_indices)} ({exc})"
            ) from None
        raise


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from `path`: torch.load(weights_only=True), or safetensors for *.safetensors.

    Unwraps {"state_dict": ...} / {"model": ...} containers. Errors name the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: weights file does not exist (models.encoder.weights)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling/zip/safetensors errors have no common base
        raise DataError(
            f"{path}: cannot read weights file ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    for _ in range(2):
        if isinstance(obj, Mapping) and not _is_tensor_dict(obj):
            inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not obj or not _is_tensor_dict(obj):
        raise DataError(f"{path}: not a state dict (expected a mapping of parameter names to tensors)")
    return dict(obj)


def load_weights(body: nn.Module, weights: str | Path, *, model_name: str | None = None) -> None:
    """Load a state dict file, or a weights package (`pkg:NAME`), into the features model `body`,
    checking that it fits.

    Accepted: the features model's own state dict, the full timm classification model's (the
    classifier and other unused keys are ignored), a DBNet checkpoint's encoder, or a package of
    `model.net.weight_packages` (for the encoder `model_name` it names). Every parameter and buffer
    of `body` must be present with its shape (BatchNorm's `num_batches_tracked` may be absent);
    otherwise a DataError names the file and the first offending keys.
    """
    expected = body.state_dict()
    if is_package_spec(weights):
        state, path = read_package(str(weights), model_name, expected)
    else:
        path = Path(weights)
        state = _strip_prefixes(read_state_dict(path), expected)
    # Feature wrappers may flatten module names (`stages.0` -> `stages_0`): match on a normal form.
    norm = {_normal(k): k for k in state}
    if len(norm) != len(state):
        norm = {k: k for k in state}
    loaded, missing, wrong = {}, [], []
    for key, value in expected.items():
        src = state.get(key, state.get(norm.get(_normal(key), ""), None))
        if src is None:
            if key.endswith("num_batches_tracked"):
                loaded[key] = value
            else:
                missing.append(key)
        elif tuple(src.shape) != tuple(value.shape):
            wrong.append(f"{key} {tuple(src.shape)} != {tuple(value.shape)}")
        else:
            loaded[key] = src.to(value.dtype)
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of {len(expected)} backbone tensors missing (e.g. {', '.join(missing[:3])})")
        if wrong:
            parts.append(f"{len(wrong)} with other shapes (e.g. {'; '.join(wrong[:3])})")
        raise DataError(
            f"{path}: weights do not fit the backbone: {'; '.join(parts)}; was the file saved from another model_name?"
        )
    body.load_state_dict(loaded, strict=True)


def _is_tensor_dict(obj: Mapping) -> bool:
    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _strip_prefixes(state: dict[str, torch.Tensor], expected: Mapping) -> dict[str, torch.Tensor]:
    for _ in range(len(_PREFIXES)):
        if any(k in expected for k in state):
            break
        for prefix in _PREFIXES:
            if any(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
                break
        else:
            break
    return state


def _normal(key: str) -> str:
    return key.replace(".", "_")
