"""Post-processing chosen per model, on labelled images it did not train on (`receiptflow tune`).

    result = tune(model, cfg, split)               # the val split's maps once, then a grid scored with CLEval
    store(checkpoint, result)                      # into the checkpoint: predict/eval/export use it from then on

The best `thresh`, `box_thresh` and `unclip_ratio` move with the model (the seed team searched them
by hand per model, four reports long); the ensemble already chooses its own on held-out labels
(`model.calibrate`), and this does the same for one model, with the same rules: a small grid around
the model's own settings (`calibrate.THRESH_STEPS`, `calibrate.BOX_THRESH_STEPS`, plus
`UNCLIP_STEPS`), the model's own first, the highest CLEval H-Mean chosen and the earliest of equals
kept (`calibrate.choose`), so a tie keeps the preset's values.

The choice lives in the checkpoint as ``"tuned"``: the options, the split and how many images chose
them, and the H-Mean with and without them. `model.predict.load_model` applies it under any
override the user gives (``models.head.postprocess.thresh=...`` still wins), so `predict`, `eval`,
`export` (ONNX metadata) and the pipeline's components use it without a flag.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from model.calibrate import BOX_THRESH_STEPS, THRESH_STEPS, choose
from model.data.ufo import Split
from model.errors import DataError
from model.metrics import evaluate
from model.predict import detect, eval_loader, image_detections, postprocess_options, to_ufo

UNCLIP_STEPS = (0.0, -0.25, 0.25)
TUNED = ("thresh", "box_thresh", "unclip_ratio")


@dataclass(frozen=True)
class GridPoint:
    settings: dict  # thresh, box_thresh, unclip_ratio
    hmean: float
    precision: float
    recall: float
    words: int


@dataclass(frozen=True)
class TuneResult:
    chosen: dict  # thresh, box_thresh, unclip_ratio
    own: dict  # the checkpoint's settings before tuning
    hmean: float  # the chosen settings' H-Mean on the split
    own_hmean: float
    split: str
    images: int
    rows: list[GridPoint]  # every grid point, grid order (the model's own first)

    def to_json(self) -> dict:
        return {"postprocess": dict(self.chosen), "hmean": round(self.hmean, 6), "own": dict(self.own),
                "own_hmean": round(self.own_hmean, 6), "split": self.split, "images": self.images}

    def summary(self) -> str:
        show = ", ".join(f"{k} {self.chosen[k]:g}" for k in TUNED)
        was = ", ".join(f"{k} {self.own[k]:g}" for k in TUNED)
        if self.chosen == self.own:
            return (f"post-processing: kept {show}: H-Mean {self.hmean:.4f} on {self.images} {self.split} images, "
                    f"no grid point of {len(self.rows)} did better")
        return (f"post-processing: tuned on {self.images} {self.split} images to {show}: H-Mean {self.hmean:.4f} "
                f"(was {self.own_hmean:.4f} with {was})")


def grid(own: Mapping) -> list[dict]:
    """The settings to try: the model's own first, then steps around it (invalid ones left out)."""
    points = []
    for dt, db, du in itertools.product(THRESH_STEPS, BOX_THRESH_STEPS, UNCLIP_STEPS):
        p = {"thresh": round(own["thresh"] + dt, 4), "box_thresh": round(own["box_thresh"] + db, 4),
             "unclip_ratio": round(own["unclip_ratio"] + du, 4)}
        if 0 < p["thresh"] < 1 and 0 <= p["box_thresh"] < 1 and p["unclip_ratio"] > 0 and p not in points:
            points.append(p)
    return points


@torch.no_grad()
def tune(model, cfg, split: Split, *, device: torch.device | None = None, workers: int = 0,
         progress: bool = False) -> TuneResult:
    """Choose `TUNED` for `model` on the labelled `split` (maps computed once, every grid point scored)."""
    if not split.images or not any(split.images.values()):
        raise DataError(f"tune: the {split.name} split ({split.image_dir}) has no labelled words to tune on")
    pp = dict(cfg.models.head.postprocess)
    options = postprocess_options(pp)
    own = {k: float(options[k]) for k in TUNED}
    maps = {}
    detect(model, eval_loader(split, cfg), device or torch.device("cpu"), postprocess=pp, progress=progress,
           on_map=lambda name, prob, m, size: maps.__setitem__(name, (prob, m, size)))
    rows = []
    points = grid(own)
    for p in points:
        found = to_ufo({name: image_detections(prob, m, size, {**options, **p}) for name, (prob, m, size) in maps.items()})
        r = evaluate(split.images, found, workers=workers)
        rows.append(GridPoint(p, r.hmean, r.precision, r.recall, sum(len(w) for w in found.values())))
    best = choose(rows)
    return TuneResult(dict(best.settings), own, best.hmean, rows[0].hmean, split.name, len(maps), rows)


def apply_tuned(cfg, saved: Mapping) -> None:
    """Put a checkpoint's tuned post-processing (if any) into `cfg` (before the user's overrides)."""
    tuned = saved.get("tuned")
    if isinstance(tuned, Mapping) and isinstance(tuned.get("postprocess"), Mapping):
        for key in TUNED:
            if key in tuned["postprocess"]:
                cfg.models.head.postprocess[key] = float(tuned["postprocess"][key])


def store(checkpoint, result: TuneResult) -> None:
    """Write `result` into the checkpoint file (atomically; weights and training state unchanged)."""
    from model.checkpoint import load_checkpoint, save_checkpoint

    payload = load_checkpoint(checkpoint)
    payload["tuned"] = result.to_json()
    save_checkpoint(checkpoint, payload)
