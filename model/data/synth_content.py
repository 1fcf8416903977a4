"""What a synthetic receipt says (`model.data.synth`): its lines of text, drawn from a numpy Generator.

A receipt is a list of `Line`s: a shop header, business details, date, item lines with
right-aligned quantity and price columns, separators, totals, card payment, footer, barcode, in
Korean (Hangul) and the Latin words Korean receipts use. Each `Seg` of a line is anchored at a
fraction of the text column; `model.data.synth_paper` places and draws them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# shop names by the kind of items they sell (Korean, and Latin names used on Korean receipts)
_SHOPS = {
    "cafe": [
        "스타벅스",
        "이디야커피",
        "투썸플레이스",
        "메가커피",
        "빽다방",
        "컴포즈커피",
        "파리바게뜨",
        "뚜레쥬르",
        "청년다방",
        "STARBUCKS",
        "CAFE BENE",
        "MEGA COFFEE",
        "Coffee Bean",
        "HOLLYS COFFEE",
        "PARIS BAGUETTE",
    ],
    "mart": [
        "GS25",
        "CU",
        "세븐일레븐",
        "이마트24",
        "농협하나로마트",
        "홈플러스",
        "롯데마트",
        "이마트",
        "다이소",
        "올리브영",
        "동네마트",
        "E-MART",
        "DAISO",
        "OLIVE YOUNG",
        "HOMEPLUS",
    ],
    "food": [
        "김밥천국",
        "한솥도시락",
        "본죽",
        "교촌치킨",
        "BBQ치킨",
        "명동칼국수",
        "할매순대국",
        "홍콩반점",
        "역전우동",
        "행복분식",
        "고향식당",
        "BHC치킨",
        "Kimbap Heaven",
    ],
    "fastfood": [
        "맘스터치",
        "롯데리아",
        "버거킹",
        "맥도날드",
        "BURGER KING",
        "McDonald's",
        "KFC",
        "SUBWAY",
        "LOTTERIA",
    ],
}
_BRANCHES = [
    "강남역점",
    "역삼점",
    "홍대입구점",
    "신촌점",
    "해운대점",
    "서면점",
    "판교점",
    "잠실점",
    "종로3가점",
    "수원역점",
    "대전둔산점",
    "광주상무점",
    "분당정자점",
    "일산점",
    "인천송도점",
    "본점",
    "제주시청점",
]
_CITIES = ["서울특별시", "서울", "부산광역시", "경기도", "인천광역시", "대구광역시", "대전광역시", "광주광역시"]
_DISTRICTS = [
    "강남구",
    "서초구",
    "마포구",
    "종로구",
    "송파구",
    "해운대구",
    "성남시 분당구",
    "수원시 팔달구",
    "중구",
    "서구",
]
_ROADS = ["테헤란로", "강남대로", "세종대로", "양화로", "올림픽로", "중앙대로", "판교역로", "해운대로", "도산대로"]
_NAMES = ["김민수", "이서연", "박지훈", "최수진", "정우성", "강하늘", "조민지", "윤재호", "장서윤", "임도현", "홍길동"]
_CARDS = [
    "신한카드",
    "국민카드",
    "KB국민",
    "삼성카드",
    "현대카드",
    "롯데카드",
    "우리카드",
    "하나카드",
    "BC카드",
    "NH농협",
    "VISA",
    "MASTER",
]
_ITEMS = {
    "cafe": [
        ("아메리카노", 4500),
        ("ICE 아메리카노", 4500),
        ("카페라떼", 5000),
        ("바닐라라떼", 5500),
        ("카푸치노", 5000),
        ("카라멜 마끼아또", 5900),
        ("콜드브루", 4900),
        ("녹차라떼", 5300),
        ("자몽에이드", 5800),
        ("아이스티", 3500),
        ("HOT 카페모카", 5500),
        ("치즈케이크", 6500),
        ("크루아상", 3800),
        ("블루베리 머핀", 3900),
        ("Shot 추가", 500),
        ("Tall Latte", 5000),
        ("Cold Brew", 4900),
        ("오트밀크 변경", 600),
        ("딸기 스무디", 6300),
        ("ICED Vanilla Latte", 5500),
    ],
    "mart": [
        ("신라면 5입", 4480),
        ("삼다수 2L", 1200),
        ("서울우유 1L", 2980),
        ("바나나우유", 1700),
        ("새우깡", 1500),
        ("햇반 210g", 1650),
        ("계란 10구", 3990),
        ("풀무원 두부", 2300),
        ("참이슬 후레쉬", 1950),
        ("카스 500ml", 2650),
        ("종량제봉투 20L", 490),
        ("코카콜라 1.5L", 3280),
        ("오리온 초코파이", 4800),
        ("CJ 비비고 만두", 8980),
        ("Pringles Original", 3300),
        ("스팸 클래식 200g", 4580),
        ("양배추 1통", 3480),
        ("국산 대파", 2490),
        ("진라면 매운맛", 4250),
        ("Dove 바디워시", 9900),
        ("물티슈 100매", 1900),
        ("건전지 AA 4입", 4500),
    ],
    "food": [
        ("김치찌개", 8000),
        ("된장찌개", 8000),
        ("제육볶음", 9000),
        ("비빔밥", 8500),
        ("떡볶이", 4500),
        ("순대", 4000),
        ("라면", 4000),
        ("공기밥", 1000),
        ("치즈돈까스", 9500),
        ("물냉면", 9000),
        ("짜장면", 6000),
        ("짬뽕", 7500),
        ("탕수육(소)", 15000),
        ("후라이드치킨", 18000),
        ("양념치킨", 19000),
        ("콜라 500ml", 2000),
        ("소주", 5000),
        ("맥주 500cc", 4500),
        ("김밥", 3000),
        ("참치김밥", 4000),
        ("순대국밥", 9000),
        ("수육(중)", 25000),
    ],
    "fastfood": [
        ("불고기버거 세트", 6900),
        ("빅맥 세트", 7500),
        ("치즈버거", 3500),
        ("감자튀김 L", 2500),
        ("콜라 M", 2000),
        ("Whopper Set", 8900),
        ("상하이 스파이시", 6200),
        ("치킨너겟 6조각", 3300),
        ("Sprite M", 2000),
        ("아이스크림콘", 1000),
        ("Chicken Burger", 4900),
        ("Coffee HOT", 1500),
        ("맥윙 2조각", 3400),
    ],
}
_WEEKDAYS = "월화수목금토일"
_THANKS = [
    "감사합니다",
    "이용해 주셔서 감사합니다",
    "또 방문해 주세요",
    "Thank you!",
    "THANK YOU COME AGAIN",
    "좋은 하루 되세요",
    "교환/환불은 7일 이내 영수증 지참",
    "환불시 영수증을 지참하여 주십시오",
    "현금영수증 문의: 126-1-1",
    "Have a nice day",
    "www.receiptflow.co.kr",
]


@dataclass
class Seg:
    text: str
    pos: float  # anchor position as a fraction of the text column (0 = left margin, 1 = right)
    align: str  # "l", "r" or "c"


@dataclass
class Line:
    segs: list[Seg] = field(default_factory=list)
    size: str = "body"  # "big", "body" or "small"
    bold: bool = False
    sep: str | None = None  # "dash", "solid", "double", "dots", "text-", "text="
    barcode: bool = False
    gap: float = 0.0  # extra space before the line, in line heights


def pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _money(rng: np.random.Generator, value: int) -> str:
    return f"{value:,}원" if rng.random() < 0.15 else f"{value:,}"


def receipt_lines(rng: np.random.Generator) -> list[Line]:
    kind = pick(rng, list(_ITEMS))
    latin_name = rng.random() < 0.15
    L, R, C = "l", "r", "c"
    lines: list[Line] = []
    add = lines.append

    def pair(left: str, right: str, **kw) -> Line:
        return Line([Seg(left, 0.0, L), Seg(right, 1.0, R)], **kw)

    def sep() -> Line:
        return Line(sep=pick(rng, ["dash", "dash", "solid", "double", "dots", "text-", "text="]))

    # header
    if rng.random() < 0.4:
        add(
            Line(
                [Seg(pick(rng, ["[영수증]", "** 영수증 **", "RECEIPT", "(고객용)", "[신용승인]", "매출전표"]), 0.5, C)],
                bold=True,
            )
        )
    latin = [x for x in _SHOPS[kind] if x.isascii()]
    shop = pick(rng, latin) if latin_name else pick(rng, _SHOPS[kind])
    name = shop if rng.random() < 0.25 else f"{shop} {pick(rng, _BRANCHES)}"
    centred = rng.random() < 0.75
    add(Line([Seg(name, 0.5, C) if centred else Seg(name, 0.0, L)], size="big", bold=True, gap=0.3))
    biz = f"{rng.integers(100, 900)}-{rng.integers(10, 99)}-{rng.integers(10000, 99999)}"
    tel = (
        pick(rng, ["02", "031", "051", "032", "042", "070"]) + f"-{rng.integers(200, 9999)}-{rng.integers(1000, 9999)}"
    )
    addr = f"{pick(rng, _CITIES)} {pick(rng, _DISTRICTS)} {pick(rng, _ROADS)} {rng.integers(1, 400)}"
    if rng.random() < 0.3:
        addr += f", {rng.integers(1, 20)}층"
    info = [
        Line(
            [Seg(f"사업자번호: {biz}" if rng.random() < 0.6 else f"사업자 {biz}", 0.0, L)]
            + ([Seg(f"대표 {pick(rng, _NAMES)}", 1.0, R)] if rng.random() < 0.5 else []),
            size="small",
        ),
        Line([Seg(f"주소: {addr}" if rng.random() < 0.5 else addr, 0.0, L)], size="small"),
        Line([Seg(f"TEL: {tel}" if rng.random() < 0.5 else f"전화 {tel}", 0.0, L)], size="small"),
    ]
    if rng.random() < 0.4:
        info.append(Line([Seg(f"대표자: {pick(rng, _NAMES)}", 0.0, L)], size="small"))
    for i in rng.permutation(len(info)):
        add(info[i])
    # date, time, POS
    y, mo, d = int(rng.integers(2019, 2025)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    hh, mm, ss = int(rng.integers(7, 24)), int(rng.integers(0, 60)), int(rng.integers(0, 60))
    wd = _WEEKDAYS[(y * 365 + mo * 31 + d) % 7]
    date = pick(
        rng,
        [
            f"{y}-{mo:02d}-{d:02d}({wd})",
            f"{y}/{mo:02d}/{d:02d}",
            f"{y % 100:02d}.{mo:02d}.{d:02d}",
            f"{y}.{mo:02d}.{d:02d}",
        ],
    )
    time = f"{hh:02d}:{mm:02d}:{ss:02d}" if rng.random() < 0.6 else f"{hh:02d}:{mm:02d}"
    if rng.random() < 0.5:
        add(
            pair(
                f"{pick(rng, ['판매일시', '거래일시', '일시', 'DATE'])}: {date} {time}",
                f"POS {rng.integers(1, 9):02d}",
                size="body",
            )
        )
    else:
        add(pair(f"{date} {time}", f"No.{rng.integers(1, 9999):04d}"))
    if rng.random() < 0.5:
        add(pair(f"주문번호 {rng.integers(1, 999)}", f"담당: {pick(rng, _NAMES)}"))
    add(sep())
    # items
    if rng.random() < 0.35:  # name, quantity, unit price, amount
        qty_col = float(rng.uniform(0.5, 0.56))
        unit_col = qty_col + float(rng.uniform(0.2, 0.24))
    else:  # name, quantity, amount
        qty_col, unit_col = float(rng.uniform(0.56, 0.7)), None
    head = pick(
        rng,
        [
            ("상품명", "수량", "금액", "단가"),
            ("품명", "수량", "금액", "단가"),
            ("메뉴", "수량", "금액", "단가"),
            ("ITEM", "QTY", "AMOUNT", "PRICE"),
        ],
    )
    header = [Seg(head[0], 0.0, L), Seg(head[1], qty_col, R), Seg(head[2], 1.0, R)]
    if unit_col is not None:
        header.append(Seg(head[3], unit_col, R))
    add(Line(header))
    add(sep())
    total = 0
    for _ in range(int(rng.integers(2, 13))):
        item, price = pick(rng, _ITEMS[kind])
        qty = int(rng.choice([1, 1, 1, 1, 2, 2, 3, 4, 10]))
        amount = price * qty
        total += amount
        segs = [Seg(item, 0.0, L), Seg(str(qty), qty_col, R), Seg(_money(rng, amount), 1.0, R)]
        if unit_col is not None:
            segs.append(Seg(f"{price:,}", unit_col, R))
        if rng.random() < 0.12:
            segs[0].text = f"{rng.integers(1, 99):02d} {item}"
        add(Line(segs))
        if rng.random() < 0.08:
            add(Line([Seg(f"{rng.integers(880, 890)}{rng.integers(10**9, 10**10)}", 0.05, L)], size="small"))
        if rng.random() < 0.07:
            cut = int(round(amount * 0.1 / 100)) * 100 or 100
            total -= cut
            add(
                Line([Seg(pick(rng, ["  할인", "  행사할인", "  쿠폰할인", "  DC"]), 0.0, L), Seg(f"-{cut:,}", 1.0, R)])
            )
    add(sep())
    # totals
    vat = int(round(total / 11))
    rows = [(pick(rng, ["합계", "합계금액", "총 합계", "TOTAL"]), total)]
    if rng.random() < 0.7:
        rows += [
            (pick(rng, ["과세물품가액", "과세 물품", "공급가액"]), total - vat),
            (pick(rng, ["부가세", "부 가 세", "VAT"]), vat),
        ]
    if rng.random() < 0.3:
        rows.append(("면세물품가액", 0))
    for label, value in rows:
        add(pair(label, _money(rng, value)))
    add(
        pair(
            pick(rng, ["받을금액", "결제금액", "청구금액", "총 결제금액"]),
            _money(rng, total),
            size="big" if rng.random() < 0.4 else "body",
            bold=True,
        )
    )
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
            ("카드종류", pick(rng, _CARDS)),
            ("카드번호", card),
            ("할부", pick(rng, ["일시불", "일시불", "3개월", "00"])),
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
        add(pair(pick(rng, ["포인트 적립", "적립 포인트", "멤버십 적립"]), f"{pts:,}P", size="small"))
        add(pair(pick(rng, ["잔여 포인트", "누적 포인트"]), f"{int(rng.integers(pts, 50000)):,}P", size="small"))
    for _ in range(int(rng.integers(1, 3))):
        text = pick(rng, _THANKS)
        if rng.random() < 0.25:
            text = f"*** {text} ***"
        add(Line([Seg(text, 0.5, C)], size="small" if rng.random() < 0.5 else "body", gap=0.2))
    if rng.random() < 0.6:
        add(Line(barcode=True, gap=0.4))
        add(Line([Seg(f"{rng.integers(10**11, 10**12)}{rng.integers(10, 99)}", 0.5, C)], size="small"))
    return lines
