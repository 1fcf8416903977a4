"""Post-processing chosen per model, on labelled images it did not train on (`receiptflow tune`).

    result = tune(model, cfg, split)               # the val split's maps once, then a grid scored with CLEval
    store(checkpoint, result)                      # into the checkpoint: predict/eval/export use it from then on

The best `thresh`, `box_thresh` and `unclip_ratio` move with the model (the seed team searched them
by hand per model, four reports long); the ensemble already chooses its own on held-out labels
(`model.calibrate`), and this does the same for one model, with the same rules: a small grid around
the model's own settings (`calibrate.THRESH_STEPS`, `calibrate.BOX_THRESH_STEPS`, plus
`UNCLIP_STEPS`), the model's own first, the highest CLEval H-Mean found and the earliest of equals
kept (`calibrate.choose`), so a tie keeps the preset's values. The best point replaces the model's
own only when its gain is at least `MIN_SE` standard errors of the paired per-image difference: on
sroie-dev's 24 val receipts the grid's best beat the defaults by ~0.002 for every `cpu_receipts`
fold model, and lost 0.0006-0.0027 on the folds' held-out receipts (docs/quality.md), so a gain
the val images cannot tell from noise is reported, not taken.

The choice lives in the checkpoint as ``"tuned"``: the options, the split and how many images chose
them, and the H-Mean with and without them. `model.predict.load_model` applies it under any
override the user gives (``models.head.postprocess.thresh=...`` still wins), so `predict`, `eval`,
`export` (ONNX metadata) and the pipeline's components use it without a flag.
"""

from __future__ import annotations

import itertools
import math
import statistics
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
MIN_SE = 2.0  # the best point is taken when its mean per-image gain is >= MIN_SE standard errors


@dataclass(frozen=True)
class GridPoint:
    settings: dict  # thresh, box_thresh, unclip_ratio
    hmean: float
    precision: float
    recall: float
    words: int
    per_image: tuple[float, ...]  # CLEval H-Mean per image, in the split's order


@dataclass(frozen=True)
class TuneResult:
    chosen: dict  # thresh, box_thresh, unclip_ratio: what the checkpoint will use
    own: dict  # the checkpoint's settings before tuning
    best: dict  # the grid's best (== chosen unless its gain was within noise)
    hmean: float  # the chosen settings' H-Mean on the split
    own_hmean: float
    best_hmean: float
    gain_se: float  # standard error of the best point's mean per-image gain over own (0: no gain)
    split: str
    images: int
    rows: list[GridPoint]  # every grid point, grid order (the model's own first)

    def to_json(self) -> dict:
        return {
            "postprocess": dict(self.chosen),
            "hmean": round(self.hmean, 6),
            "own": dict(self.own),
            "own_hmean": round(self.own_hmean, 6),
            "best": dict(self.best),
            "best_hmean": round(self.best_hmean, 6),
            "gain_se": round(self.gain_se, 6),
            "split": self.split,
            "images": self.images,
        }

    def summary(self) -> str:
        show = ", ".join(f"{k} {self.chosen[k]:g}" for k in TUNED)
        was = ", ".join(f"{k} {self.own[k]:g}" for k in TUNED)
        on = f"{self.images} {self.split} images"
        if self.chosen != self.own:
            return (
                f"post-processing: tuned on {on} to {show}: H-Mean {self.hmean:.4f} (was {self.own_hmean:.4f} with "
                f"{was}; +{self.hmean - self.own_hmean:.4f}, "
                + (
                    f"{(self.hmean - self.own_hmean) / self.gain_se:.1f} standard errors)"
                    if self.gain_se
                    else "on every image)"
                )
            )
        if self.best == self.own:
            return f"post-processing: kept {show}: H-Mean {self.hmean:.4f} on {on}, no grid point of {len(self.rows)} did better"
        best = ", ".join(f"{k} {self.best[k]:g}" for k in TUNED)
        return (
            f"post-processing: kept {show}: H-Mean {self.hmean:.4f} on {on}; the grid's best ({best}) gained "
            f"+{self.best_hmean - self.own_hmean:.4f}, under {MIN_SE:g} standard errors ({MIN_SE * self.gain_se:.4f}): "
            "not told apart from noise"
        )


def grid(own: Mapping) -> list[dict]:
    """The settings to try: the model's own first, then steps around it (invalid ones left out)."""
    points = []
    for dt, db, du in itertools.product(THRESH_STEPS, BOX_THRESH_STEPS, UNCLIP_STEPS):
        p = {
            "thresh": round(own["thresh"] + dt, 4),
            "box_thresh": round(own["box_thresh"] + db, 4),
            "unclip_ratio": round(own["unclip_ratio"] + du, 4),
        }
        if 0 < p["thresh"] < 1 and 0 <= p["box_thresh"] < 1 and p["unclip_ratio"] > 0 and p not in points:
            points.append(p)
    return points


@torch.no_grad()
def tune(
    model, cfg, split: Split, *, device: torch.device | None = None, workers: int = 0, progress: bool = False
) -> TuneResult:
    """Choose `TUNED` for `model` on the labelled `split` (maps computed once, every grid point scored)."""
    if not split.images or not any(split.images.values()):
        raise DataError(f"tune: the {split.name} split ({split.image_dir}) has no labelled words to tune on")
    pp = dict(cfg.models.head.postprocess)
    options = postprocess_options(pp)
    own = {k: float(options[k]) for k in TUNED}
    maps = {}
    detect(
        model,
        eval_loader(split, cfg),
        device or torch.device("cpu"),
        postprocess=pp,
        progress=progress,
        on_map=lambda name, prob, m, size: maps.__setitem__(name, (prob, m, size)),
    )
    rows = []
    names = sorted(maps)
    for p in grid(own):
        found = to_ufo(
            {name: image_detections(prob, m, size, {**options, **p}) for name, (prob, m, size) in maps.items()}
        )
        r = evaluate(split.images, found, workers=workers)
        rows.append(
            GridPoint(
                p,
                r.hmean,
                r.precision,
                r.recall,
                sum(len(w) for w in found.values()),
                tuple(r.per_image[n].hmean for n in names),
            )
        )
    best, mine = choose(rows), rows[0]
    taken, se = decide(best, mine)
    return TuneResult(
        dict(taken.settings),
        own,
        dict(best.settings),
        taken.hmean,
        mine.hmean,
        best.hmean,
        se,
        split.name,
        len(maps),
        rows,
    )


def decide(best: GridPoint, mine: GridPoint) -> tuple[GridPoint, float]:
    """`best` when its mean per-image gain over `mine` is positive and >= MIN_SE standard errors, else
    `mine`; and that standard error."""
    gain, se = paired_gain(best.per_image, mine.per_image)
    return (best if gain > 0 and gain >= MIN_SE * se else mine), se


def paired_gain(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, float]:
    """Mean of a - b over images, and its standard error (sd / sqrt(n); inf for fewer than 2 images)."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    if len(diffs) < 2:
        return (statistics.fmean(diffs) if diffs else 0.0), math.inf
    return statistics.fmean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs))


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
