"""Human-readable views of a run for the Kubeflow UI: Markdown tables and an HTML page of
test images with their predicted polygons drawn (images embedded, so the page stands alone)."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from model.data.images import read_image
from model.data.ufo import Word

POLYGON_BGR = (40, 40, 230)  # red on the usual white receipt


def table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A Markdown table; floats with four decimals, `|` escaped, line breaks flattened."""

    def cell(v) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def dataset_markdown(uri: str, summary: Mapping[str, Mapping], problems: Sequence[str]) -> str:
    rows = [
        (
            split,
            s["images"],
            s["words"],
            s["words_per_image"],
            f"{s['width'][0]}-{s['width'][1]}",
            f"{s['height'][0]}-{s['height'][1]}",
            s["problems"],
        )
        for split, s in summary.items()
    ]
    text = [
        f"# Dataset `{uri}`",
        "",
        table(("split", "images", "words", "words/image", "width", "height", "problems"), rows),
    ]
    if problems:
        text += ["", f"## {len(problems)} problem(s): skipped items", ""] + [f"- {p}" for p in problems]
    return "\n".join(text) + "\n"


def draw_words(image: np.ndarray, words: Mapping[str, Word]) -> np.ndarray:
    """A BGR copy of the RGB `image` with every word's polygon outlined."""
    out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    thickness = max(1, round(max(out.shape[:2]) / 500))
    polys = [
        np.round(np.asarray(w.points, dtype=np.float64)).astype(np.int32).reshape(-1, 1, 2) for w in words.values()
    ]
    cv2.polylines(out, polys, isClosed=True, color=POLYGON_BGR, thickness=thickness, lineType=cv2.LINE_AA)
    return out


def predictions_html(
    title: str,
    image_paths: Mapping[str, Path],
    predictions: Mapping[str, Mapping[str, Word]],
    *,
    max_images: int = 4,
    max_side: int = 900,
) -> str:
    """A standalone HTML page: the first `max_images` images (by name) with their polygons drawn."""
    figures = []
    for name in sorted(image_paths)[:max_images]:
        image, _ = read_image(image_paths[name])
        drawn = draw_words(image, predictions.get(name, {}))
        scale = min(1.0, max_side / max(drawn.shape[:2]))
        if scale < 1:
            drawn = cv2.resize(drawn, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", drawn, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise RuntimeError(f"{name}: JPEG encoding failed")
        data = base64.b64encode(jpeg.tobytes()).decode("ascii")
        n = len(predictions.get(name, {}))
        figures.append(
            f'<figure><img src="data:image/jpeg;base64,{data}" alt="{html.escape(name)}">'
            f"<figcaption>{html.escape(name)}: {n} word(s)</figcaption></figure>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title><style>"
        "body{font-family:sans-serif;margin:16px}figure{display:inline-block;margin:8px;vertical-align:top}"
        "img{max-height:640px;border:1px solid #ccc}</style></head><body><h2>"
        + html.escape(title)
        + "</h2>"
        + "".join(figures)
        + "</body></html>\n"
    )
