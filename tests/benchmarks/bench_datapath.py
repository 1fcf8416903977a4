"""The train-time data path on one core: decode + augment + DB targets, per SROIE image at 960 px.

Also: what fog costs (ours against albumentations' RandomFog), and how often the classic
loose-keypoint regrouping would have stitched words together on the same rotated samples.
"""

from __future__ import annotations

import albumentations as A
import numpy as np

from model.data.dataset import DetectionDataset
from model.data.transforms import AugmentConfig, FastFog, train_transform
from model.data.ufo import DatasetRoot
from tests.benchmarks.common import per_item_ms


def run(root) -> dict:
    split = DatasetRoot(root).load("train", decode=False)
    ds = DetectionDataset(split, train_transform(AugmentConfig(), seed=0))
    indices = list(range(len(ds)))
    path_ms = per_item_ms(lambda i: ds[i], indices, repeat=2)

    canvas = ds[0]["image"].permute(1, 2, 0).numpy().copy()
    fog_ours = A.Compose([FastFog(p=1.0)], seed=0)
    fog_alb = A.Compose([A.RandomFog(fog_coef_range=(0.3, 0.5), alpha_coef=0.08, p=1.0)], seed=0)
    ours_fog_ms = per_item_ms(lambda _: fog_ours(image=canvas), range(10))
    alb_fog_ms = per_item_ms(lambda _: fog_alb(image=canvas), range(3))

    return {
        "images": len(ds),
        "data_path_ms": round(path_ms, 1),
        "fog_ours_ms": round(ours_fog_ms, 1),
        "fog_randomfog_ms": round(alb_fog_ms, 1),
        "classic_regrouping_mixes_words_in": f"{_classic_mixing_rate(split):.1%} of rotated samples",
    }


def _classic_mixing_rate(split) -> float:
    """Share of rotated samples where some word has some, not all, vertices off the canvas.

    The classic pipeline drops those vertices and regroups the remaining ones four at a time, so
    every word after the first such one in the list is built from the wrong corners. Ours clips
    each word as a whole, so the count is of images it gets right that the classic gets wrong.
    """
    t = train_transform(
        AugmentConfig(
            affine_p=1.0,
            brightness_contrast_p=0,
            color_jitter_p=0,
            noise_p=0,
            blur_p=0,
            sharpen_p=0,
            shadow_p=0,
            fog_p=0,
        ),
        seed=1,
    )
    mixed = 0
    for name, words in split.images.items():
        w, h = split.sizes[name]
        polys = [wd.points for wd in words.values()]
        s = t(np.zeros((h, w, 3), np.uint8), polys)
        moved = [p @ s.matrix[:2, :2].T + s.matrix[:2, 2] for p in polys]
        inside = [((m >= 0) & (m < t.size)).all(axis=1) for m in moved]
        mixed += any(0 < v.sum() < len(v) for v in inside)
    return mixed / len(split.images)
