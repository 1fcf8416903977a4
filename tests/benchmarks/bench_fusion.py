"""Probability-map fusion (`ensemble --mode maps`) beside box voting, 5 folds, 960-px SROIE canvases.

Fold maps: each receipt's true shrink map from the eval transform (960 px), blurred (σ 1.5 px, as
the shared post-process vectors are), then per fold (seeded): a gain in [0.85, 1], smooth noise
(a 24 × 24 grid of N(0, 0.05) upsampled, so it varies over words, not pixels) and the black
padding left at 0; stored as `predict --maps` stores them (8-bit PNG + sidecar, threshold-preserving
at 0.29). Reported, ms per image on one core:

- `maps_ms`: fusion (weighted mean of the 5 decoded maps) + one post-process to original pixels
  (`fuse_ms` and `postprocess_ms` its parts); `decode_ms`: reading the 5 PNGs + sidecars;
- `boxes_ms`: box voting (min_vote 3) of the same folds' words (each fold's words are the
  post-processing of its own map, which predict does anyway);

and the disk cost per image and fold of stored maps (PNG + sidecar) against the fold's UFO
predictions JSON, and CLEval hmean against the ground truth of each fold (mean), box voting and
map fusion (synthetic maps: a check that fusion works, not a claim about real folds).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from model.data.dataset import DetectionDataset
from model.data.transforms import eval_transform
from model.data.ufo import DatasetRoot, Word, word_ids, write_ufo
from model.ensemble import ensemble
from model.fusion import fuse_maps
from model.metrics import evaluate
from model.predict import image_detections
from model.probmaps import list_maps, read_map, write_map

FOLDS = 5
SIZE = 960
PP = {"thresh": 0.29, "box_thresh": 0.25, "max_candidates": 600, "unclip_ratio": 2.0, "mode": "polygon"}


def fold_maps(target: np.ndarray, content: tuple[int, int], k: int = FOLDS, seed: int = 0) -> list[np.ndarray]:
    """`k` float32 maps of one canvas from its true shrink map (see the module docstring)."""
    base = cv2.GaussianBlur(target.astype(np.float32), (0, 0), 1.5)
    w, h = content
    out = []
    for i in range(k):
        rng = np.random.default_rng(seed * 1000 + i)
        noise = cv2.resize(
            rng.normal(0, 0.05, (24, 24)).astype(np.float32), target.shape[::-1], interpolation=cv2.INTER_CUBIC
        )
        p = np.clip(base * rng.uniform(0.85, 1.0) + noise, 0, 1)
        p[h:, :] = 0
        p[:, w:] = 0
        out.append(p.astype(np.float32))
    return out


def words(dets) -> dict[str, Word]:
    return {wid: Word(d.points) for wid, d in zip(word_ids(len(dets)), dets)}


def run(root) -> dict:
    split = DatasetRoot(root).load("train", decode=False)
    dataset = DetectionDataset(split, eval_transform(SIZE))
    tmp = Path(tempfile.mkdtemp(prefix="bench-fusion-"))
    folders = [tmp / f"maps{i}" for i in range(FOLDS)]
    per_fold: list[dict] = [{} for _ in range(FOLDS)]
    for index in range(len(dataset)):
        item = dataset[index]
        name, m, size = item["name"], item["to_original"].numpy(), tuple(item["original_size"])
        canvas = np.linalg.inv(m)  # original -> canvas: the content's extent on the canvas
        cw, ch = (canvas @ [size[0], size[1], 1])[:2]
        maps = fold_maps(item["prob"].numpy(), (int(np.ceil(cw)), int(np.ceil(ch))), seed=index)
        for i, p in enumerate(maps):
            write_map(folders[i], name, p, m, size, PP)
            per_fold[i][name] = image_detections(p, m, size, PP)
    names = list_maps(folders[0])

    decode = fuse = pp = boxes = 0.0
    fused: dict = {}
    voted: dict = {}
    for rounds, name in enumerate(names):
        t0 = time.perf_counter()
        maps = [read_map(f, name) for f in folders]
        t1 = time.perf_counter()
        prob = fuse_maps(maps)
        t2 = time.perf_counter()
        fused[name] = image_detections(prob, maps[0].to_original, maps[0].original_size, PP)
        t3 = time.perf_counter()
        voted.update(ensemble([{name: words(per_fold[i][name])} for i in range(FOLDS)], min_vote=3))
        t4 = time.perf_counter()
        if rounds:  # the first image warms up numba and caches
            decode, fuse, pp, boxes = decode + t1 - t0, fuse + t2 - t1, pp + t3 - t2, boxes + t4 - t3
    n = len(names) - 1

    png = sum((f / f"{x}.png").stat().st_size for f in folders for x in names) / (FOLDS * len(names))
    side = sum((f / f"{x}.json").stat().st_size for f in folders for x in names) / (FOLDS * len(names))
    ufo = 0
    for i in range(FOLDS):
        write_ufo({x: words(per_fold[i][x]) for x in names}, tmp / f"pred{i}.json")
        ufo += (tmp / f"pred{i}.json").stat().st_size / len(names) / FOLDS
    gt = {x: split.images[x] for x in names}
    fold_h = [evaluate(gt, {x: [d.points for d in per_fold[i][x]] for x in names}).hmean for i in range(FOLDS)]
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "images": len(names),
        "maps_ms": round((fuse + pp) / n * 1e3, 2),
        "fuse_ms": round(fuse / n * 1e3, 2),
        "postprocess_ms": round(pp / n * 1e3, 2),
        "decode_ms": round(decode / n * 1e3, 2),
        "boxes_ms": round(boxes / n * 1e3, 2),
        "map_png_kib_per_image_fold": round(png / 1024, 1),
        "sidecar_kib_per_image_fold": round(side / 1024, 2),
        "ufo_json_kib_per_image_fold": round(ufo / 1024, 1),
        "hmean_folds_mean": round(float(np.mean(fold_h)), 4),
        "hmean_boxes": round(evaluate(gt, {x: [w.points for w in voted[x].values()] for x in names}).hmean, 4),
        "hmean_maps": round(evaluate(gt, {x: [d.points for d in fused[x]] for x in names}).hmean, 4),
    }
