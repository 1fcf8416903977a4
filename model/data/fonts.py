"""Finding fonts that can render Hangul (for synthetic receipts), and telling a family's bold file
from its regular one by the file name (`is_bold`, `bold_variant`).

Lookup order:

1. ``$RECEIPTFLOW_FONT_DIR``: when set, only this folder (searched recursively) is used. A folder
   without a usable font is an error, not a silent fall-back, so a run that names its fonts gets
   exactly those.
2. ``/usr/share/fonts/truetype/nanum`` (Debian's ``fonts-nanum``).
3. ``fc-list :lang=ko file`` (fontconfig's Korean-capable fonts).

A candidate counts only when it opens with PIL and draws "가" as a real glyph (ink, and not the
font's .notdef box), so a Latin-only font dropped into the folder is skipped.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from model.errors import DataError

FONT_DIR_ENV = "RECEIPTFLOW_FONT_DIR"
DEBIAN_NANUM_DIR = Path("/usr/share/fonts/truetype/nanum")
FONT_SUFFIXES = (".ttf", ".otf", ".ttc")
NO_FONT_MESSAGE = (
    "no Hangul font found: install Debian's fonts-nanum (sudo apt-get install fonts-nanum) "
    f"or set {FONT_DIR_ENV} to a folder of .ttf files with Hangul glyphs"
)
# A code point no font maps (plane 15 private use): it draws the font's .notdef glyph, if any.
_NOTDEF_PROBE = "\U000f0000"


def find_hangul_fonts() -> list[Path]:
    """All usable Hangul fonts from the first source that has any, sorted by path.

    Raises DataError (NO_FONT_MESSAGE) when there is none; when ``$RECEIPTFLOW_FONT_DIR`` is set
    the message also names that folder.
    """
    env = os.environ.get(FONT_DIR_ENV)
    return list(_find(env or None))


def has_hangul(path: str | Path) -> bool:
    """True when PIL opens `path` and it draws "가" as a real glyph (not empty, not .notdef)."""
    from PIL import ImageFont

    try:
        font = ImageFont.truetype(str(path), 32)
        hangul = font.getmask("가")
        notdef = font.getmask(_NOTDEF_PROBE)
    except (OSError, ValueError):
        return False
    if hangul.size[0] == 0 or hangul.size[1] == 0 or max(bytes(hangul)) == 0:
        return False
    return hangul.size != notdef.size or bytes(hangul) != bytes(notdef)


def is_bold(path: str | Path) -> bool:
    """Whether the file name marks a bold face: "Bold", a trailing "B" after lower case
    (NanumGothicB), "-b", "_b", "Heavy", "Black"."""
    stem = Path(path).stem
    return (
        "bold" in stem.lower()
        or bool(re.search(r"(?<=[a-z])B$", stem))
        or stem.lower().endswith(("-b", "_b", "heavy", "black"))
    )


def bold_variant(path: str, fonts: tuple[str, ...]) -> str:
    """The bold face of `path`'s family among `fonts` (same name stem, give or take a "Regular",
    "Light" or trailing "R", and at most 5 more characters), else `path` itself."""
    stem = Path(path).stem
    base = stem[:-1] if re.search(r"(?<=[a-z])R$", stem) else re.sub(r"[-_ ]?(Regular|Light)$", "", stem)
    for f in fonts:
        other = Path(f).stem
        if other != stem and other.startswith(base) and is_bold(f) and len(other) <= len(base) + 5:
            return f
    return path


@functools.lru_cache(maxsize=8)
def _find(env_dir: str | None) -> tuple[Path, ...]:
    if env_dir is not None:
        fonts = _usable(_scan_dir(Path(env_dir)))
        if not fonts:
            raise DataError(f"{NO_FONT_MESSAGE} ({FONT_DIR_ENV}={env_dir} holds none)")
        return fonts
    for candidates in (lambda: _scan_dir(DEBIAN_NANUM_DIR), _fc_list):
        fonts = _usable(candidates())
        if fonts:
            return fonts
    raise DataError(NO_FONT_MESSAGE)


def _scan_dir(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.rglob("*") if p.suffix.lower() in FONT_SUFFIXES and p.is_file()]


def _fc_list() -> list[Path]:
    exe = shutil.which("fc-list")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, ":lang=ko", "file"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    # Lines look like "/usr/share/fonts/x/Font.ttf: " (some fontconfig versions omit the colon).
    paths = [Path(line.strip().rstrip(":").strip()) for line in out.splitlines() if line.strip()]
    return [p for p in paths if p.suffix.lower() in FONT_SUFFIXES and p.is_file()]


def _usable(paths: list[Path]) -> tuple[Path, ...]:
    return tuple(sorted({p for p in paths if has_hangul(p)}))
