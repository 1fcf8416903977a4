"""Per-model post-processing (model/tune.py, `receiptflow tune`): the grid, the choice, where it is stored
and who uses it -- on the session's learned detector (tests/learned.py), whose training tuned its best.pt."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from omegaconf import OmegaConf

from model.checkpoint import load_checkpoint
from model.cli import main
from model.data.ufo import DatasetRoot
from model.errors import DataError
from model.evaluate import validate
from model.predict import eval_loader, load_model, predict
from model.tune import TUNED, GridPoint, apply_tuned, decide, grid, tune


def test_grid_starts_with_the_models_own_and_steps_around_it_inside_the_valid_range():
    own = {"thresh": 0.29, "box_thresh": 0.25, "unclip_ratio": 2.0}
    points = grid(own)
    assert points[0] == own and len(points) == len({tuple(p.values()) for p in points}) == 5 * 3 * 3
    assert sorted({p["thresh"] for p in points}) == [0.23, 0.26, 0.29, 0.32, 0.35]
    assert sorted({p["box_thresh"] for p in points}) == [0.25, 0.3, 0.35]
    assert sorted({p["unclip_ratio"] for p in points}) == [1.75, 2.0, 2.25]
    edge = grid({"thresh": 0.03, "box_thresh": 0.95, "unclip_ratio": 0.2})  # steps outside (0, 1) / <= 0 dropped
    assert all(0 < p["thresh"] < 1 and p["box_thresh"] < 1 and p["unclip_ratio"] > 0 for p in edge)
    assert edge[0] == {"thresh": 0.03, "box_thresh": 0.95, "unclip_ratio": 0.2} and len(edge) < len(points)


def test_the_best_point_is_taken_only_when_its_gain_is_twice_its_standard_error():
    def point(values):
        return GridPoint({}, sum(values) / len(values), 0, 0, 0, tuple(values))

    mine = point([0.95, 0.97, 0.99, 0.96] * 6)
    steady = point([v + 0.002 for v in mine.per_image])  # +0.002 on every image: no noise at all
    assert decide(steady, mine) == (steady, pytest.approx(0.0, abs=1e-12))
    noisy = point([v + d for v, d in zip(mine.per_image, [0.03, -0.025] * 12)])  # +0.0025 on average, sd 0.028
    taken, se = decide(noisy, mine)
    assert taken is mine and 0.005 < se < 0.007
    clear = point([v + d for v, d in zip(mine.per_image, [0.012, 0.004] * 12)])  # +0.008, se 0.0008
    assert decide(clear, mine)[0] is clear
    assert decide(mine, mine)[0] is mine  # no gain: the model's own


def test_apply_tuned_sets_the_three_settings_and_nothing_else():
    cfg = OmegaConf.create(
        {
            "models": {
                "head": {"postprocess": {"thresh": 0.3, "box_thresh": 0.7, "unclip_ratio": 1.5, "max_candidates": 1000}}
            }
        }
    )
    apply_tuned(cfg, {"model": {}})  # an untuned checkpoint: unchanged
    assert cfg.models.head.postprocess.thresh == 0.3
    apply_tuned(cfg, {"tuned": {"postprocess": {"thresh": 0.25, "box_thresh": 0.4, "unclip_ratio": 2.0}}})
    assert dict(cfg.models.head.postprocess) == {
        "thresh": 0.25,
        "box_thresh": 0.4,
        "unclip_ratio": 2.0,
        "max_candidates": 1000,
    }


@pytest.mark.slow
def test_training_tunes_best_pt_on_val_and_says_so(learned):
    saved = load_checkpoint(learned.out / "best.pt")
    tuned = saved["tuned"]
    assert tuned["split"] == "val" and tuned["images"] == len(DatasetRoot(learned.root).load("val").images)
    assert set(tuned["postprocess"]) == set(TUNED) and tuned["own"] == {
        k: float(saved["config"]["models"]["head"]["postprocess"][k]) for k in TUNED
    }
    assert tuned["hmean"] >= tuned["own_hmean"] > 0.5  # the model's own settings are a grid point
    assert f"{learned.out / 'best.pt'}: post-processing: " in learned.stdout
    assert "tuned" not in load_checkpoint(learned.out / "last.pt")  # only the checkpoint that goes on is tuned


@pytest.mark.slow
def test_the_stored_choice_is_the_grids_best_and_eval_reproduces_its_hmean(learned):
    model, cfg = load_model(learned.out / "best.pt", tuned=False)
    val = DatasetRoot(learned.root).load("val")
    result = tune(model, cfg, val)
    assert result.rows[0].settings == result.own and result.rows[0].hmean == result.own_hmean
    best = max(r.hmean for r in result.rows)
    assert result.best_hmean == best and next(r for r in result.rows if r.hmean == best).settings == result.best
    assert result.chosen in (result.best, result.own) and result.hmean in (result.best_hmean, result.own_hmean)
    assert all(
        r.hmean == pytest.approx(sum(r.per_image) / len(r.per_image)) for r in result.rows
    )  # val/hmean: a mean over images
    stored = load_checkpoint(learned.out / "best.pt")["tuned"]
    assert stored["postprocess"] == result.chosen and stored["hmean"] == round(result.hmean, 6)  # deterministic
    # load_model applies it: eval with the tuned checkpoint scores what tune said
    tuned_model, tuned_cfg = load_model(learned.out / "best.pt")
    assert {k: tuned_cfg.models.head.postprocess[k] for k in TUNED} == result.chosen
    r = validate(
        tuned_model,
        eval_loader(val, tuned_cfg),
        val,
        torch.device("cpu"),
        postprocess_options=OmegaConf.to_container(tuned_cfg.models.head.postprocess),
    )
    assert r.hmean == pytest.approx(result.hmean, abs=1e-9)
    # an override still wins over the stored choice
    _, over = load_model(learned.out / "best.pt", ["models.head.postprocess.thresh=0.41"])
    assert over.models.head.postprocess.thresh == 0.41


@pytest.mark.slow
def test_cli_tune_stores_the_choice_and_predict_uses_it(learned, tmp_path, capsys):
    ckpt = tmp_path / "last.pt"
    shutil.copy(learned.out / "last.pt", ckpt)
    assert main(["tune", str(ckpt), "--dry-run", "--json", "--test", "test"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert "tuned" not in load_checkpoint(ckpt) and set(dry) >= {
        "postprocess",
        "hmean",
        "own_hmean",
        "test_own_hmean",
        "test_chosen_hmean",
    }
    assert main(["tune", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert "post-processing: " in out and f"stored in {ckpt}" in out
    saved = load_checkpoint(ckpt)
    assert saved["tuned"]["postprocess"] == dry["postprocess"]
    assert all(torch.equal(saved["model"][k], v) for k, v in load_checkpoint(learned.out / "last.pt")["model"].items())
    # predict runs with the stored settings: the same words as the same checkpoint given them as overrides
    words = predict(ckpt, learned.root, split="test")
    given = predict(
        learned.out / "last.pt",
        learned.root,
        split="test",
        overrides=[f"models.head.postprocess.{k}={v}" for k, v in dry["postprocess"].items()],
    )
    assert {n: [w.points.tolist() for w in ws.values()] for n, ws in words.items()} == {
        n: [w.points.tolist() for w in ws.values()] for n, ws in given.items()
    }


def test_tune_refuses_a_split_without_labelled_words(synth_root, tmp_path):
    from model.config import load_config
    from model.net import build_model

    empty = DatasetRoot(synth_root).load("test")
    for words in empty.images.values():
        words.clear()
    cfg = load_config(["preset=cpu_tiny", "dataset.image_size=128"])
    with pytest.raises(DataError, match="has no labelled words to tune on"):
        tune(build_model(cfg.models), cfg, empty)
