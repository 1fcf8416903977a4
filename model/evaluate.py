"""Validation: the model's detections on a split, scored with the competition metric."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from model.data.ufo import Split
from model.metrics import EvalResult, evaluate
from model.predict import detect


def validate(
    model,
    loader,
    split: Split,
    device: torch.device,
    *,
    postprocess_options: Mapping,
    amp_dtype=None,
    workers: int = 0,
    tta_flip: bool = False,
    progress: bool = False,
) -> EvalResult:
    """CLEval of `model` on `split` (loader over the same split, eval transform, no targets)."""
    dets = detect(
        model,
        loader,
        device,
        postprocess=postprocess_options,
        amp_dtype=amp_dtype,
        tta_flip=tta_flip,
        progress=progress,
    )
    predicted = {name: [d.points for d in dets.get(name, [])] for name in split.images}
    return evaluate(split.images, predicted, workers=workers)
