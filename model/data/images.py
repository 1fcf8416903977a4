"""Reading images the way every step must: EXIF orientation applied, RGB, truncation an error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from model.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def read_image(path: str | Path, *, max_side: int | None = None) -> tuple[np.ndarray, float]:
    """Decode `path` to an RGB uint8 array as the image displays (EXIF orientation applied).

    With `max_side`, JPEG decoding may use DCT scaling (1/2, 1/4, 1/8) as long as the result keeps
    at least `max_side` pixels on its longest side: it is several times cheaper than decoding at
    full size and resizing. Returns the array and the scale from original pixels to array pixels
    (1.0 without reduction), so polygons map exactly: ``points_in_array = points * scale``.
    Raises DataError naming the file for anything unreadable, truncated included.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            full = im.size
            if max_side is not None and im.format == "JPEG":
                im.draft("RGB", _draft_request(full, max_side))
            reduced = im.size
            im.load()
            ImageOps.exif_transpose(im, in_place=True)  # in place: no copy when nothing to rotate
            array = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: image file is missing") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from None
    # DCT scaling divides both sides by the same power of two; ceil() only rounds the last pixel.
    scale = 1.0 if reduced == full else _dct_scale(full, reduced)
    return array, scale


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) as the image displays, from the header only (no decode)."""
    (w, h), orientation = stored_size(path)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def stored_size(path: str | Path) -> tuple[tuple[int, int], int]:
    """((width, height) as the pixels are stored, EXIF orientation 1-8), from the header only."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            orientation = im.getexif().get(0x0112, 1)
            return im.size, orientation if orientation in range(1, 9) else 1
    except FileNotFoundError:
        raise DataError(f"{path}: image file is missing") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot read image header ({exc})") from None


def stored_to_display(points: np.ndarray, size: tuple[int, int], orientation: int) -> np.ndarray:
    """Points in the stored pixels of a (width, height) image -> the pixels as it displays.

    What `ImageOps.exif_transpose` does to the pixels (orientation 6 is its ROTATE_270, i.e. 90°
    clockwise), done to continuous coordinates: for tools that label the stored pixels.
    """
    w, h = size
    x, y = points[:, 0], points[:, 1]
    moved = {
        1: (x, y),
        2: (w - x, y),
        3: (w - x, h - y),
        4: (x, h - y),
        5: (y, x),
        6: (h - y, x),
        7: (h - y, w - x),
        8: (y, w - x),
    }[orientation]
    return np.stack(moved, axis=1).astype(np.float64)


def _draft_request(full: tuple[int, int], max_side: int) -> tuple[int, int]:
    # draft() picks the largest reduction whose result is still >= the requested size.
    w, h = full
    s = max_side / max(w, h)
    return (max(1, int(np.ceil(w * s))), max(1, int(np.ceil(h * s))))


def _dct_scale(full: tuple[int, int], reduced: tuple[int, int]) -> float:
    for denominator in (2, 4, 8):
        if all(-(-f // denominator) == r for f, r in zip(full, reduced)):
            return 1.0 / denominator
    raise AssertionError(f"unexpected JPEG draft size {reduced} for {full}")
