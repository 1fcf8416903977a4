"""Synthetic receipts with exact word polygons: a dataset root to develop and test on without data.

A receipt is laid out on a flat paper strip (shop header, business details, date, item lines with
right-aligned quantity and price columns, separators, totals, card payment, footer, barcode),
Korean (Hangul) and Latin words drawn with PIL from Hangul-capable fonts (`model.data.fonts`).
The strip is then warped by one homography (rotation, scale, perspective) onto a background
(solid, gradient, wood, table texture), lit unevenly, blurred, noised and JPEG-compressed.

Every annotated word is one UFO word: the tight box of its rendered glyph ink (measured on the
word's own glyph mask, plus `BOX_PAD` pixels) with its four corners mapped through the same
homography as the image, clockwise from top-left. Words cut by the image border are clipped to
their visible part; words wholly off the image are dropped. Separators, decorations ("***") and barcode bars are ink but not words.

Everything random comes from the numpy Generator handed in; `write_synthetic_dataset` seeds one
per image from (seed, index), so an image and its words do not depend on n or on worker count.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from model.data.fonts import find_hangul_fonts
from model.data.polygons import at_least_four_points, clip_polygons
from model.data.ufo import SPLITS, DatasetRoot, Word, word_ids, write_ufo
from model.errors import DataError

DEFAULT_WIDTH = (500, 800)  # final image width range, pixels
DEFAULT_HEIGHT = (900, 1400)  # final image height range, pixels
BOX_PAD = 1.0  # pixels added around the glyph ink box (on the paper, before the warp)
UNLABELLED_INK = 0xFFFF  # ink-map value for ink that is no word (separators, barcode, dropped words)
JPEG_QUALITY = 95  # quality of the files written (the image itself already carries JPEG artefacts)


# ----------------------------------------------------------------------------------------------
# public API


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

    style = _Style.draw(rng, font_paths, out_w)
    layout = _layout(_receipt_lines(rng), style, rng)
    ink, labels, boxes = _render_ink(layout, with_labels=return_ink)
    ph, pw = ink.shape
    homography = _placement(rng, pw, ph, out_w, out_h)
    image = _camera_effects(rng, _photograph(rng, ink, homography, out_w, out_h))

    words, kept = _project_words(boxes, homography, out_w, out_h)
    if not return_ink:
        return image, words
    # Relabel: emitted words 1..len(words), everything else that is ink -> UNLABELLED_INK.
    lut = np.full(UNLABELLED_INK + 1, UNLABELLED_INK, dtype=np.uint16)
    lut[0] = 0
    lut[np.asarray(kept, np.int64) + 1] = np.arange(1, len(kept) + 1, dtype=np.uint16)
    warped = cv2.warpPerspective(labels, homography, (out_w, out_h), flags=cv2.INTER_NEAREST, borderValue=0)
    return image, words, lut[warped]


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
            raise DataError(f"{out}: output folder exists and is not empty; use --force (overwrite=True) to replace its images/ and jsons/")
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
        images = {Path(job[2]).name: dict(zip(word_ids(len(results[job[1]])), results[job[1]])) for job in jobs if split_of[job[1]] == split}
        write_ufo(images, root.json_path(split))
    return root.summary()


def split_counts(n: int, splits: Sequence[float]) -> tuple[int, int, int]:
    """Images per (train, val, test) for `n` images and fractions `splits`; each at least 1."""
    fractions = [float(f) for f in splits]
    if len(fractions) != 3 or any(not np.isfinite(f) or f < 0 for f in fractions) or sum(fractions) <= 0:
        raise DataError(f"synthetic dataset: splits={tuple(splits)!r}; need three non-negative fractions (train, val, test)")
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


# ----------------------------------------------------------------------------------------------
# dataset workers


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


# ----------------------------------------------------------------------------------------------
# receipt content

# shop names by the kind of items they sell (Korean, and Latin names used on Korean receipts)
_SHOPS = {
    "cafe": ["스타벅스", "이디야커피", "투썸플레이스", "메가커피", "빽다방", "컴포즈커피", "파리바게뜨", "뚜레쥬르",
             "청년다방", "STARBUCKS", "CAFE BENE", "MEGA COFFEE", "Coffee Bean", "HOLLYS COFFEE", "PARIS BAGUETTE"],
    "mart": ["GS25", "CU", "세븐일레븐", "이마트24", "농협하나로마트", "홈플러스", "롯데마트", "이마트", "다이소",
             "올리브영", "동네마트", "E-MART", "DAISO", "OLIVE YOUNG", "HOMEPLUS"],
    "food": ["김밥천국", "한솥도시락", "본죽", "교촌치킨", "BBQ치킨", "명동칼국수", "할매순대국", "홍콩반점",
             "역전우동", "행복분식", "고향식당", "BHC치킨", "Kimbap Heaven"],
    "fastfood": ["맘스터치", "롯데리아", "버거킹", "맥도날드", "BURGER KING", "McDonald's", "KFC", "SUBWAY", "LOTTERIA"],
}
_BRANCHES = ["강남역점", "역삼점", "홍대입구점", "신촌점", "해운대점", "서면점", "판교점", "잠실점", "종로3가점",
             "수원역점", "대전둔산점", "광주상무점", "분당정자점", "일산점", "인천송도점", "본점", "제주시청점"]
_CITIES = ["서울특별시", "서울", "부산광역시", "경기도", "인천광역시", "대구광역시", "대전광역시", "광주광역시"]
_DISTRICTS = ["강남구", "서초구", "마포구", "종로구", "송파구", "해운대구", "성남시 분당구", "수원시 팔달구", "중구", "서구"]
_ROADS = ["테헤란로", "강남대로", "세종대로", "양화로", "올림픽로", "중앙대로", "판교역로", "해운대로", "도산대로"]
_NAMES = ["김민수", "이서연", "박지훈", "최수진", "정우성", "강하늘", "조민지", "윤재호", "장서윤", "임도현", "홍길동"]
_CARDS = ["신한카드", "국민카드", "KB국민", "삼성카드", "현대카드", "롯데카드", "우리카드", "하나카드", "BC카드", "NH농협", "VISA", "MASTER"]
_ITEMS = {
    "cafe": [
        ("아메리카노", 4500), ("ICE 아메리카노", 4500), ("카페라떼", 5000), ("바닐라라떼", 5500), ("카푸치노", 5000),
        ("카라멜 마끼아또", 5900), ("콜드브루", 4900), ("녹차라떼", 5300), ("자몽에이드", 5800), ("아이스티", 3500),
        ("HOT 카페모카", 5500), ("치즈케이크", 6500), ("크루아상", 3800), ("블루베리 머핀", 3900), ("Shot 추가", 500),
        ("Tall Latte", 5000), ("Cold Brew", 4900), ("오트밀크 변경", 600), ("딸기 스무디", 6300), ("ICED Vanilla Latte", 5500),
    ],
    "mart": [
        ("신라면 5입", 4480), ("삼다수 2L", 1200), ("서울우유 1L", 2980), ("바나나우유", 1700), ("새우깡", 1500),
        ("햇반 210g", 1650), ("계란 10구", 3990), ("풀무원 두부", 2300), ("참이슬 후레쉬", 1950), ("카스 500ml", 2650),
        ("종량제봉투 20L", 490), ("코카콜라 1.5L", 3280), ("오리온 초코파이", 4800), ("CJ 비비고 만두", 8980),
        ("Pringles Original", 3300), ("스팸 클래식 200g", 4580), ("양배추 1통", 3480), ("국산 대파", 2490),
        ("진라면 매운맛", 4250), ("Dove 바디워시", 9900), ("물티슈 100매", 1900), ("건전지 AA 4입", 4500),
    ],
    "food": [
        ("김치찌개", 8000), ("된장찌개", 8000), ("제육볶음", 9000), ("비빔밥", 8500), ("떡볶이", 4500), ("순대", 4000),
        ("라면", 4000), ("공기밥", 1000), ("치즈돈까스", 9500), ("물냉면", 9000), ("짜장면", 6000), ("짬뽕", 7500),
        ("탕수육(소)", 15000), ("후라이드치킨", 18000), ("양념치킨", 19000), ("콜라 500ml", 2000), ("소주", 5000),
        ("맥주 500cc", 4500), ("김밥", 3000), ("참치김밥", 4000), ("순대국밥", 9000), ("수육(중)", 25000),
    ],
    "fastfood": [
        ("불고기버거 세트", 6900), ("빅맥 세트", 7500), ("치즈버거", 3500), ("감자튀김 L", 2500), ("콜라 M", 2000),
        ("Whopper Set", 8900), ("상하이 스파이시", 6200), ("치킨너겟 6조각", 3300), ("Sprite M", 2000),
        ("아이스크림콘", 1000), ("Chicken Burger", 4900), ("Coffee HOT", 1500), ("맥윙 2조각", 3400),
    ],
}
_WEEKDAYS = "월화수목금토일"
_THANKS = [
    "감사합니다", "이용해 주셔서 감사합니다", "또 방문해 주세요", "Thank you!", "THANK YOU COME AGAIN",
    "좋은 하루 되세요", "교환/환불은 7일 이내 영수증 지참", "환불시 영수증을 지참하여 주십시오",
    "현금영수증 문의: 126-1-1", "Have a nice day", "www.receiptflow.co.kr",
]


@dataclass
class _Seg:
    text: str
    pos: float  # anchor position as a fraction of the text column (0 = left margin, 1 = right)
    align: str  # "l", "r" or "c"


@dataclass
class _Line:
    segs: list[_Seg] = field(default_factory=list)
    size: str = "body"  # "big", "body" or "small"
    bold: bool = False
    sep: str | None = None  # "dash", "solid", "double", "dots", "text-", "text="
    barcode: bool = False
    gap: float = 0.0  # extra space before the line, in line heights


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _money(rng: np.random.Generator, value: int) -> str:
    return f"{value:,}원" if rng.random() < 0.15 else f"{value:,}"


def _receipt_lines(rng: np.random.Generator) -> list[_Line]:
    kind = _pick(rng, list(_ITEMS))
    latin_name = rng.random() < 0.15
    L, R, C = "l", "r", "c"
    lines: list[_Line] = []
    add = lines.append

    def pair(left: str, right: str, **kw) -> _Line:
        return _Line([_Seg(left, 0.0, L), _Seg(right, 1.0, R)], **kw)

    def sep() -> _Line:
        return _Line(sep=_pick(rng, ["dash", "dash", "solid", "double", "dots", "text-", "text="]))

    # header
    if rng.random() < 0.4:
        add(_Line([_Seg(_pick(rng, ["[영수증]", "** 영수증 **", "RECEIPT", "(고객용)", "[신용승인]", "매출전표"]), 0.5, C)], bold=True))
    latin = [x for x in _SHOPS[kind] if x.isascii()]
    shop = _pick(rng, latin) if latin_name else _pick(rng, _SHOPS[kind])
    name = shop if rng.random() < 0.25 else f"{shop} {_pick(rng, _BRANCHES)}"
    centred = rng.random() < 0.75
    add(_Line([_Seg(name, 0.5, C) if centred else _Seg(name, 0.0, L)], size="big", bold=True, gap=0.3))
    biz = f"{rng.integers(100, 900)}-{rng.integers(10, 99)}-{rng.integers(10000, 99999)}"
    tel = _pick(rng, ["02", "031", "051", "032", "042", "070"]) + f"-{rng.integers(200, 9999)}-{rng.integers(1000, 9999)}"
    addr = f"{_pick(rng, _CITIES)} {_pick(rng, _DISTRICTS)} {_pick(rng, _ROADS)} {rng.integers(1, 400)}"
    if rng.random() < 0.3:
        addr += f", {rng.integers(1, 20)}층"
    info = [
        _Line([_Seg(f"사업자번호: {biz}" if rng.random() < 0.6 else f"사업자 {biz}", 0.0, L)] + ([_Seg(f"대표 {_pick(rng, _NAMES)}", 1.0, R)] if rng.random() < 0.5 else []), size="small"),
        _Line([_Seg(f"주소: {addr}" if rng.random() < 0.5 else addr, 0.0, L)], size="small"),
        _Line([_Seg(f"TEL: {tel}" if rng.random() < 0.5 else f"전화 {tel}", 0.0, L)], size="small"),
    ]
    if rng.random() < 0.4:
        info.append(_Line([_Seg(f"대표자: {_pick(rng, _NAMES)}", 0.0, L)], size="small"))
    for i in rng.permutation(len(info)):
        add(info[i])
    # date, time, POS
    y, mo, d = int(rng.integers(2019, 2025)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    hh, mm, ss = int(rng.integers(7, 24)), int(rng.integers(0, 60)), int(rng.integers(0, 60))
    wd = _WEEKDAYS[(y * 365 + mo * 31 + d) % 7]
    date = _pick(rng, [f"{y}-{mo:02d}-{d:02d}({wd})", f"{y}/{mo:02d}/{d:02d}", f"{y % 100:02d}.{mo:02d}.{d:02d}", f"{y}.{mo:02d}.{d:02d}"])
    time = f"{hh:02d}:{mm:02d}:{ss:02d}" if rng.random() < 0.6 else f"{hh:02d}:{mm:02d}"
    if rng.random() < 0.5:
        add(pair(f"{_pick(rng, ['판매일시', '거래일시', '일시', 'DATE'])}: {date} {time}", f"POS {rng.integers(1, 9):02d}", size="body"))
    else:
        add(pair(f"{date} {time}", f"No.{rng.integers(1, 9999):04d}"))
    if rng.random() < 0.5:
        add(pair(f"주문번호 {rng.integers(1, 999)}", f"담당: {_pick(rng, _NAMES)}"))
    add(sep())
    # items
    if rng.random() < 0.35:  # name, quantity, unit price, amount
        qty_col = float(rng.uniform(0.5, 0.56))
        unit_col = qty_col + float(rng.uniform(0.2, 0.24))
    else:  # name, quantity, amount
        qty_col, unit_col = float(rng.uniform(0.56, 0.7)), None
    head = _pick(rng, [("상품명", "수량", "금액", "단가"), ("품명", "수량", "금액", "단가"), ("메뉴", "수량", "금액", "단가"), ("ITEM", "QTY", "AMOUNT", "PRICE")])
    header = [_Seg(head[0], 0.0, L), _Seg(head[1], qty_col, R), _Seg(head[2], 1.0, R)]
    if unit_col is not None:
        header.append(_Seg(head[3], unit_col, R))
    add(_Line(header))
    add(sep())
    total = 0
    for _ in range(int(rng.integers(2, 13))):
        item, price = _pick(rng, _ITEMS[kind])
        qty = int(rng.choice([1, 1, 1, 1, 2, 2, 3, 4, 10]))
        amount = price * qty
        total += amount
        segs = [_Seg(item, 0.0, L), _Seg(str(qty), qty_col, R), _Seg(_money(rng, amount), 1.0, R)]
        if unit_col is not None:
            segs.append(_Seg(f"{price:,}", unit_col, R))
        if rng.random() < 0.12:
            segs[0].text = f"{rng.integers(1, 99):02d} {item}"
        add(_Line(segs))
        if rng.random() < 0.08:
            add(_Line([_Seg(f"{rng.integers(880, 890)}{rng.integers(10**9, 10**10)}", 0.05, L)], size="small"))
        if rng.random() < 0.07:
            cut = int(round(amount * 0.1 / 100)) * 100 or 100
            total -= cut
            add(_Line([_Seg(_pick(rng, ["  할인", "  행사할인", "  쿠폰할인", "  DC"]), 0.0, L), _Seg(f"-{cut:,}", 1.0, R)]))
    add(sep())
    # totals
    vat = int(round(total / 11))
    rows = [(_pick(rng, ["합계", "합계금액", "총 합계", "TOTAL"]), total)]
    if rng.random() < 0.7:
        rows += [(_pick(rng, ["과세물품가액", "과세 물품", "공급가액"]), total - vat), (_pick(rng, ["부가세", "부 가 세", "VAT"]), vat)]
    if rng.random() < 0.3:
        rows.append(("면세물품가액", 0))
    for label, value in rows:
        add(pair(label, _money(rng, value)))
    add(pair(_pick(rng, ["받을금액", "결제금액", "청구금액", "총 결제금액"]), _money(rng, total), size="big" if rng.random() < 0.4 else "body", bold=True))
    paid_cash = rng.random() < 0.25
    if paid_cash:
        given = int(np.ceil(total / 10000) * 10000)
        add(pair("받은금액", _money(rng, given)))
        add(pair("거스름돈", _money(rng, given - total)))
    add(sep())
    # payment
    if not paid_cash:
        card = f"{rng.integers(4000, 9999)}-{rng.integers(10, 99)}**-****-{rng.integers(1000, 9999)}"
        pay = [
            ("카드종류", _pick(rng, _CARDS)),
            ("카드번호", card),
            ("할부", _pick(rng, ["일시불", "일시불", "3개월", "00"])),
            ("승인번호", f"{rng.integers(10**7, 10**8)}"),
            ("승인일시", f"{date} {time}"),
        ]
        if rng.random() < 0.5:
            pay.append(("가맹점번호", f"{rng.integers(10**8, 10**9)}"))
        for label, value in pay:
            add(pair(f"{label}:" if rng.random() < 0.3 else label, value))
        add(sep())
    # footer
    if rng.random() < 0.5:
        pts = int(total * 0.01)
        add(pair(_pick(rng, ["포인트 적립", "적립 포인트", "멤버십 적립"]), f"{pts:,}P", size="small"))
        add(pair(_pick(rng, ["잔여 포인트", "누적 포인트"]), f"{int(rng.integers(pts, 50000)):,}P", size="small"))
    for _ in range(int(rng.integers(1, 3))):
        text = _pick(rng, _THANKS)
        if rng.random() < 0.25:
            text = f"*** {text} ***"
        add(_Line([_Seg(text, 0.5, C)], size="small" if rng.random() < 0.5 else "body", gap=0.2))
    if rng.random() < 0.6:
        add(_Line(barcode=True, gap=0.4))
        add(_Line([_Seg(f"{rng.integers(10**11, 10**12)}{rng.integers(10, 99)}", 0.5, C)], size="small"))
    return lines


# ----------------------------------------------------------------------------------------------
# layout and rendering on the flat paper


@dataclass
class _Style:
    body_font: str
    bold_font: str
    paper_w: int
    size: int  # body font size, pixels
    spacing: float  # line height / font size
    margin: int  # left/right text margin, pixels

    @classmethod
    def draw(cls, rng: np.random.Generator, fonts: tuple[str, ...], out_w: int) -> "_Style":
        regular = [f for f in fonts if not _is_bold(f)] or list(fonts)
        body = _pick(rng, regular)
        bold = _bold_variant(body, fonts) if rng.random() < 0.8 else body
        paper_w = int(out_w * rng.uniform(0.6, 0.92))
        size = int(np.clip(round(paper_w / rng.uniform(22, 30)), 12, 30))
        return cls(body, bold, paper_w, size, float(rng.uniform(1.3, 1.75)), int(paper_w * rng.uniform(0.04, 0.08)))


def _is_bold(path: str) -> bool:
    stem = Path(path).stem
    return "bold" in stem.lower() or bool(re.search(r"(?<=[a-z])B$", stem)) or stem.lower().endswith(("-b", "_b", "heavy", "black"))


def _bold_variant(path: str, fonts: tuple[str, ...]) -> str:
    stem = Path(path).stem
    base = stem[:-1] if re.search(r"(?<=[a-z])R$", stem) else re.sub(r"[-_ ]?(Regular|Light)$", "", stem)
    for f in fonts:
        other = Path(f).stem
        if other != stem and other.startswith(base) and _is_bold(f) and len(other) <= len(base) + 5:
            return f
    return path


@functools.lru_cache(maxsize=256)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


@dataclass
class _Text:
    font: ImageFont.FreeTypeFont
    text: str
    x: int  # pen position (left of the advance box) on the baseline, paper pixels
    y: int  # baseline
    word: bool  # annotated as a word


@dataclass
class _Layout:
    texts: list[_Text]
    rects: list[tuple[int, int, int, int]]  # filled ink rectangles x0, y0, x1, y1 (separators, bars)
    width: int
    height: int


_WORD_RE = re.compile(r"\S+")


def _is_word(token: str) -> bool:
    return any(ch.isalnum() for ch in token)


def _layout(lines: list[_Line], style: _Style, rng: np.random.Generator) -> _Layout:
    size = style.size
    sizes = {"body": size, "small": max(11, int(round(size * rng.uniform(0.8, 0.95)))), "big": int(round(size * rng.uniform(1.3, 1.9)))}
    left = style.margin
    text_w = style.paper_w - 2 * style.margin
    y = int(size * rng.uniform(1.0, 3.0))  # top of the current line
    texts: list[_Text] = []
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
                texts.append(_Text(font, m.group(), x, baseline, _is_word(m.group())))
        y += lh
    height = y + int(size * rng.uniform(1.5, 4.0))
    return _Layout(texts, rects, style.paper_w, height)


def _fit_segments(segs: list[_Seg], font, left: int, text_w: int) -> list[tuple[_Seg, float]]:
    """Place segments on a line; shorten the longest (drop its last word) until none overlap."""
    segs = [_Seg(s.text.strip() if s.align != "l" else s.text.rstrip(), s.pos, s.align) for s in segs]
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
            segs.append(_Seg(lead + " ".join(words[:-1]), victim.pos, victim.align))
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
        texts.append(_Text(font, ch * n, x0, baseline, False))


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


def _render_ink(layout: _Layout, with_labels: bool):
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
        ink[max(0, y0):y1, max(0, x0):x1] = 255
        if labels is not None:
            labels[max(0, y0):y1, max(0, x0):x1] = UNLABELLED_INK
    return ink, labels, boxes


def _photograph(rng: np.random.Generator, ink: np.ndarray, homography: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
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
    mask_small = cv2.warpPerspective(shape, h_small, (sw, sh), flags=cv2.INTER_LINEAR, borderValue=0).astype(np.float32) / 255.0
    dx, dy = (float(v) for v in rng.uniform(-2.0, 2.0, 2))
    shifted = cv2.warpAffine(mask_small, np.float32([[1, 0, dx], [0, 1, dy]]), (sw, sh), borderMode=cv2.BORDER_REPLICATE)
    shadow = cv2.GaussianBlur(shifted, (0, 0), float(rng.uniform(0.8, 2.5)))
    light = _illumination(rng, sh, sw)
    cast = (1.0 + rng.normal(0, 0.03, 3)).astype(np.float32)
    bg = bg * ((1.0 - np.float32(rng.uniform(0.2, 0.5)) * shadow) * light)[..., None] * cast
    bg = cv2.resize(np.clip(bg, 0, 255).astype(np.uint8), (out_w, out_h), interpolation=cv2.INTER_LINEAR)

    # paper colour, lit by the scene's light pulled back into paper coordinates
    light_p = cv2.warpPerspective(light, h_small, (pw, ph), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    lit_paper = (1.0 - alpha) * light_p  # paper colour weight
    lit_ink = alpha * light_p  # ink colour weight
    lit_light = paper_light * lit_paper
    channels = [cast[c] * (colour[c] * lit_paper + lit_light + ink_rgb[c] * lit_ink) for c in range(3)]
    paper = np.clip(cv2.merge(channels), 0, 255).astype(np.uint8)

    warped = cv2.warpPerspective(paper, homography, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpPerspective(shape, homography, (out_w, out_h), flags=cv2.INTER_LINEAR, borderValue=0).astype(np.float32) / 255.0
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


# ----------------------------------------------------------------------------------------------
# photo: placement, background, lighting, camera


def _placement(rng: np.random.Generator, pw: int, ph: int, out_w: int, out_h: int) -> np.ndarray:
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


_BG_COLOURS = np.array([
    [60, 45, 35], [120, 85, 55], [165, 120, 80], [200, 160, 115],  # browns
    [40, 40, 42], [80, 80, 85], [20, 22, 25], [130, 130, 135],  # greys, black desk
    [190, 185, 175], [215, 210, 200], [160, 170, 180],  # light tables, paper-like (hard cases)
    [40, 70, 55], [35, 55, 95], [120, 40, 40], [190, 150, 60],  # green mat, blue, red, yellow
], np.float32)


_WOOD_COLOURS = np.array([
    [70, 45, 28], [105, 70, 42], [140, 95, 58], [175, 128, 82], [200, 160, 112], [120, 80, 55], [160, 120, 90],
], np.float32)


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
        streak = _smooth_noise(rng, h, w, *((4, int(rng.integers(60, 140))) if vertical else (int(rng.integers(60, 140)), 4)))
        seam = np.where((across % plank_w) < 1.0, np.float32(0.6), np.float32(1.0))
        shade = (0.82 + 0.14 * rings + 0.14 * (streak - 0.5) + 0.16 * (plank_hash - 0.5)) * seam
        img = colour * shade[..., None]
    else:  # table / granite: speckles over blotches
        blotch = _smooth_noise(rng, h, w, int(rng.integers(3, 8)), int(rng.integers(3, 8)))
        speck = rng.standard_normal((h, w), dtype=np.float32)
        img = colour + ((blotch - 0.5) * 30 + speck * float(rng.uniform(3, 12)))[..., None]
    return np.ascontiguousarray(np.broadcast_to(img, (h, w, 3)), dtype=np.float32)


def _camera_effects(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
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
