"""Probability-map fusion (model/fusion.py) and stored maps (model/probmaps.py, predict --maps)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from model.cli import main
from model.data.ufo import read_ufo
from model.errors import DataError
from model.fusion import fuse_maps, fused_detections, map_ensemble, normalized_weights
from model.postprocess import postprocess
from model.predict import detect, eval_loader, image_split, load_model, on_image
from model.probmaps import ProbMap, dequantize, list_maps, map_paths, quantize, read_map, write_map
from tests.test_predict import trained  # noqa: F401 - the tiny trained model fixture

PP = {"thresh": 0.29, "box_thresh": 0.25, "max_candidates": 600, "unclip_ratio": 2.0, "mode": "polygon"}
# canvas -> original: scale 2 and a shift, as a resize + pad gives
MATRIX = np.array([[2.0, 0, 0.5], [0, 2.0, 0.25], [0, 0, 1]])


def text_map(seed: int = 0, size: int = 96) -> np.ndarray:
    """A smooth float32 map with a few text-like blobs and background noise."""
    rng = np.random.default_rng(seed)
    prob = rng.uniform(0, 0.2, (size, size)).astype(np.float32)
    for _ in range(6):
        x, y = rng.integers(4, size - 30), rng.integers(4, size - 12)
        prob[y : y + rng.integers(5, 10), x : x + rng.integers(12, 28)] = rng.uniform(0.5, 0.95)
    return prob


def pm(prob, name="r.jpg", matrix=MATRIX, size=(190, 190), pp=PP) -> ProbMap:
    return ProbMap(name, prob, np.asarray(matrix, np.float64), size, pp)


def points(dets):
    return [d.points.tolist() for d in dets]


def test_k_identical_maps_give_the_single_model_words_exactly():
    prob = text_map()
    single = fused_detections([pm(prob)])
    assert single, "the map should hold words"
    for weights in (None, [1, 2, 3], [0.1, 0.7, 0.2]):
        fused = fuse_maps([pm(prob)] * 3, weights)
        assert fused.dtype == np.float32 and np.array_equal(fused, prob)
        assert points(fused_detections([pm(prob)] * 3, weights)) == points(single)
    # stored 8-bit levels too: every level comes back as the single map's float32 value
    levels = ProbMap("r.jpg", np.arange(256, dtype=np.uint8).reshape(16, 16), MATRIX, (32, 32), PP, 255)
    for weights in ([1, 1, 1], [0.3, 0.9, 1.7], [5, 0, 1e-3]):
        assert np.array_equal(fuse_maps([levels] * 3, weights), levels.prob)
    # and the same as post-processing the map directly, then clipping to the image
    assert points(single) == points(on_image(postprocess(prob, to_original=MATRIX, **PP), 190, 190))


def test_a_zero_weight_fold_of_zero_maps_changes_nothing():
    a, b = text_map(1), text_map(2)
    zero = np.zeros_like(a)
    assert np.array_equal(fuse_maps([pm(a), pm(b), pm(zero)], [1, 1, 0]), fuse_maps([pm(a), pm(b)]))
    assert points(fused_detections([pm(a), pm(zero)], [1, 0])) == points(fused_detections([pm(a)]))


def test_weights_are_normalised():
    a, b = text_map(1), text_map(2)
    assert np.array_equal(fuse_maps([pm(a), pm(b)], [2, 2]), fuse_maps([pm(a), pm(b)]))
    twice = fuse_maps([pm(a), pm(b)], [2, 1])
    assert np.allclose(twice, fuse_maps([pm(a), pm(a), pm(b)]), atol=1e-7)
    assert np.allclose(twice, (2 * a.astype(np.float64) + b) / 3, atol=1e-7)
    assert normalized_weights([2, 1, 1], 3).tolist() == [0.5, 0.25, 0.25]
    for bad in ([0, 0], [1, -1], [1, float("nan")], [1]):
        with pytest.raises(DataError, match="weight"):
            fuse_maps([pm(a), pm(b)], bad)


def test_maps_on_different_canvases_are_refused_naming_the_image():
    a = text_map()
    with pytest.raises(DataError, match=r"image 'r\.jpg'.*different canvas.*map shape"):
        fuse_maps([pm(a), pm(a[:, :80])])
    with pytest.raises(DataError, match=r"image 'r\.jpg'.*different canvas.*matrix"):
        fuse_maps([pm(a), pm(a, matrix=MATRIX * [[1.01], [1], [1]])])
    with pytest.raises(DataError, match=r"image 'r\.jpg'.*different canvas.*original size"):
        fuse_maps([pm(a), pm(a, size=(190, 191))])


def test_post_processing_settings_come_from_the_maps_unless_given():
    a = text_map()
    low = fused_detections([pm(a, pp={**PP, "thresh": 0.1})])
    assert points(low) == points(fused_detections([pm(a)], postprocess={"thresh": 0.1}))
    assert points(low) != points(fused_detections([pm(a)]))
    with pytest.raises(DataError, match=r"different thresh.*--thresh"):
        fused_detections([pm(a), pm(a, pp={**PP, "thresh": 0.1})])
    assert points(fused_detections([pm(a), pm(a, pp={**PP, "thresh": 0.1})], postprocess={"thresh": 0.29})) == points(
        fused_detections([pm(a)])
    )


def test_quantisation_keeps_the_binarization_at_the_recorded_thresh():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 200_000).astype(np.float32)
    p[:1000] = np.float32(0.29) + rng.uniform(-0.003, 0.003, 1000).astype(np.float32)  # crowd the threshold
    for t in (0.29, 0.05, 0.5):
        back = dequantize(quantize(p, t))
        assert np.array_equal(back > np.float32(t), p > np.float32(t))
        assert np.abs(back - p).max() <= 1 / 255 + 1e-6
    plain = dequantize(quantize(p))
    assert np.abs(plain - p).max() <= 0.5 / 255 + 1e-6
    assert quantize(np.array([np.nan, -1, 2], np.float32)).tolist() == [0, 0, 255]


def test_stored_map_round_trip(tmp_path):
    prob = text_map()
    side = write_map(tmp_path, "a b.jpg", prob, MATRIX, (190, 190), PP, tta=False)
    assert side.name == "a b.jpg.json" and (tmp_path / "a b.jpg.png").is_file()
    assert list_maps(tmp_path) == ["a b.jpg"]
    back = read_map(tmp_path, "a b.jpg")
    assert back.data.dtype == np.uint8 and back.scale == 255
    assert np.array_equal(back.to_original, MATRIX) and back.original_size == (190, 190) and back.postprocess == PP
    assert np.array_equal(back.prob > 0.29, prob > np.float32(0.29))
    assert json.loads(side.read_text())["exact_at_thresh"] == 0.29


@pytest.mark.parametrize("name", ["../evil.jpg", "a/b.jpg", "..", "x.txt", ""])
def test_map_file_names_never_leave_the_folder(tmp_path, name):
    folder = tmp_path / "maps"
    with pytest.raises(DataError, match="file name"):
        write_map(folder, name, text_map(), MATRIX, (190, 190), PP)
    with pytest.raises(DataError, match="file name"):
        map_paths(folder, name)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_a_bad_sidecar_is_a_clear_error(tmp_path):
    write_map(tmp_path, "a.jpg", text_map(), MATRIX, (190, 190), PP)
    (tmp_path / "a.jpg.json").write_text(json.dumps({"format": "receiptflow.probmap/1", "image": "b.jpg"}))
    with pytest.raises(DataError, match=r"a\.jpg\.json: not a probability-map sidecar"):
        read_map(tmp_path, "a.jpg")


def test_map_ensemble_needs_the_same_images_in_every_folder(tmp_path):
    for folder, names in (("m0", ["a.jpg", "b.jpg"]), ("m1", ["a.jpg"])):
        for n in names:
            write_map(tmp_path / folder, n, text_map(), MATRIX, (190, 190), PP)
    with pytest.raises(DataError, match=r"image 'b\.jpg' has a map in .*m0 but not in .*m1"):
        map_ensemble([tmp_path / "m0", tmp_path / "m1"])
    fused = map_ensemble([tmp_path / "m0", tmp_path / "m0"], weights=[1, 3])
    assert sorted(fused) == ["a.jpg", "b.jpg"] and fused["a.jpg"]


def test_the_float_maps_of_a_trained_model_fuse_back_to_its_words(trained):  # noqa: F811
    """K copies of a real model's maps (any weights) → the words detect() gives, exactly."""
    root, ckpt = trained
    model, cfg = load_model(ckpt, ["models.head.postprocess.thresh=0.05", "models.head.postprocess.box_thresh=0.05"])
    maps = {}
    pp = OmegaConf.to_container(cfg.models.head.postprocess)
    dets = detect(
        model,
        eval_loader(image_split(root, "test"), cfg),
        torch.device("cpu"),
        postprocess=pp,
        on_map=lambda n, p, m, s: maps.__setitem__(n, ProbMap(n, p.copy(), m, s)),
    )
    assert sum(map(len, dets.values())), "nothing detected even at threshold 0.05"
    opts = {
        "thresh": 0.05,
        "box_thresh": 0.05,
        "max_candidates": pp["max_candidates"],
        "unclip_ratio": pp["unclip_ratio"],
        "mode": "polygon",
    }
    for name, m in maps.items():
        assert points(fused_detections([m] * 5, [1, 0.5, 2, 1, 1], postprocess=opts)) == points(dets[name])


def test_predict_maps_then_fuse_one_model_gives_predicts_words(trained, tmp_path, capsys):  # noqa: F811
    root, ckpt = trained
    low = ["models.head.postprocess.thresh=0.05", "models.head.postprocess.box_thresh=0.05"]
    assert main(["predict", str(ckpt), str(root), "-o", str(tmp_path / "plain.json"), *low]) == 0
    assert (
        main(
            ["predict", str(ckpt), str(root), "-o", str(tmp_path / "kept.json"), "--maps", str(tmp_path / "maps"), *low]
        )
        == 0
    )
    plain, kept = read_ufo(tmp_path / "plain.json")[0], read_ufo(tmp_path / "kept.json")[0]
    assert sum(map(len, plain.values())), "nothing detected even at threshold 0.05"
    assert {n: [w.points.tolist() for w in ws.values()] for n, ws in plain.items()} == {
        n: [w.points.tolist() for w in ws.values()] for n, ws in kept.items()
    }
    assert list_maps(tmp_path / "maps") == sorted(plain)
    for k in (1, 3):
        out = tmp_path / f"fused{k}.json"
        assert main(["ensemble", "--mode", "maps", "-o", str(out), *[str(tmp_path / "maps")] * k]) == 0
        fused = read_ufo(out)[0]
        assert {n: [w.points.tolist() for w in ws.values()] for n, ws in fused.items()} == {
            n: [w.points.tolist() for w in ws.values()] for n, ws in plain.items()
        }
    assert "maps of 3 models averaged" in capsys.readouterr().out

    # a model predicting on another canvas: refused, naming an image
    assert (
        main(
            [
                "predict",
                str(ckpt),
                str(root),
                "-o",
                str(tmp_path / "big.json"),
                "--maps",
                str(tmp_path / "big"),
                "dataset.image_size=160",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(
            [
                "ensemble",
                "--mode",
                "maps",
                "-o",
                str(tmp_path / "x.json"),
                str(tmp_path / "maps"),
                str(tmp_path / "big"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "different canvas" in err and "image '" in err and "big" in err


def test_ensemble_cli_keeps_each_modes_options_to_itself(tmp_path, capsys):
    write_map(tmp_path / "m", "a.jpg", text_map(), MATRIX, (190, 190), PP)
    assert (
        main(["ensemble", "--mode", "maps", "--min-vote", "2", "-o", str(tmp_path / "o.json"), str(tmp_path / "m")])
        == 2
    )
    assert "--min-vote" in capsys.readouterr().err
    assert main(["ensemble", "--thresh", "0.3", "-o", str(tmp_path / "o.json"), str(tmp_path / "m")]) == 2
    assert "--thresh" in capsys.readouterr().err
    assert main(["ensemble", "-o", str(tmp_path / "o.json"), str(tmp_path / "m")]) == 2
    assert "--mode maps" in capsys.readouterr().err
    assert (
        main(
            [
                "ensemble",
                "--mode",
                "maps",
                "--thresh",
                "0.5",
                "--scores",
                "-o",
                str(tmp_path / "o.json"),
                str(tmp_path / "m"),
            ]
        )
        == 0
    )
    words = read_ufo(tmp_path / "o.json")[0]["a.jpg"].values()
    assert words and all(w.score >= 0.25 for w in words)
