"""`receiptflow export` and predicting with the .onnx it writes (model/onnx_model.py): onnxruntime gives the torch
model's probability maps on real receipts at several canvas sizes (tolerance 1e-4 absolute on a probability, what
float32 reassociation between the two runtimes leaves: ~5e-7 measured on a trained Lite0 model) for the presets'
encoders, the same words as the checkpoint through `predict`, and `score` takes its output unchanged; a corrupt or
foreign .onnx file is one line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from model.checkpoint import save_checkpoint
from model.cli import main
from model.config import load_config
from model.net import build_model

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4  # |p_onnx - p_torch| on a probability map
SIZES = [320, 448, 640]  # dataset.image_size: the canvas of each prediction


def preset_checkpoint(tmp_path, preset: str, *overrides: str):
    """A checkpoint of `preset`'s network as built (its encoder's ImageNet weights where the preset loads a
    package's; otherwise random), trained by nobody: export and parity need no training."""
    cfg = load_config([f"preset={preset}", *overrides])
    torch.manual_seed(0)
    model = build_model(cfg.models)
    path = tmp_path / f"{preset}.pt"
    save_checkpoint(path, {"model": model.state_dict(), "config": OmegaConf.to_container(cfg), "epoch": 0})
    return path


def maps(model_path, root, size: int) -> dict[str, np.ndarray]:
    """Each validation image's probability map (canvas `size`) through model.predict's own path."""
    from model.data.ufo import DatasetRoot
    from model.predict import detect, eval_loader, load_model

    model, cfg = load_model(model_path, [f"dataset.image_size={size}", "dataset.batch_size=2", "dataset.num_workers=0"])
    split = DatasetRoot(root).load("val", strict=False)
    keep = sorted(split.images)[:3]
    split = dataclasses.replace(
        split, images={n: split.images[n] for n in keep}, sizes={n: split.sizes[n] for n in keep}
    )
    out = {}
    detect(
        model,
        eval_loader(split, cfg),
        torch.device("cpu"),
        postprocess=OmegaConf.to_container(cfg.models.head.postprocess),
        on_map=lambda name, prob, *_: out.__setitem__(name, prob.copy()),
    )
    return out


@pytest.mark.parametrize("preset", ["cpu_tiny", "cpu_receipts", "lite2_960"])
def test_onnx_maps_equal_the_torch_models_on_real_receipts_at_several_sizes(tmp_path, sroie_root, preset):
    """cpu_tiny's encoder and the ImageNet Lite0/Lite2 of cpu_receipts/lite2_960 (TensorFlow 'same' padding, timm's Conv2dSame,
    whose pads the tracer fixes: the same for every multiple of 32)."""
    ckpt = preset_checkpoint(tmp_path, preset)
    assert main(["export", str(ckpt), "-o", str(tmp_path / "m.onnx")]) == 0
    for size in SIZES:
        ours, theirs = maps(ckpt, sroie_root, size), maps(tmp_path / "m.onnx", sroie_root, size)
        assert ours.keys() == theirs.keys() and len(ours) == 3
        for name in ours:
            assert ours[name].shape == theirs[name].shape
            assert float(np.abs(ours[name] - theirs[name]).max()) <= TOLERANCE, (preset, size, name)


@pytest.mark.slow  # B4 exports in ~1 min on 2 cores
def test_the_b4_preset_exports_and_matches(tmp_path, sroie_root):
    ckpt = preset_checkpoint(tmp_path, "efficientnet_b4_lr_optimized", "models.encoder.pretrained=false")
    assert main(["export", str(ckpt), "-o", str(tmp_path / "b4.onnx")]) == 0
    ours, theirs = maps(ckpt, sroie_root, 448), maps(tmp_path / "b4.onnx", sroie_root, 448)
    assert max(float(np.abs(ours[n] - theirs[n]).max()) for n in ours) <= TOLERANCE


def test_the_file_carries_what_a_user_needs_to_run_it(tmp_path):
    import onnx

    ckpt = preset_checkpoint(tmp_path, "cpu_tiny", "models.head.postprocess.box_thresh=0.41")
    main(["export", str(ckpt), "-o", str(tmp_path / "m.onnx")])
    proto = onnx.load(tmp_path / "m.onnx")
    meta = {p.key: p.value for p in proto.metadata_props}
    pre = json.loads(meta["receiptflow.preprocess"])
    cfg = load_config(["preset=cpu_tiny"])
    assert pre["canvas"] == cfg.dataset.image_size and pre["stride"] == 32 and pre["channels"] == "RGB"
    assert pre["mean"] == [0.485, 0.456, 0.406] and pre["std"] == [0.229, 0.224, 0.225]
    assert json.loads(meta["receiptflow.postprocess"])["box_thresh"] == 0.41
    source = json.loads(meta["receiptflow.source"])
    assert source["opset"] == 18 and "TorchScript" in source["exporter"] and len(source["sha256"]) == 64
    dims = [
        [d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim]
        for x in (proto.graph.input[0], proto.graph.output[0])
    ]
    assert dims == [["batch", 3, "height", "width"], ["batch", "height", "width"]]


@pytest.mark.slow
def test_predict_with_the_onnx_file_gives_the_checkpoints_words_and_score_takes_them(learned, tmp_path, capsys):
    onnx_path = tmp_path / "learned.onnx"
    assert main(["export", str(learned.checkpoint), "-o", str(onnx_path)]) == 0
    for split in ("val", "test"):
        outs = {}
        for name, model in (("pt", learned.checkpoint), ("onnx", onnx_path)):
            outs[name] = tmp_path / f"{name}-{split}.json"
            assert (
                main(["predict", str(model), str(learned.root), "--split", split, "--scores", "-o", str(outs[name])])
                == 0
            )
        pt, ox = (json.loads(outs[k].read_text())["images"] for k in ("pt", "onnx"))
        assert pt.keys() == ox.keys()
        words = sum(len(v["words"]) for v in pt.values())
        assert words > 0
        for image in pt:
            a, b = pt[image]["words"], ox[image]["words"]
            assert [w["points"] for w in a.values()] == [w["points"] for w in b.values()], image
            assert np.allclose([w["score"] for w in a.values()], [w["score"] for w in b.values()], atol=TOLERANCE)
    gt = learned.root / "jsons" / "val.json"
    capsys.readouterr()
    assert main(["score", str(gt), str(tmp_path / "onnx-val.json"), "--json"]) == 0
    onnx_score = json.loads(capsys.readouterr().out)
    assert main(["score", str(gt), str(tmp_path / "pt-val.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == onnx_score


def test_a_corrupt_or_foreign_onnx_file_is_one_line(tmp_path, synth_root, capsys):
    import onnx
    from onnx import TensorProto, helper

    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x07not a model" * 10)
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), tmp_path / "foreign.onnx")
    for name, message in (
        ("corrupt", "not a readable ONNX model"),
        ("foreign", "without receiptflow's metadata"),
        ("missing", "no such file"),
    ):
        assert main(["predict", str(tmp_path / f"{name}.onnx"), str(synth_root), "-o", str(tmp_path / "o.json")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and f"{name}.onnx" in err[0], err


def test_export_wants_an_onnx_name_and_a_checkpoint(tmp_path, capsys):
    ckpt = preset_checkpoint(tmp_path, "cpu_tiny")
    assert main(["export", str(ckpt), "-o", str(tmp_path / "model.pt")]) == 2
    assert "expected a .onnx file name" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "none.pt"), "-o", str(tmp_path / "m.onnx")]) == 2
    assert "checkpoint file is missing" in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()


@pytest.mark.slow
def test_the_ten_lines_of_docs_deploy_find_the_words_predict_finds(learned, tmp_path, monkeypatch):
    """docs/deploy.md's serving sketch (onnxruntime, OpenCV, NumPy; box mode), run as written on a trained model's
    test receipts: about as many boxes as `predict` finds words, most of them on a word it found."""
    import re

    import shapely

    from model.predict import predict

    code = re.search(r"```python\n(.*?)```", (REPO / "docs" / "deploy.md").read_text(), re.S)[1]
    assert len(code.strip().splitlines()) == 10
    onnx_path = tmp_path / "model.onnx"
    assert main(["export", str(learned.checkpoint), "-o", str(onnx_path)]) == 0
    words = predict(onnx_path, learned.root, split="test")
    monkeypatch.chdir(tmp_path)
    found = matched = 0
    for name, image_words in words.items():
        (tmp_path / "receipt.jpg").write_bytes((learned.root / "images" / "test" / name).read_bytes())
        scope: dict = {}
        exec(compile(code, "docs/deploy.md", "exec"), scope)
        ours = [shapely.Polygon(w.points) for w in image_words.values()]
        found += len(ours)
        for box in scope["boxes"]:
            sketch = shapely.Polygon(box)
            matched += any(sketch.intersection(p).area > 0.5 * min(sketch.area, p.area) for p in ours)
        assert abs(len(scope["boxes"]) - len(ours)) <= max(3, 0.25 * len(ours)), name
    assert found > 0 and matched >= 0.8 * found
