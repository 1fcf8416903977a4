"""Augmentations move each word's polygon exactly as they move its pixels, and map back exactly."""

from __future__ import annotations

import warnings

import albumentations as A
import numpy as np
import pytest
import shapely

from model.data.polygons import clip_polygons
from model.data.transforms import AugmentConfig, FastFog, eval_transform, make, train_transform
from model.data.ufo import DatasetRoot

GEOMETRY_ONLY = dict(brightness_contrast_p=0, color_jitter_p=0, noise_p=0, blur_p=0, sharpen_p=0, shadow_p=0, fog_p=0)


def coordinate_image(h: int, w: int) -> np.ndarray:
    """Each pixel holds its own centre (x, y) and a 1: after a warp, pixels tell where they came from."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.dstack([xs + 0.5, ys + 0.5, np.ones_like(xs)])


def fitted_matrix(canvas: np.ndarray) -> np.ndarray:
    """Least-squares affine map source -> canvas, from the pixels that carry a whole source value."""
    valid = canvas[..., 2] > 0.9999
    v, u = np.nonzero(valid)
    dst = np.column_stack([u + 0.5, v + 0.5, np.ones(len(u))])
    src = canvas[valid][:, :2]
    inv, *_ = np.linalg.lstsq(dst, src, rcond=None)  # canvas -> source, (3, 2)
    m = np.eye(3)
    m[:2] = inv.T
    return np.linalg.inv(m)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    pa, pb = shapely.Polygon(a), shapely.Polygon(b)
    return pa.intersection(pb).area / pa.union(pb).area


@pytest.fixture(scope="module")
def train_split(synth_root):
    """Synthetic receipts: perspective-warped, rotated word quads (harder geometry than SROIE's
    axis-aligned boxes), images both smaller and larger than the 960-px canvas."""
    return DatasetRoot(synth_root).load("train", decode=False)


def test_polygons_equal_the_exact_transform_of_their_word(train_split):
    cfg = AugmentConfig(affine_p=1.0, hflip_p=0.5, **GEOMETRY_ONLY)
    transform = train_transform(cfg, seed=7)
    checked = flipped = 0
    for name in list(train_split.images)[:12]:
        w, h = train_split.sizes[name]
        words = list(train_split.images[name].values())
        sample = transform(coordinate_image(h, w), [wd.points for wd in words])
        m = fitted_matrix(sample.image)
        flipped += np.linalg.det(m[:2, :2]) < 0
        canvas = shapely.box(0, 0, cfg.size, cfg.size)
        expected = {}
        for i, wd in enumerate(words):
            moved = wd.points @ m[:2, :2].T + m[:2, 2]
            part = shapely.Polygon(moved).intersection(canvas)
            if part.area > 0:
                expected[i] = np.asarray(part.exterior.coords)[:-1]
        assert sorted(expected) == sorted(sample.source), (
            "a word was dropped that is still on the canvas, or kept though gone"
        )
        for poly, src in zip(sample.polygons, sample.source):
            assert iou(poly, expected[src]) >= 0.99, f"{name}: word {src} does not follow its pixels"
            checked += 1
        # the anchor-derived matrix (used to map predictions back) is the pixels' matrix
        np.testing.assert_allclose(sample.matrix, m, atol=2e-3)
    assert checked > 500 and 0 < flipped < 12


def test_partly_visible_word_is_clipped_and_gone_word_dropped():
    polys = [
        np.array([[10, 10], [50, 10], [50, 30], [10, 30]], float),  # inside
        np.array([[90, 10], [130, 10], [130, 30], [90, 30]], float),  # half outside
        np.array([[150, 10], [190, 10], [190, 30], [150, 30]], float),  # gone
    ]
    kept, source = clip_polygons(polys, 100, 100)
    assert source == [0, 1]
    assert shapely.Polygon(kept[1]).area == pytest.approx(10 * 20)
    assert kept[1][:, 0].max() == pytest.approx(100)


def test_eval_round_trip_to_original_pixels_is_exact(train_split):
    transform = eval_transform(960)
    worst = 0.0
    for name in train_split.images:
        w, h = train_split.sizes[name]
        words = list(train_split.images[name].values())
        sample = transform(np.zeros((h, w, 3), np.uint8), [wd.points for wd in words])
        for poly, src in zip(sample.polygons, sample.source):
            worst = max(worst, float(np.abs(sample.to_original(poly) - words[src].points).max()))
    assert worst < 0.5
    assert worst < 1e-3  # in fact exact up to albumentations' float32 keypoints


def test_no_augmentation_argument_is_silently_ignored():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_transform()
        eval_transform()
    with pytest.raises(ValueError, match="var_limit"):
        make(A.GaussNoise, var_limit=(10, 50))
    with pytest.raises(ValueError, match="fog_coef_lower"):
        make(A.RandomFog, fog_coef_lower=0.3, fog_coef_upper=1)


def test_unknown_augmentation_setting_is_an_error():
    with pytest.raises(ValueError, match="fog_probability"):
        AugmentConfig.from_dict({"fog_probability": 0.5})


def test_fog_brightens_and_flattens_contrast_deterministically():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (240, 160, 3), dtype=np.uint8)
    fog = A.Compose([FastFog(fog_range=(0.3, 0.3), p=1.0)], seed=3)
    out = fog(image=img)["image"]
    assert out.shape == img.shape and out.dtype == np.uint8
    assert out.mean() > img.mean() + 20
    assert out.std() < img.std() * 0.85
    # patchy, not uniform: the haze varies across the image
    haze = out.astype(float).mean(axis=2) - img.astype(float).mean(axis=2)
    assert np.ptp(haze[::40, ::40]) > 5
    np.testing.assert_array_equal(out, A.Compose([FastFog(fog_range=(0.3, 0.3), p=1.0)], seed=3)(image=img)["image"])


def test_train_transform_outputs_canvas_of_configured_size():
    t = train_transform(AugmentConfig(size=320), seed=1)
    s = t(np.full((500, 200, 3), 200, np.uint8), [np.array([[10, 10], [100, 10], [100, 40], [10, 40]], float)])
    assert s.image.shape == (320, 320, 3) and s.image.dtype == np.uint8
    assert s.original_size == (200, 500)


def test_augmentations_fire_independently_of_each_other():
    """Each step draws its own "apply?" decision: with albumentations' own seeding every step got
    the same seed, so a sample had all augmentations or none."""
    t = train_transform(AugmentConfig(size=128), seed=0)
    firsts = []
    for seed in range(50):
        t.set_random_seed(seed)
        firsts.append([step.py_random.random() for step in t.compose.transforms])
    draws = np.array(firsts)
    assert len(np.unique(draws[0])) == draws.shape[1]  # no two steps share a stream
    # brightness/contrast (p 0.5) and fog (p 0.2) fire together about 0.5 x 0.2 of the time, not 0.2
    bc, fog = 0, len(t.compose.transforms) - 4
    both = np.mean((draws[:, bc] < 0.5) & (draws[:, fog] < 0.2))
    assert both < 0.18
