"""A synthetic receipt photographed (`model.data.synth`): the flat paper with its ink, placed on a
background by one homography, lit, blurred, noised and JPEG-compressed.

`placement` draws the homography (rotation, a little scale and perspective, a position);
`photograph` prints the ink on paper and lays it on a background (solid, gradient, wood, table
texture) under one uneven light; `camera_effects` adds focus or motion blur, sensor noise and
JPEG artefacts. All randomness comes from the numpy Generator handed in, in a fixed order.
"""

from __future__ import annotations

import cv2
import numpy as np


def placement(rng: np.random.Generator, pw: int, ph: int, out_w: int, out_h: int) -> np.ndarray:
    """Homography paper -> image: rotation, a little scale and perspective, random position."""
    angle = float(np.clip(rng.normal(0, 2.5), -8, 8)) if rng.random() < 0.85 else float(rng.uniform(-1, 1))
    scale = float(rng.uniform(0.95, 1.05))
    src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    centred = (src - [pw / 2, ph / 2]) * scale
    # keystone (camera tilt along the strip) and independent corner jitter
    k = float(rng.uniform(-0.06, 0.06))
    centred[:, 0] *= np.where(centred[:, 1] < 0, 1 - k, 1 + k)
    centred += rng.uniform(-1, 1, (4, 2)) * pw * float(rng.uniform(0, 0.025))
    t = np.deg2rad(angle)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]], np.float32)
    dst = centred @ rot.T
    span_x = dst[:, 0].max() - dst[:, 0].min()
    span_y = dst[:, 1].max() - dst[:, 1].min()
    free_x = (out_w - span_x) / 2
    cx = out_w / 2 + (rng.uniform(-0.8, 0.8) * free_x if free_x > 0 else rng.uniform(-0.3, 0.3) * -free_x)
    free_y = (out_h - span_y) / 2
    if free_y >= 0:
        cy = out_h / 2 + rng.uniform(-0.8, 0.8) * free_y
    else:  # taller than the photo: show the top, the bottom or the middle, cut the rest
        cy = out_h / 2 + rng.uniform(-1.0, 1.0) * (-free_y + 0.04 * out_h)
    dst = dst + np.array([cx, cy], np.float32)
    return cv2.getPerspectiveTransform(src, dst.astype(np.float32))


def photograph(rng: np.random.Generator, ink: np.ndarray, homography: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Print `ink` on paper, lay the strip on a background through `homography`, light it.

    The scene (background, drop shadow, illumination) is computed at 1/4 size; the illumination
    is pulled back onto the flat paper through the homography, so the paper is lit by the same
    field as the table around it and is warped once, as uint8.
    """
    ph, pw = ink.shape
    # the paper and its print
    base = rng.uniform(226, 252)
    tint = rng.normal(0, 3, 3) + (np.array([3, 1, -4]) * rng.uniform(0, 1.5) if rng.random() < 0.5 else 0)
    colour = np.clip(base + tint, 180, 255).astype(np.float32)
    paper_light = _paper_light(rng, ph, pw)
    dark = float(rng.uniform(15, 70)) if rng.random() < 0.8 else float(rng.uniform(70, 130))
    ink_rgb = np.clip(dark + rng.normal(0, 8, 3), 0, 255).astype(np.float32)
    alpha = ink.astype(np.float32) * np.float32(rng.uniform(0.85, 1.0) / 255.0)
    if rng.random() < 0.5:  # thermal print fades unevenly
        fade = _smooth_noise(rng, ph, pw, max(2, ph // 60), max(2, pw // 60))
        alpha *= 1.0 - np.float32(rng.uniform(0.1, 0.45)) * fade
    shape = _paper_shape(rng, ph, pw)

    # the scene at 1/4 size: background, drop shadow, illumination
    sh, sw = -(-out_h // 4), -(-out_w // 4)
    to_small = np.diag([sw / out_w, sh / out_h, 1.0])
    h_small = to_small @ homography
    bg = _background(rng, sh, sw)
    mask_small = (
        cv2.warpPerspective(shape, h_small, (sw, sh), flags=cv2.INTER_LINEAR, borderValue=0).astype(np.float32) / 255.0
    )
    dx, dy = (float(v) for v in rng.uniform(-2.0, 2.0, 2))
    shifted = cv2.warpAffine(
        mask_small, np.float32([[1, 0, dx], [0, 1, dy]]), (sw, sh), borderMode=cv2.BORDER_REPLICATE
    )
    shadow = cv2.GaussianBlur(shifted, (0, 0), float(rng.uniform(0.8, 2.5)))
    light = _illumination(rng, sh, sw)
    cast = (1.0 + rng.normal(0, 0.03, 3)).astype(np.float32)
    bg = bg * ((1.0 - np.float32(rng.uniform(0.2, 0.5)) * shadow) * light)[..., None] * cast
    bg = cv2.resize(np.clip(bg, 0, 255).astype(np.uint8), (out_w, out_h), interpolation=cv2.INTER_LINEAR)

    # paper colour, lit by the scene's light pulled back into paper coordinates
    light_p = cv2.warpPerspective(
        light, h_small, (pw, ph), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )
    lit_paper = (1.0 - alpha) * light_p  # paper colour weight
    lit_ink = alpha * light_p  # ink colour weight
    lit_light = paper_light * lit_paper
    channels = [cast[c] * (colour[c] * lit_paper + lit_light + ink_rgb[c] * lit_ink) for c in range(3)]
    paper = np.clip(cv2.merge(channels), 0, 255).astype(np.uint8)

    warped = cv2.warpPerspective(
        paper, homography, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    mask = (
        cv2.warpPerspective(shape, homography, (out_w, out_h), flags=cv2.INTER_LINEAR, borderValue=0).astype(np.float32)
        / 255.0
    )
    return cv2.blendLinear(bg, warped, 1.0 - mask, mask)


def _paper_light(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Additive brightness of the paper: crumple shading, gradient, grain, fold creases."""
    shade = (_smooth_noise(rng, h, w, 4, 3) - 0.5) * np.float32(rng.uniform(4, 18))
    gy = np.linspace(-1, 1, h, dtype=np.float32)[:, None] * np.float32(rng.uniform(-8, 8))
    grain = cv2.resize(_gauss_noise(rng, h // 2 + 1, w // 2 + 1), (w, h), interpolation=cv2.INTER_LINEAR)
    light = shade + gy + grain * np.float32(rng.uniform(0.5, 3.0))
    for _ in range(int(rng.integers(0, 4))):  # folds / creases: a soft step in brightness
        y0 = int(rng.integers(0, h))
        band = np.zeros((h, 1), np.float32)
        band[y0:] = rng.uniform(-7, 4)
        light += cv2.GaussianBlur(band, (1, 0), sigmaX=0.1, sigmaY=float(rng.uniform(1, 4)))
    return light


def _illumination(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Multiplicative light field around 1: blotches, a directional ramp, sometimes a shadow band."""
    light = 1.0 + (_smooth_noise(rng, h, w, 3, 3) - 0.5) * np.float32(rng.uniform(0.1, 0.35))
    yy = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    t = float(rng.uniform(0, 2 * np.pi))
    light = light + (xx * np.float32(np.cos(t)) + yy * np.float32(np.sin(t))) * np.float32(rng.uniform(0, 0.3))
    if rng.random() < 0.25:  # a soft shadow band (a phone, a hand)
        band = (xx * np.float32(np.sin(t)) - yy * np.float32(np.cos(t))) > np.float32(rng.uniform(-0.5, 0.5))
        light = light * np.where(band, np.float32(rng.uniform(0.65, 0.9)), np.float32(1.0))
        light = cv2.GaussianBlur(light, (0, 0), float(rng.uniform(0.6, 4.0)))
    return light.astype(np.float32)


def _paper_shape(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Alpha of the strip: a rectangle, top and/or bottom edge sometimes torn (zigzag)."""
    alpha = np.full((h, w), 255, np.uint8)
    for top in (True, False):
        if rng.random() < 0.45:
            teeth = int(rng.integers(15, 40))
            xs = np.linspace(0, w, teeth * 2 + 1)
            depth = rng.uniform(2, 7)
            ys = np.where(np.arange(xs.size) % 2 == 0, 0.0, depth) + rng.uniform(0, 2, xs.size)
            if top:
                pts = np.stack([xs, ys], 1)
                poly = np.concatenate([[[0, 0]], pts, [[w, 0]]])
            else:
                pts = np.stack([xs, h - ys], 1)
                poly = np.concatenate([[[0, h]], pts, [[w, h]]])
            cv2.fillPoly(alpha, [np.round(poly).astype(np.int32)], 0, lineType=cv2.LINE_AA)
    return alpha


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells_y: int, cells_x: int) -> np.ndarray:
    small = rng.random((max(2, cells_y), max(2, cells_x)), dtype=np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


_BG_COLOURS = np.array(
    [
        [60, 45, 35],
        [120, 85, 55],
        [165, 120, 80],
        [200, 160, 115],  # browns
        [40, 40, 42],
        [80, 80, 85],
        [20, 22, 25],
        [130, 130, 135],  # greys, black desk
        [190, 185, 175],
        [215, 210, 200],
        [160, 170, 180],  # light tables, paper-like (hard cases)
        [40, 70, 55],
        [35, 55, 95],
        [120, 40, 40],
        [190, 150, 60],  # green mat, blue, red, yellow
    ],
    np.float32,
)


_WOOD_COLOURS = np.array(
    [
        [70, 45, 28],
        [105, 70, 42],
        [140, 95, 58],
        [175, 128, 82],
        [200, 160, 112],
        [120, 80, 55],
        [160, 120, 90],
    ],
    np.float32,
)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Float32 (h, w, 3): solid, gradient, wood or table texture (h, w: about 1/4 of the photo)."""
    colour = _BG_COLOURS[int(rng.integers(len(_BG_COLOURS)))] + rng.normal(0, 10, 3).astype(np.float32)
    kind = int(rng.choice(4, p=[0.2, 0.2, 0.35, 0.25]))
    if kind == 0:  # solid with faint blotches
        img = colour + (_smooth_noise(rng, h, w, 3, 3)[..., None] - 0.5) * 12
    elif kind == 1:  # two-colour gradient
        other = _BG_COLOURS[int(rng.integers(len(_BG_COLOURS)))]
        t = float(rng.uniform(0, np.pi))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = (xx / w) * np.cos(t) + (yy / h) * np.sin(t)
        ramp = (ramp - ramp.min()) / max(1e-6, float(np.ptp(ramp)))
        img = colour * (1 - ramp[..., None]) + other * ramp[..., None]
    elif kind == 2:  # wood: planks with meandering grain lines and fine streaks, along x or y
        colour = _WOOD_COLOURS[int(rng.integers(len(_WOOD_COLOURS)))] * np.float32(rng.uniform(0.8, 1.15))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        vertical = rng.random() < 0.5
        across = xx if vertical else yy  # the coordinate the grain lines are spaced along
        cells = (3, 8) if vertical else (8, 3)
        plank_w = float(rng.uniform(20, 60))
        plank = np.floor(across / plank_w)
        plank_hash = (np.sin(plank * 12.9898 + float(rng.uniform(0, 100))) * 43758.5453) % 1.0
        meander = _smooth_noise(rng, h, w, *cells) * np.float32(rng.uniform(3, 12)) + plank_hash * 50
        rings = (0.5 + 0.5 * np.sin((across + meander) * np.float32(rng.uniform(0.35, 0.9)))) ** 3
        streak = _smooth_noise(
            rng, h, w, *((4, int(rng.integers(60, 140))) if vertical else (int(rng.integers(60, 140)), 4))
        )
        seam = np.where((across % plank_w) < 1.0, np.float32(0.6), np.float32(1.0))
        shade = (0.82 + 0.14 * rings + 0.14 * (streak - 0.5) + 0.16 * (plank_hash - 0.5)) * seam
        img = colour * shade[..., None]
    else:  # table / granite: speckles over blotches
        blotch = _smooth_noise(rng, h, w, int(rng.integers(3, 8)), int(rng.integers(3, 8)))
        speck = rng.standard_normal((h, w), dtype=np.float32)
        img = colour + ((blotch - 0.5) * 30 + speck * float(rng.uniform(3, 12)))[..., None]
    return np.ascontiguousarray(np.broadcast_to(img, (h, w, 3)), dtype=np.float32)


_GAUSS_LUT = None


def _gauss_noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Standard normal noise, quantised to 256 levels: random bytes through an inverse-CDF table.

    About 10x cheaper than `standard_normal` at image size, and as good for pixel noise.
    """
    global _GAUSS_LUT
    if _GAUSS_LUT is None:
        from statistics import NormalDist

        _GAUSS_LUT = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)], np.float32)
    return _GAUSS_LUT[np.frombuffer(rng.bytes(h * w), np.uint8).reshape(h, w)]


def camera_effects(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Blur (focus or a little motion), sensor noise and JPEG artefacts; uint8 in and out."""
    h, w = img.shape[:2]
    r = rng.random()
    if r < 0.45:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.4, 1.1)))
    elif r < 0.6:  # slight motion blur
        k = int(rng.integers(3, 6))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (k, k))
        img = cv2.filter2D(img, -1, kernel / max(1e-6, float(kernel.sum())))
    sigma = float(rng.uniform(0, 6))
    if sigma > 0.5:
        noise = _gauss_noise(rng, h, w) * np.float32(sigma)
        img = cv2.add(img, cv2.merge([noise, noise, noise]), dtype=cv2.CV_8U)
    quality = int(rng.integers(45, 96))
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if ok:
        img = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return img
