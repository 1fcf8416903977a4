"""Albumentations pipelines for detection: whole-polygon geometry, bounded-cost photometry.

Train = LongestMaxSize → brightness/contrast, colour jitter, noise, blur, sharpen, shadow, fog →
PadIfNeeded (centred) → rotate ±12° / shift-scale (one Affine warp) → horizontal flip. Eval =
LongestMaxSize → PadIfNeeded (top-left). ImageNet normalisation is `normalize`, applied to the uint8 batch
after it reaches the device: workers then move a quarter of the bytes.

Polygons travel as keypoints with `remove_invisible=False`, so every vertex keeps its word; each
polygon is then clipped to the canvas as a whole (a word cut by the border keeps its visible
part, possibly with more vertices) and only words that leave the canvas entirely are dropped.
The classic way (drop invisible keypoints and regroup the rest four at a time) stitches
neighbouring words together. Three anchor keypoints give each sample its exact affine map, so
predictions map back to original pixels exactly (`Sample.to_original`).

Coordinates are continuous pixel-edge coordinates: the image spans [0, w] × [0, h].
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, fields
from typing import Sequence

# albumentations asks PyPI for a newer version on every import (a 2 s timeout and a warning in
# pods without network, seen on the GPU check): pinned here, nothing to ask.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A  # noqa: E402
import cv2
import numpy as np

from model.data.polygons import clip_polygons

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class AugmentConfig:
    """Probabilities and ranges of the train pipeline (the seed preset's augmentations)."""

    size: int = 960
    affine_p: float = 0.7
    rotate: float = 12.0  # degrees, ±
    scale: tuple[float, float] = (0.85, 1.15)
    shift: float = 0.05  # fraction of the canvas, ±
    hflip_p: float = 0.5
    brightness_contrast_p: float = 0.5
    color_jitter_p: float = 0.3
    noise_p: float = 0.2
    blur_p: float = 0.2
    sharpen_p: float = 0.2
    shadow_p: float = 0.2
    fog_p: float = 0.2

    @classmethod
    def from_dict(cls, values: dict) -> "AugmentConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown augmentation setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


@dataclass
class Sample:
    image: np.ndarray  # (size, size, 3) uint8 canvas
    polygons: list[np.ndarray]  # canvas pixels, each (N >= 3, 2) float64, inside the canvas
    source: list[int]  # index of the input word each polygon comes from
    original_size: tuple[int, int]  # (width, height) of the input image
    matrix: np.ndarray = field(repr=False)  # (3, 3) input pixels -> canvas pixels

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """Map canvas points (N, 2) back to input-image pixels, exactly."""
        inv = np.linalg.inv(self.matrix)
        pts = np.asarray(points, np.float64)
        return pts @ inv[:2, :2].T + inv[:2, 2]


class FastFog(A.ImageOnlyTransform):
    """Fog: a smooth, patchy white haze blended over the image.

    Looks like albumentations' RandomFog (soft bright blobs and overall loss of contrast) at a
    bounded cost: the haze is drawn on a coarse grid and upscaled, a few ms per 960-px image
    instead of RandomFog's ~2 s of per-circle blurs.
    """

    def __init__(self, fog_range: tuple[float, float] = (0.15, 0.4), grid: int = 6, p: float = 0.5):
        super().__init__(p=p)
        self.fog_range = fog_range
        self.grid = grid

    def get_params(self) -> dict:
        coarse = self.random_generator.random((self.grid, self.grid)).astype(np.float32)
        return {"strength": self.py_random.uniform(*self.fog_range), "coarse": coarse}

    def apply(self, img: np.ndarray, strength: float, coarse: np.ndarray, **params) -> np.ndarray:
        h, w = img.shape[:2]
        # everywhere some haze, the patches more; cubic upscaling of the grid makes soft blobs
        alpha = cv2.resize(np.clip(coarse * 0.6 + 0.4, 0, 1) * strength, (w, h), interpolation=cv2.INTER_CUBIC)
        np.clip(alpha, 0, 1, out=alpha)
        return cv2.blendLinear(img, np.full_like(img, 255), 1 - alpha, alpha)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("fog_range", "grid")


def make(cls, **kwargs):
    """Build an albumentations transform; an argument it would ignore is an error, not a warning.

    Albumentations 2.x drops arguments it does not know (1.x names such as GaussNoise(var_limit)
    or RandomFog(fog_coef_lower)) with only a warning, so a typo silently changes the training.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        transform = cls(**kwargs)
    for w in caught:
        if "not valid" in str(w.message) or "deprecated" in str(w.message).lower():
            raise ValueError(f"{cls.__name__}({', '.join(kwargs)}): {w.message}")
    return transform


def resize(size: int):
    return make(A.LongestMaxSize, max_size=size, interpolation=cv2.INTER_LINEAR)


def pad(size: int, position: str = "top_left"):
    return make(
        A.PadIfNeeded,
        min_height=size,
        min_width=size,
        position=position,
        border_mode=cv2.BORDER_CONSTANT,
        fill=0,
        fill_mask=0,
    )


def train_transform(cfg: AugmentConfig | None = None, seed: int | None = None) -> "DetectionTransform":
    """Photometric steps run before padding: on a portrait receipt that is half the pixels, and
    the padding stays plain black as at evaluation."""
    cfg = cfg or AugmentConfig()
    steps = photometric(cfg) + [
        # centred, so rotation about the canvas centre keeps the receipt in view
        pad(cfg.size, "center"),
        make(
            A.Affine,
            rotate=(-cfg.rotate, cfg.rotate),
            scale=cfg.scale,
            translate_percent=(-cfg.shift, cfg.shift),
            interpolation=cv2.INTER_LINEAR,
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=0,
            p=cfg.affine_p,
        ),
        make(A.HorizontalFlip, p=cfg.hflip_p),
    ]
    return DetectionTransform(steps, cfg.size, seed)


def photometric(cfg: AugmentConfig) -> list:
    return [
        make(A.RandomBrightnessContrast, brightness_limit=0.2, contrast_limit=0.2, p=cfg.brightness_contrast_p),
        make(A.ColorJitter, brightness=0.2, contrast=0.2, saturation=0.2, hue=0.03, p=cfg.color_jitter_p),
        make(A.GaussNoise, std_range=(0.02, 0.06), noise_scale_factor=0.5, p=cfg.noise_p),
        make(
            A.OneOf,
            transforms=[
                make(A.GaussianBlur, blur_limit=(3, 5), sigma_limit=(0.3, 1.2), p=1.0),
                make(A.MotionBlur, blur_limit=(3, 5), p=1.0),
            ],
            p=cfg.blur_p,
        ),
        make(A.Sharpen, alpha=(0.1, 0.3), lightness=(0.9, 1.1), p=cfg.sharpen_p),
        make(
            A.RandomShadow,
            shadow_roi=(0, 0, 1, 1),
            num_shadows_limit=(1, 2),
            shadow_intensity_range=(0.2, 0.5),
            p=cfg.shadow_p,
        ),
        FastFog(p=cfg.fog_p),
    ]


def eval_transform(size: int = 960) -> "DetectionTransform":
    return DetectionTransform([pad(size)], size, seed=0)


class DetectionTransform:
    """Image + word polygons → `Sample` on a size × size canvas.

    Albumentations moves keypoints in two conventions: its resize scales continuous coordinates,
    while its warps and flips apply the image's pixel-index matrix (pixel centres at integers), so
    passing edge coordinates through a flip lands them one pixel off. Hence the resize runs on its
    own, its exact per-axis scale taken from the output shape, and the rest of the pipeline sees
    pixel-index coordinates (edge coordinates - 0.5).
    """

    def __init__(self, steps: list, size: int, seed: int | None = None):
        self.size = size
        self.resize = A.Compose([resize(size)])
        self.compose = A.Compose(steps, keypoint_params=A.KeypointParams(format="xy", remove_invisible=False))
        if seed is not None:
            self.set_random_seed(seed)

    def set_random_seed(self, seed: int) -> None:
        """Seed every step with its own stream derived from `seed`.

        Albumentations' `Compose.set_random_seed` gives every transform the *same* seed, so their
        "apply with probability p" draws are identical: a sample gets all augmentations or none.
        """
        self.compose.set_random_seed(seed)
        streams = np.random.SeedSequence(seed).generate_state(len(self.compose.transforms))
        for step, stream in zip(self.compose.transforms, streams):
            step.set_random_seed(int(stream))

    def __call__(self, image: np.ndarray, polygons: Sequence[np.ndarray]) -> Sample:
        h, w = image.shape[:2]
        resized = self.resize(image=image)["image"]
        scale = np.array([resized.shape[1] / w, resized.shape[0] / h])
        anchors = np.array([[0, 0], [w, 0], [0, h]], np.float64)
        counts = [len(p) for p in polygons]
        points = np.concatenate([anchors, *[np.asarray(p, np.float64).reshape(-1, 2) for p in polygons]])
        out = self.compose(image=resized, keypoints=points * scale - 0.5)
        moved = np.asarray(out["keypoints"], np.float64).reshape(-1, 2) + 0.5
        matrix = _affine_from_anchors(anchors, moved[:3])
        polys, source = clip_polygons(
            np.split(moved[3:], np.cumsum(counts)[:-1]) if polygons else [], self.size, self.size
        )
        return Sample(out["image"], polys, source, (w, h), matrix)


def normalize(images, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """uint8 (N, 3, H, W) torch batch → float32 ImageNet-normalised, on whatever device it is."""
    import torch

    m = torch.tensor(mean, device=images.device).view(1, 3, 1, 1) * 255
    s = torch.tensor(std, device=images.device).view(1, 3, 1, 1) * 255
    return (images.float() - m) / s


def _affine_from_anchors(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    m = np.eye(3)
    a = np.hstack([src, np.ones((3, 1))])
    m[:2] = np.linalg.solve(a, dst).T
    return m
