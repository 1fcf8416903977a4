"""Stored probability maps: what `receiptflow predict --maps DIR` keeps for map fusion.

    DIR/<image>.png    the map at the canvas size (the network's own output size), 8-bit grey:
                       level q = round(prob x 255), read back as q / 255
    DIR/<image>.json   its sidecar: canvas→original matrix, original size, the post-processing
                       settings predict used, e.g.
                       {"format": "receiptflow.probmap/1", "image": "r1.jpg", "shape": [960, 960],
                        "scale": 255, "to_original": [[...], [...], [...]], "original_size": [463, 1013],
                        "postprocess": {"thresh": 0.29, ..., "mode": "polygon"}, "tta": false}

Post-processing a stored map through its sidecar's matrix gives polygons in original pixels
as `predict` does from the float map (same function, `model.predict.image_detections`). The
quantisation (±0.5/255 per pixel) is made threshold-preserving at the `thresh` predict ran with
(`quantize`): the stored map binarizes there exactly as the float map, so it gives the same
contours and, but for a word whose mean probability sits within ~0.002 of `box_thresh`, the same
words. At other thresholds a pixel within 0.002 of the threshold may flip.

Why PNG + JSON: an 8-bit PNG of a 960-px map is small (the black padding and the background
compress to almost nothing; tens of KB against ~3.7 MB as float32), any image viewer shows it,
and cv2 (already a dependency) reads and writes it. The sidecar keeps the exact float64 matrix
(JSON floats round-trip exactly). The file names are the image's own plain name plus a suffix
(`a.jpg` → `a.jpg.png`, `a.jpg.json`, so `a.jpg` and `a.png` never collide), and a name that
`check_file_name` refuses (a path, '..') is never written or read: nothing leaves the folder.
A sidecar is written after its PNG, both atomically, so a sidecar always has a complete map.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from model.data.ufo import check_file_name, write_bytes_atomic, write_text_atomic
from model.errors import DataError

FORMAT = "receiptflow.probmap/1"
SCALE = 255


class ProbMap(NamedTuple):
    """One image's probability map on its canvas, and how the canvas maps to the original."""

    image: str
    data: np.ndarray  # (H, W): float probabilities in [0, 1], or integer levels of `scale`
    to_original: np.ndarray  # (3, 3) float64: canvas pixels -> original pixels
    original_size: tuple[int, int]  # width, height
    postprocess: dict | None = None  # the post-processing options predict used (None: unknown)
    scale: int = 1  # data / scale is the probability (1 for float data)

    def values(self) -> np.ndarray:
        """The probabilities as float64 (the dtype fusion averages in)."""
        out = self.data.astype(np.float64)
        return out / self.scale if self.scale != 1 else out

    @property
    def prob(self) -> np.ndarray:
        """The probabilities as the float32 map post-processing takes."""
        return dequantize(self.data, self.scale) if self.scale != 1 else self.data.astype(np.float32)


def quantize(prob: np.ndarray, thresh: float | None = None) -> np.ndarray:
    """Float probabilities → 8-bit levels, round(p × 255); NaN counts as 0.

    With `thresh`, a level is moved by one where rounding would put the pixel on the other side
    of `thresh` than its float value (post-processing binarizes at prob > thresh, in float32):
    the stored map then binarizes at `thresh` exactly as the float map did, so its contours, and
    nearly always its words, are the float map's (only a word's mean probability moves, by at
    most 0.5/255 + rounding)."""
    p = np.nan_to_num(np.asarray(prob, dtype=np.float32), nan=0.0)
    q = np.rint(np.clip(p, 0.0, 1.0) * SCALE).astype(np.uint8)
    if thresh is not None:
        t = np.float32(thresh)
        back = dequantize(q)
        q[(p > t) & (back <= t)] += 1  # here back <= t < 1, so q < 255
        q[(p <= t) & (back > t)] -= 1  # here back > t >= 0, so q > 0
    return q


def dequantize(levels: np.ndarray, scale: int = SCALE) -> np.ndarray:
    """Levels → the float32 probabilities post-processing sees (ProbMap.prob)."""
    return (levels.astype(np.float64) / scale).astype(np.float32)


def map_paths(folder: str | Path, image: str) -> tuple[Path, Path]:
    """(PNG, sidecar) of `image` in `folder`; a name that is not a plain image file name is refused."""
    reason = check_file_name(image)
    if reason:
        raise DataError(f"{folder}: image {image!r}: {reason}")
    folder = Path(folder)
    return folder / f"{image}.png", folder / f"{image}.json"


def write_map(
    folder: str | Path,
    image: str,
    prob: np.ndarray,
    to_original: np.ndarray,
    original_size: tuple[int, int],
    postprocess: Mapping | None = None,
    **extra,
) -> Path:
    """Store one (H, W) map (float in [0, 1]) and its sidecar; returns the sidecar's path."""
    png, side = map_paths(folder, image)
    prob = np.asarray(prob)
    if prob.ndim == 3 and prob.shape[0] == 1:
        prob = prob[0]
    if prob.ndim != 2:
        raise ValueError(f"{image}: a map must be (H, W), got shape {prob.shape}")
    matrix = np.asarray(to_original, dtype=np.float64)
    if matrix.shape != (3, 3):
        raise ValueError(f"{image}: to_original must be (3, 3), got {matrix.shape}")
    thresh = None if postprocess is None else postprocess.get("thresh")
    ok, encoded = cv2.imencode(".png", quantize(prob, thresh), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise DataError(f"{png}: cannot encode the map as PNG")
    png.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(png, encoded.tobytes())
    meta = {
        "format": FORMAT,
        "image": image,
        "shape": list(prob.shape),
        "scale": SCALE,
        "to_original": matrix.tolist(),
        "original_size": [int(v) for v in original_size],
        "postprocess": None if postprocess is None else dict(postprocess),
        "exact_at_thresh": thresh,
        **extra,
    }
    write_text_atomic(side, json.dumps(meta))
    return side


def list_maps(folder: str | Path) -> list[str]:
    """The images with a stored map in `folder` (those with a sidecar), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of probability maps (predict --maps writes one)")
    names = sorted(
        p.name[: -len(".json")]
        for p in folder.iterdir()
        if p.name.endswith(".json") and not p.name.startswith(".") and check_file_name(p.name[: -len(".json")]) is None
    )
    return names


def read_map(folder: str | Path, image: str) -> ProbMap:
    """The stored map of `image` in `folder` (levels kept as they are; `.prob` gives floats)."""
    png, side = map_paths(folder, image)
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{folder}: image {image!r}: no stored map ({side.name} is missing)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{side}: cannot read the map's sidecar ({exc})") from None
    try:
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        if meta.get("image") != image:
            raise ValueError(f"it names image {meta.get('image')!r}")
        shape = tuple(int(v) for v in meta["shape"])
        scale = int(meta["scale"])
        matrix = np.asarray(meta["to_original"], dtype=np.float64)
        width, height = (int(v) for v in meta["original_size"])
        if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)):
            raise ValueError("to_original is not a finite 3 x 3 matrix")
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{side}: not a probability-map sidecar ({exc})") from None
    try:
        raw = np.fromfile(png, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{png}: the map its sidecar describes is missing") from None
    data = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if data is None or data.ndim != 2 or data.shape != shape:
        got = "undecodable" if data is None else f"shape {data.shape}"
        raise DataError(f"{png}: not the {shape[0]} x {shape[1]} grey map its sidecar describes ({got})")
    if scale != np.iinfo(data.dtype).max:
        raise DataError(f"{side}: scale {scale} does not match the PNG's {data.dtype} levels")
    return ProbMap(image, data, matrix, (width, height), meta.get("postprocess"), scale)
