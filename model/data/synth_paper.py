"""A synthetic receipt on the flat paper strip (`model.data.synth`): its lines laid out in a font
style, then drawn as glyph ink, with the box of every word measured on its own ink.

`lay_out` turns `model.data.synth_content` lines into positioned words and filled rectangles
(separators, barcode bars); `render_ink` draws them with PIL into an ink coverage map of the
paper, an optional map of which word each ink pixel belongs to, and each word's box.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from model.data.fonts import bold_variant, is_bold
from model.data.synth_content import Line, Seg, pick

BOX_PAD = 1.0  # pixels added around the glyph ink box (on the paper, before the warp)
UNLABELLED_INK = 0xFFFF  # ink-map value for ink that is no word (separators, barcode, dropped words)


@dataclass
class Style:
    """The look of one receipt: its fonts, paper width, body text size, line spacing, margins."""

    body_font: str
    bold_font: str
    paper_w: int
    size: int  # body font size, pixels
    spacing: float  # line height / font size
    margin: int  # left/right text margin, pixels

    @classmethod
    def draw(cls, rng: np.random.Generator, fonts: tuple[str, ...], out_w: int) -> "Style":
        regular = [f for f in fonts if not is_bold(f)] or list(fonts)
        body = pick(rng, regular)
        bold = bold_variant(body, fonts) if rng.random() < 0.8 else body
        paper_w = int(out_w * rng.uniform(0.6, 0.92))
        size = int(np.clip(round(paper_w / rng.uniform(22, 30)), 12, 30))
        return cls(body, bold, paper_w, size, float(rng.uniform(1.3, 1.75)), int(paper_w * rng.uniform(0.04, 0.08)))


@functools.lru_cache(maxsize=256)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


@dataclass
class Text:
    font: ImageFont.FreeTypeFont
    text: str
    x: int  # pen position (left of the advance box) on the baseline, paper pixels
    y: int  # baseline
    word: bool  # annotated as a word


@dataclass
class Layout:
    texts: list[Text]
    rects: list[tuple[int, int, int, int]]  # filled ink rectangles x0, y0, x1, y1 (separators, bars)
    width: int
    height: int


_WORD_RE = re.compile(r"\S+")


def _is_word(token: str) -> bool:
    return any(ch.isalnum() for ch in token)


def lay_out(lines: list[Line], style: Style, rng: np.random.Generator) -> Layout:
    """Each line's words at their pen positions, separators and barcode bars as rectangles, top
    to bottom on paper `style.paper_w` wide; the paper is as tall as the lines need."""
    size = style.size
    sizes = {
        "body": size,
        "small": max(11, int(round(size * rng.uniform(0.8, 0.95)))),
        "big": int(round(size * rng.uniform(1.3, 1.9))),
    }
    left = style.margin
    text_w = style.paper_w - 2 * style.margin
    y = int(size * rng.uniform(1.0, 3.0))  # top of the current line
    texts: list[Text] = []
    rects: list[tuple[int, int, int, int]] = []
    for line in lines:
        fs = sizes[line.size]
        lh = int(round(fs * style.spacing))
        y += int(round(line.gap * lh))
        if line.sep:
            mid = y + lh // 2
            _separator(line.sep, left, left + text_w, mid, size, style, rng, texts, rects)
            y += lh
            continue
        if line.barcode:
            bar_h = int(size * rng.uniform(2.0, 3.2))
            bw = int(text_w * rng.uniform(0.5, 0.8))
            x = left + (text_w - bw) // 2
            unit = max(1, int(round(bw / 110)))
            while x < left + (text_w + bw) // 2:
                w = unit * int(rng.integers(1, 4))
                rects.append((x, y, x + w, y + bar_h))
                x += w + unit * int(rng.integers(1, 4))
            y += bar_h + lh // 4
            continue
        font = _font(style.bold_font if line.bold else style.body_font, fs)
        baseline = y + int(round(fs * 0.5 + lh * 0.5 - fs * 0.12))
        for seg, x0 in _fit_segments(line.segs, font, left, text_w):
            for m in _WORD_RE.finditer(seg.text):
                x = int(round(x0 + font.getlength(seg.text[: m.start()])))
                texts.append(Text(font, m.group(), x, baseline, _is_word(m.group())))
        y += lh
    height = y + int(size * rng.uniform(1.5, 4.0))
    return Layout(texts, rects, style.paper_w, height)


def _fit_segments(segs: list[Seg], font, left: int, text_w: int) -> list[tuple[Seg, float]]:
    """Place segments on a line; shorten the longest (drop its last word) until none overlap."""
    segs = [Seg(s.text.strip() if s.align != "l" else s.text.rstrip(), s.pos, s.align) for s in segs]
    gap = font.getlength(" ")
    while segs:
        placed = []
        for s in segs:
            w = font.getlength(s.text)
            anchor = left + s.pos * text_w
            x0 = anchor if s.align == "l" else anchor - w if s.align == "r" else anchor - w / 2
            placed.append((s, x0, x0 + w))
        placed.sort(key=lambda t: t[1])
        bad = [p for p in placed if p[1] < left - 0.5 or p[2] > left + text_w + 0.5]
        for a, b in zip(placed, placed[1:]):
            if a[2] + gap > b[1]:
                bad += [a, b]
        if not bad:
            return [(s, x0) for s, x0, _ in placed]
        victim = max(bad, key=lambda p: p[2] - p[1])[0]
        words = victim.text.split()
        segs = [s for s in segs if s is not victim]
        if len(words) > 1:
            lead = victim.text[: len(victim.text) - len(victim.text.lstrip())]
            segs.append(Seg(lead + " ".join(words[:-1]), victim.pos, victim.align))
    return []


def _separator(kind, x0, x1, mid, size, style, rng, texts, rects) -> None:
    thick = 1 if size < 18 else 2
    if kind == "solid":
        rects.append((x0, mid - thick // 2, x1, mid - thick // 2 + thick))
    elif kind == "double":
        rects.append((x0, mid - thick - 1, x1, mid - 1))
        rects.append((x0, mid + 1, x1, mid + 1 + thick))
    elif kind in ("dash", "dots"):
        dash = max(2, int(size * (0.45 if kind == "dash" else 0.12)))
        step = dash + max(2, int(size * 0.25))
        for x in range(x0, x1 - dash + 1, step):
            rects.append((x, mid - thick // 2, x + dash, mid - thick // 2 + thick))
    else:  # a line of '-' or '=' characters in the body font
        ch = "-" if kind == "text-" else "="
        font = _font(style.body_font, size)
        n = max(1, int((x1 - x0) / max(1.0, font.getlength(ch))))
        baseline = mid + int(size * 0.35)
        texts.append(Text(font, ch * n, x0, baseline, False))


def _render_word(font: ImageFont.FreeTypeFont, text: str) -> tuple[np.ndarray, int, int]:
    """Glyph coverage of `text` (uint8) and the offset of its [0, 0] from the pen position.

    The mask has a margin around the font's bounding box so that ink outside that box, should a
    font have any, is still drawn and still measured.
    """
    x0, y0, x1, y1 = font.getbbox(text, anchor="ls")
    m = 2 + font.size // 3
    img = Image.new("L", (x1 - x0 + 2 * m, y1 - y0 + 2 * m), 0)
    ImageDraw.Draw(img).text((m - x0, m - y0), text, font=font, fill=255, anchor="ls")
    return np.asarray(img), x0 - m, y0 - m


def render_ink(layout: Layout, with_labels: bool):
    """Ink coverage of the paper (uint8), ink labels (uint16, or None) and word boxes (paper px).

    A word's box is the tight box of its own rendered glyph ink, grown by `BOX_PAD`.
    """
    pw, ph = layout.width, layout.height
    ink = np.zeros((ph, pw), np.uint8)
    labels = np.zeros((ph, pw), np.uint16) if with_labels else None
    boxes: list[tuple[np.ndarray, str]] = []
    for t in layout.texts:
        mask, ox, oy = _render_word(t.font, t.text)
        x, y = t.x + ox, t.y + oy
        # clip the mask to the paper
        cx0, cy0 = max(0, -x), max(0, -y)
        cx1, cy1 = min(mask.shape[1], pw - x), min(mask.shape[0], ph - y)
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        sub = mask[cy0:cy1, cx0:cx1]
        region = (slice(y + cy0, y + cy1), slice(x + cx0, x + cx1))
        np.maximum(ink[region], sub, out=ink[region])
        label = UNLABELLED_INK
        if t.word:
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            if rows.size:
                bx0, bx1 = x + cols[0] - BOX_PAD, x + cols[-1] + 1 + BOX_PAD
                by0, by1 = y + rows[0] - BOX_PAD, y + rows[-1] + 1 + BOX_PAD
                if bx0 >= 0 and by0 >= 0 and bx1 <= pw and by1 <= ph:
                    boxes.append((np.array([[bx0, by0], [bx1, by0], [bx1, by1], [bx0, by1]], np.float64), t.text))
                    label = len(boxes)
        if labels is not None:
            labels[region][sub >= 64] = label
    for x0, y0, x1, y1 in layout.rects:
        ink[max(0, y0) : y1, max(0, x0) : x1] = 255
        if labels is not None:
            labels[max(0, y0) : y1, max(0, x0) : x1] = UNLABELLED_INK
    return ink, labels, boxes
