"""Probability-map fusion of K models: average the maps, then post-process once.

    fused = map_ensemble(["fold0/maps", "fold1/maps", ...], weights=[1, 1, 1, 1, 1], thresh=0.29)

Box voting (`model.ensemble`) fuses K models' finished words; here the K probability maps of an
image (stored by `receiptflow predict --maps`, `model.probmaps`) are averaged pixel by pixel with
normalised weights (w_i / Σw; a weight may be 0, not all of them), and the mean map goes once
through the post-processing `predict` uses (`model.predict.image_detections`: same function, same
canvas→original matrix, same clipping), so the words are in original pixels exactly as predict's.

The maps of one image must share their canvas: the same map shape, original size and
canvas→original matrix (they do when every model predicted through the same eval transform and
`dataset.image_size`); otherwise fusion stops with an error naming the image. Every folder must
hold a map of every image.

Post-processing settings: each given keyword (`thresh`, `box_thresh`, `max_candidates`,
`unclip_ratio`, `mode`, `min_size`) wins; any other is the one the maps' sidecars record (the
settings each predict ran with), which must then agree across the folds.

Exactness: the mean is accumulated in float64 (over the stored 8-bit levels, divided by 255 at
the end) and rounded to float32 once, so K identical maps (any weights) give back that map bit
for bit, and the words of one model. One compiled pass over the K maps: ~1-2 ms for K = 5 at
960 px (tests/benchmarks/bench_fusion.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numba
import numpy as np

from model.data.ufo import Images
from model.errors import DataError
from model.postprocess import Detection
from model.predict import image_detections, to_ufo
from model.probmaps import ProbMap, list_maps, read_map

OPTIONS = ("thresh", "box_thresh", "max_candidates", "unclip_ratio", "mode", "min_size")
FLAGS = {**{k: "--" + k.replace("_", "-") for k in OPTIONS}, "mode": "--shape"}  # `receiptflow ensemble --mode maps`


def normalized_weights(weights: Sequence[float] | None, k: int) -> np.ndarray:
    """`weights` (None: all 1) as float64 summing to 1; finite, >= 0 and not all 0, one per model."""
    if k == 0:
        raise DataError("map fusion: no maps given")
    if weights is None:
        return np.full(k, 1.0 / k)
    w = np.asarray(list(weights), dtype=np.float64)
    if w.shape != (k,):
        raise DataError(f"map fusion: {len(w)} weight(s) given for {k} models")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise DataError(f"map fusion: weights must be finite, >= 0 and not all 0, got {w.tolist()}")
    return w / w.sum()


def check_same_canvas(maps: Sequence[ProbMap], sources: Sequence[str] | None = None) -> None:
    """Refuse maps of one image that do not share shape, original size and canvas→original matrix."""
    first = maps[0]
    where = list(sources) if sources is not None else [f"model {i + 1}" for i in range(len(maps))]
    for i, m in enumerate(maps[1:], 1):
        if m.image != first.image:
            raise DataError(
                f"map fusion: {where[i]} gives a map of image {m.image!r} where {where[0]} gives {first.image!r}"
            )
        what = None
        if m.data.shape != first.data.shape:
            what = f"map shape {m.data.shape} vs {first.data.shape}"
        elif tuple(m.original_size) != tuple(first.original_size):
            what = f"original size {tuple(m.original_size)} vs {tuple(first.original_size)}"
        elif not np.allclose(m.to_original, first.to_original, rtol=0, atol=1e-9):
            what = f"canvas->original matrix {np.round(m.to_original, 6).tolist()} vs {np.round(first.to_original, 6).tolist()}"
        if what:
            raise DataError(
                f"map fusion: image {first.image!r}: {where[i]} has a different canvas than {where[0]} ({what}); "
                "the models must predict through the same eval transform and dataset.image_size"
            )


def fuse_maps(
    maps: Sequence[ProbMap], weights: Sequence[float] | None = None, *, sources: Sequence[str] | None = None
) -> np.ndarray:
    """The weighted mean (H, W) float32 map of one image's K maps (checked to share a canvas)."""
    w = normalized_weights(weights, len(maps))
    check_same_canvas(maps, sources)
    used = [(wi, m) for wi, m in zip(w, maps) if wi > 0]
    if len({(m.data.dtype, m.scale) for _, m in used}) == 1:  # one pass over the levels as stored
        stack = np.stack([np.asarray(m.data) for _, m in used])
        return _weighted_mean(stack, np.array([wi for wi, _ in used]), float(used[0][1].scale))
    return _weighted_mean(np.stack([m.values() for _, m in used]), np.array([wi for wi, _ in used]), 1.0)


@numba.njit(cache=True, nogil=True)
def _weighted_mean(stack, w, scale):
    """float32(Σ w_k · stack[k] / scale) per pixel, summed in float64 in model order."""
    k, h, width = stack.shape
    out = np.empty((h, width), np.float32)
    for y in range(h):
        for x in range(width):
            acc = 0.0
            for i in range(k):
                acc += w[i] * stack[i, y, x]
            out[y, x] = acc / scale
    return out


def postprocess_settings(
    maps: Sequence[ProbMap], overrides: Mapping | None = None, sources: Sequence[str] | None = None
) -> dict:
    """`model.postprocess` keywords for one image: `overrides` (None values ignored), else what
    the maps' sidecars record, which must agree."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(overrides) - set(OPTIONS))
    if unknown:
        raise DataError(f"map fusion: unknown post-processing option(s) {unknown}; known: {', '.join(OPTIONS)}")
    where = list(sources) if sources is not None else [f"model {i + 1}" for i in range(len(maps))]
    out = {}
    for key in OPTIONS:
        if key in overrides:
            out[key] = overrides[key]
            continue
        recorded = [(s, (m.postprocess or {}).get(key)) for s, m in zip(where, maps)]
        values = {repr(v) for _, v in recorded if v is not None}
        if len(values) > 1:
            shown = ", ".join(f"{s}: {v!r}" for s, v in recorded)
            raise DataError(
                f"map fusion: image {maps[0].image!r}: the models were post-processed with different "
                f"{key} ({shown}); give it explicitly (ensemble {FLAGS[key]})"
            )
        if values:
            out[key] = next(v for _, v in recorded if v is not None)
    return out


def fused_detections(
    maps: Sequence[ProbMap],
    weights: Sequence[float] | None = None,
    *,
    postprocess: Mapping | None = None,
    sources: Sequence[str] | None = None,
) -> list[Detection]:
    """One image: K maps → fused map → words in original pixels (the path predict takes)."""
    prob = fuse_maps(maps, weights, sources=sources)
    first = maps[0]
    return image_detections(
        prob, first.to_original, first.original_size, postprocess_settings(maps, postprocess, sources)
    )


def fold_maps(folders: Sequence[str | Path]) -> Iterator[tuple[str, list[ProbMap]]]:
    """(image, its K maps) per image of K map folders, one image in memory at a time; every
    folder must hold the same images (else an error naming one that differs). Decode once here
    and post-process as often as needed (e.g. a grid of settings or weights)."""
    folders = [Path(f) for f in folders]
    if not folders:
        raise DataError("map fusion: no map folders given")
    names = [list_maps(f) for f in folders]
    for folder, found in zip(folders, names):
        if not found:
            raise DataError(f"{folder}: no stored maps here (predict --maps DIR writes <image>.png + <image>.json)")
    for folder, found in zip(folders[1:], names[1:]):
        missing = sorted(set(names[0]) - set(found))
        extra = sorted(set(found) - set(names[0]))
        if missing or extra:
            image, where, lacks = (missing[0], folders[0], folder) if missing else (extra[0], folder, folders[0])
            more = len(missing) + len(extra) - 1
            raise DataError(
                f"map fusion: image {image!r} has a map in {where} but not in {lacks}"
                + (f" (and {more} more image(s) differ)" if more else "")
                + "; every folder must hold the same images"
            )
    for name in names[0]:
        yield name, [read_map(f, name) for f in folders]


def map_ensemble(
    folders: Sequence[str | Path], *, weights: Sequence[float] | None = None, scores: bool = False, **postprocess
) -> Images:
    """Fuse the stored maps of K `folders` (one per model, from `predict --maps`) into UFO `Images`.

    `postprocess`: `thresh`, `box_thresh`, ... overriding the recorded settings (see the module
    docstring). Every folder must hold the same images; one image is loaded at a time."""
    normalized_weights(weights, len(folders))  # fail before reading anything
    sources = [str(f) for f in folders]
    detections = {
        name: fused_detections(maps, weights, postprocess=postprocess, sources=sources)
        for name, maps in fold_maps(folders)
    }
    return to_ufo(detections, scores=scores)
