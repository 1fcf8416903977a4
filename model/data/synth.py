"""Synthetic receipts with exact word polygons: a dataset root to develop and test on without data.

One receipt (`generate_receipt`) is made in four steps, each in its own module:

1. what it says (`model.data.synth_content`): shop header, business details, date, item lines
   with right-aligned quantity and price columns, separators, totals, card payment, footer,
   barcode, in Korean (Hangul) and Latin words;
2. the flat paper strip (`model.data.synth_paper`): those lines laid out and drawn with PIL from
   Hangul-capable fonts (`model.data.fonts`) as glyph ink, each word's box measured on its ink;
3. the photograph (`model.data.synth_photo`): the strip warped by one homography (rotation,
   scale, perspective) onto a background (solid, gradient, wood, table texture), lit unevenly,
   blurred, noised and JPEG-compressed;
4. the words (here): each box mapped through the same homography.

Every annotated word is one UFO word: the tight box of its rendered glyph ink (measured on the
word's own glyph mask, plus `BOX_PAD` pixels) with its four corners mapped through the same
homography as the image, clockwise from top-left. Words cut by the image border are clipped to
their visible part; words wholly off the image are dropped. Separators, decorations ("***") and
barcode bars are ink but not words.

Everything random comes from the numpy Generator handed in, drawn in a fixed order;
`write_synthetic_dataset` (this module: split sizes, worker processes, JPEG files and the UFO
JSONs) seeds one per image from (seed, index), so an image and its words do not depend on n or
on worker count.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from model.data.fonts import find_hangul_fonts
from model.data.polygons import at_least_four_points, clip_polygons
from model.data.synth_content import receipt_lines
from model.data.synth_paper import BOX_PAD, UNLABELLED_INK, Style, lay_out, render_ink  # noqa: F401 - BOX_PAD, UNLABELLED_INK: public here
from model.data.synth_photo import camera_effects, photograph, placement
from model.data.ufo import SPLITS, DatasetRoot, Word, word_ids, write_ufo
from model.errors import DataError

DEFAULT_WIDTH = (500, 800)  # final image width range, pixels
DEFAULT_HEIGHT = (900, 1400)  # final image height range, pixels
JPEG_QUALITY = 95  # quality of the files written (the image itself already carries JPEG artefacts)


# ----------------------------------------------------------------------------------------------
# one receipt


def generate_receipt(
    rng: np.random.Generator,
    *,
    width: int | tuple[int, int] = DEFAULT_WIDTH,
    height: int | tuple[int, int] = DEFAULT_HEIGHT,
    fonts: Sequence[str | Path] | None = None,
    return_ink: bool = False,
):
    """One synthetic receipt photo: ``(rgb, words)``, or ``(rgb, words, ink)`` with `return_ink`.

    `width`/`height` are the image size in pixels, fixed or an inclusive (min, max) range drawn
    from `rng`. `fonts` are Hangul-capable font files (default: `find_hangul_fonts()`).
    `rgb` is an (H, W, 3) uint8 array; `words` a list of `Word` with 4 points (TL, TR, BR, BL) in
    image pixels, all on the image, and the word's text as transcription.

    `ink` (uint16, H x W) is the clean glyph ink warped like the image, before any lighting, blur
    or noise: ``i + 1`` where the ink belongs to ``words[i]``, `UNLABELLED_INK` for ink that is no
    word, 0 elsewhere. `return_ink` does not change the image or the words.
    """
    font_paths = tuple(str(p) for p in (fonts if fonts else find_hangul_fonts()))
    if not font_paths:
        raise DataError("generate_receipt: empty font list")
    out_w = _draw_size(rng, width, "width")
    out_h = _draw_size(rng, height, "height")

    style = Style.draw(rng, font_paths, out_w)
    layout = lay_out(receipt_lines(rng), style, rng)
    ink, labels, boxes = render_ink(layout, with_labels=return_ink)
    ph, pw = ink.shape
    homography = placement(rng, pw, ph, out_w, out_h)
    image = camera_effects(rng, photograph(rng, ink, homography, out_w, out_h))

    words, kept = _project_words(boxes, homography, out_w, out_h)
    if not return_ink:
        return image, words
    # Relabel: emitted words 1..len(words), everything else that is ink -> UNLABELLED_INK.
    lut = np.full(UNLABELLED_INK + 1, UNLABELLED_INK, dtype=np.uint16)
    lut[0] = 0
    lut[np.asarray(kept, np.int64) + 1] = np.arange(1, len(kept) + 1, dtype=np.uint16)
    warped = cv2.warpPerspective(labels, homography, (out_w, out_h), flags=cv2.INTER_NEAREST, borderValue=0)
    return image, words, lut[warped]


def _draw_size(rng: np.random.Generator, value, name: str) -> int:
    if isinstance(value, (int, np.integer)):
        lo = hi = int(value)
    else:
        try:
            lo, hi = (int(v) for v in value)
        except (TypeError, ValueError):
            raise DataError(f"generate_receipt: {name}={value!r}; need a size or (min, max) range in pixels") from None
    if lo < 64 or hi < lo:
        raise DataError(f"generate_receipt: {name}={value!r}; need a size or (min, max) range of at least 64 pixels")
    return int(rng.integers(lo, hi + 1))


def _project_words(boxes, homography, out_w: int, out_h: int) -> tuple[list[Word], list[int]]:
    """Map paper boxes through the homography; clip words cut by the image border to their
    visible part (visible ink without a label would teach the detector to miss text), drop
    words wholly off the image. A clipped word keeps no transcription: not all of it shows."""
    if not boxes:
        return [], []
    corners = np.stack([b for b, _ in boxes]).reshape(-1, 1, 2)
    mapped = cv2.perspectiveTransform(corners, homography).reshape(len(boxes), 4, 2).astype(np.float64)
    whole = list(mapped)
    polygons, kept = clip_polygons(whole, out_w, out_h)
    words = []
    for poly, i in zip(polygons, kept):
        if poly is whole[i]:
            words.append(Word(np.round(poly, 1), boxes[i][1]))
        else:
            words.append(Word(np.round(at_least_four_points(poly), 1), None))
    return words, kept


# ----------------------------------------------------------------------------------------------
# a dataset of receipts


def write_synthetic_dataset(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    splits: Sequence[float] = (0.7, 0.15, 0.15),
    workers: int | None = None,
    *,
    overwrite: bool = False,
    width: int | tuple[int, int] = DEFAULT_WIDTH,
    height: int | tuple[int, int] = DEFAULT_HEIGHT,
    progress: bool = True,
) -> dict[str, dict]:
    """Write `n` receipts as a dataset root and return ``DatasetRoot(out_dir).summary()``.

    Image ``i`` (``images/<split>/{i:05d}.jpg``) is generated from ``np.random.default_rng([seed,
    i])``; the first images go to train, then val, then test, in the proportions `splits` with at
    least one image per split. All three splits get a JSON (test too, so it can be scored).
    `workers` processes (default: CPU count, at most 8; 1 = in this process).
    An existing non-empty `out_dir` is an error unless `overwrite`, which replaces only its
    ``images/`` and ``jsons/``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 3:
        raise DataError(f"synthetic dataset: n={n!r}; need at least 3 images (one per split: {', '.join(SPLITS)})")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"synthetic dataset: seed={seed!r}; need a non-negative integer")
    counts = split_counts(n, splits)
    _draw_size(np.random.default_rng(0), width, "width")  # bad sizes fail here, not in a worker
    _draw_size(np.random.default_rng(0), height, "height")
    root = DatasetRoot(out_dir)
    out = root.root
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: output path exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DataError(
                f"{out}: output folder exists and is not empty; use --force (overwrite=True) to replace its images/ and jsons/"
            )
        for sub in ("images", "jsons"):
            target = out / sub
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
    fonts = tuple(str(p) for p in find_hangul_fonts())  # fail before any work when there is none

    split_of = [s for s, c in zip(SPLITS, counts) for _ in range(c)]
    for split in SPLITS:
        root.image_dir(split).mkdir(parents=True, exist_ok=True)
    jobs = [(seed, i, str(root.image_dir(split_of[i]) / f"{i:05d}.jpg"), fonts, width, height) for i in range(n)]
    results: dict[int, list[Word]] = {}

    from tqdm import tqdm

    workers = min(os.cpu_count() or 1, 8) if workers is None else int(workers)
    workers = max(1, min(workers, n))
    with tqdm(total=n, desc="synth", unit="img", disable=not progress) as bar:
        if workers == 1:
            for job in jobs:
                i, words = _make_one(job)
                results[i] = words
                bar.update()
        else:
            ctx = get_context("spawn")  # no fork after torch/threads in the parent
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
                for i, words in pool.map(_make_one, jobs, chunksize=max(1, min(16, n // (workers * 4)))):
                    results[i] = words
                    bar.update()

    for split in SPLITS:
        images = {
            Path(job[2]).name: dict(zip(word_ids(len(results[job[1]])), results[job[1]]))
            for job in jobs
            if split_of[job[1]] == split
        }
        write_ufo(images, root.json_path(split))
    return root.summary()


def split_counts(n: int, splits: Sequence[float]) -> tuple[int, int, int]:
    """Images per (train, val, test) for `n` images and fractions `splits`; each at least 1."""
    fractions = [float(f) for f in splits]
    if len(fractions) != 3 or any(not np.isfinite(f) or f < 0 for f in fractions) or sum(fractions) <= 0:
        raise DataError(
            f"synthetic dataset: splits={tuple(splits)!r}; need three non-negative fractions (train, val, test)"
        )
    if n < 3:
        raise DataError(f"synthetic dataset: n={n}; need at least 3 images (one per split)")
    total = sum(fractions)
    val = max(1, round(n * fractions[1] / total))
    test = max(1, round(n * fractions[2] / total))
    while n - val - test < 1:
        if val >= test:
            val -= 1
        else:
            test -= 1
    return n - val - test, val, test


def _init_worker() -> None:
    cv2.setNumThreads(1)


def _make_one(job) -> tuple[int, list[Word]]:
    seed, index, path, fonts, width, height = job
    rng = np.random.default_rng([int(seed), int(index)])
    image, words = generate_receipt(rng, width=width, height=height, fonts=fonts)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"{path}: JPEG encoding failed")
    Path(path).write_bytes(buf.tobytes())
    return index, words
