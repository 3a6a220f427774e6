"""Write the vendor test files under tests/data/vendor/<layout>/ from the vendors' published field
lists (the sources are cited in each mapping under market/vendor/mappings/ and in README.md here).
The prices are made up; the layouts, codes, signs, units, encodings and file naming are the
vendors'. Outputs are committed; tests only read them.

    PYTHONPATH=. .venv/bin/python tests/data/vendor/make_layouts.py

One morning of 035720 (카카오, KOSPI) on 2024-03-04, 기준가 50,000: the opening call ends at
09:00:07 (a random end) at 50,100; the price climbs 100 a print; at 09:17:23 a print at 55,200
would leave the static band (10% of 50,100): a static VI, its call auction ending at 09:19:41
(2:18, a random end) at 55,300; trading goes on.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

HERE = Path(__file__).resolve().parent
CODE, NAME, BASE, OPEN = "035720", "카카오", 50_000, 50_100
DAY = dt.date(2024, 3, 4)
VI_AT, RELEASE_AT, TRIGGER, UNCROSS = dt.time(9, 17, 23), dt.time(9, 19, 41), 55_200, 55_300


def _t(seconds: int) -> dt.time:
    return (dt.datetime.combine(DAY, dt.time(9, 0, 7)) + dt.timedelta(seconds=seconds)).time()


def prints() -> list[dict]:
    """(time, price, volume, side, cum) of the morning's prints; side 0: a call's uncross."""
    out, cum = [], 0

    def add(time, price, volume, side):
        nonlocal cum
        cum += volume
        out.append({"time": time, "price": price, "volume": volume, "side": side, "cum": cum})

    add(_t(0), OPEN, 1_200, 0)
    price, k = OPEN, 0
    while price + 100 < TRIGGER:
        k += 1
        price += 100
        add(_t(k * 20), price, 30 + (k * 37) % 400, 1 if k % 3 else -1)
    add(RELEASE_AT, UNCROSS, 5_400, 0)
    for j in range(1, 9):
        add(
            (dt.datetime.combine(DAY, RELEASE_AT) + dt.timedelta(seconds=15 * j)).time(),
            UNCROSS + 100 * (j % 3),
            80 + j,
            1 if j % 2 else -1,
        )
    return out


def books() -> list[dict]:
    """A 10-level book a minute, around the last print before it (none during the VI call)."""
    out, trades = [], prints()
    for minute in range(1, 27):
        at = (dt.datetime.combine(DAY, dt.time(9, 0, 30)) + dt.timedelta(minutes=minute)).time()
        if VI_AT <= at < RELEASE_AT:
            continue
        last = max((p for p in trades if p["time"] <= at), key=lambda p: p["time"])["price"]
        out.append(
            {
                "time": at,
                "asks": [last + 100 * i for i in range(1, 11)],
                "bids": [last - 100 * (i - 1) for i in range(1, 11)],
                "ask_sizes": [300 + 11 * i for i in range(10)],
                "bid_sizes": [280 + 13 * i for i in range(10)],
            }
        )
    return out


def _write(path: Path, header: list[str] | None, rows: list[list], encoding: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding=encoding, newline="") as fh:
        w = csv.writer(fh)
        if header:
            w.writerow(header)
        w.writerows(rows)


def _signed(value: int, reference: int) -> str:
    """Kiwoom's price text: + above the previous close, - below, none at it."""
    return f"+{value}" if value > reference else (f"-{value}" if value < reference else str(value))


KIWOOM_0B = [
    20,
    10,
    11,
    12,
    27,
    28,
    15,
    13,
    14,
    16,
    17,
    18,
    25,
    26,
    29,
    30,
    31,
    32,
    228,
    311,
    290,
    691,
    822,
    567,
    568,
    851,
    1890,
    1891,
    1892,
    1030,
    1031,
    1032,
    1071,
    1072,
    1313,
    1315,
    1316,
    1314,
    1497,
    1498,
    620,
    732,
]
KIWOOM_0D = (
    [21]
    + [f for i in range(1, 11) for f in (40 + i, 60 + i, 80 + i, 50 + i, 70 + i, 90 + i)]
    + [121, 122, 125, 126, 23, 24, 128, 129, 138, 139, 200, 201, 238, 291, 292, 293, 294, 295]
    + [f for i in range(1, 11) for f in (620 + i, 630 + i)]
    + [13, 299, 215, 216]
)
KIWOOM_1H = [
    9001,
    302,
    13,
    14,
    9068,
    9008,
    9075,
    1221,
    1223,
    1224,
    1225,
    1236,
    1237,
    1238,
    1239,
    1489,
    1490,
    9069,
    1279,
]


def kiwoom() -> None:
    out = HERE / "kiwoom"
    stamp = DAY.strftime("%Y%m%d")
    rows = []
    for p in prints():
        sign = "+" if p["side"] >= 0 else "-"  # the uncross print: + (Kiwoom signs every print)
        v = dict.fromkeys(KIWOOM_0B, "")
        v |= {
            20: p["time"].strftime("%H%M%S"),
            10: _signed(p["price"], BASE),
            11: f"+{p['price'] - BASE}",
            12: f"+{(p['price'] - BASE) / BASE * 100:.2f}",
            15: f"{sign}{p['volume']}",
            13: p["cum"],
            14: p["cum"] * p["price"] // 1_000_000,
            16: _signed(OPEN, BASE),
            25: "2",
            290: "2",
        }
        rows.append([CODE, *(v[f] for f in KIWOOM_0B), "0", "KRX"])  # 852, 9081: appended in 2025
    corrupt = list(rows[6])
    corrupt[2] = "+5O300"  # a recorder's corrupted price (the letter O): quarantined, named
    rows.insert(7, corrupt)
    _write(out / f"kiwoom_0B_{stamp}.csv", ["종목코드", *map(str, KIWOOM_0B), "852", "9081"], rows, "cp949")
    rows = []
    for b in books():
        v = dict.fromkeys(KIWOOM_0D, "")
        v[21] = b["time"].strftime("%H%M%S")
        for i in range(10):
            v[41 + i], v[51 + i] = _signed(b["asks"][i], BASE), _signed(b["bids"][i], BASE)
            v[61 + i], v[71 + i] = b["ask_sizes"][i], b["bid_sizes"][i]
        v[215] = "3"
        rows.append([CODE, *(v[f] for f in KIWOOM_0D)])
    _write(out / f"kiwoom_0D_{stamp}.csv", ["종목코드", *map(str, KIWOOM_0D)], rows, "cp949")
    rows = []
    for event, at, released in (("1", VI_AT, ""), ("2", RELEASE_AT, RELEASE_AT.strftime("%H%M%S"))):
        v = dict.fromkeys(KIWOOM_1H, "")
        v |= {
            9001: CODE,
            302: NAME,
            9068: event,
            1221: f"+{TRIGGER}",
            1223: at.strftime("%H%M%S"),
            1224: released,
            1225: "정적",
            1236: OPEN,
            1237: TRIGGER - 100,
            1238: "10.18",
            1490: "1",
            9069: "1",
        }
        rows.append([v[f] for f in KIWOOM_1H])
    _write(out / f"kiwoom_1h_{stamp}.csv", list(map(str, KIWOOM_1H)), rows, "cp949")
    _stock_list(out)


S3_FIELDS = [
    "chetime",
    "sign",
    "change",
    "drate",
    "price",
    "opentime",
    "open",
    "hightime",
    "high",
    "lowtime",
    "low",
    "cgubun",
    "cvolume",
    "volume",
    "value",
    "mdvolume",
    "mdchecnt",
    "msvolume",
    "mschecnt",
    "cpower",
    "w_avrg",
    "offerho",
    "bidho",
    "status",
    "jnilvolume",
    "shcode",
    "exchname",
]
H1_FIELDS = [
    "hotime",
    *[f"{k}{i}" for i in range(1, 11) for k in ("offerho", "bidho", "offerrem", "bidrem")],
    "totofferrem",
    "totbidrem",
    "donsigubun",
    "shcode",
    "alloc_gubun",
]
VI_FIELDS = ["vi_gubun", "svi_recprice", "dvi_recprice", "vi_trgprice", "shcode", "ref_shcode", "time"]


def ls_xing() -> None:
    out = HERE / "ls_xing"
    stamp = DAY.strftime("%Y%m%d")
    rows = []
    for p in prints()[5:]:  # the recorder started late: the day's volume so far comes first
        v = dict.fromkeys(S3_FIELDS, "")
        v |= {
            "chetime": p["time"].strftime("%H%M%S"),
            "sign": "2",
            "change": p["price"] - BASE,
            "drate": f"{(p['price'] - BASE) / BASE * 100:.2f}",
            "price": p["price"],
            "open": OPEN,
            "cgubun": "-" if p["side"] < 0 else "+",
            "cvolume": p["volume"],
            "volume": p["cum"],
            "value": p["cum"] * p["price"] // 1_000_000,
            "status": "00",
            "shcode": CODE,
            "exchname": "KRX",
        }
        rows.append([v[f] for f in S3_FIELDS])
    _write(out / f"S3__{stamp}.csv", S3_FIELDS, rows, "utf-8")
    rows = []
    for b in books():
        v = dict.fromkeys(H1_FIELDS, "")
        v |= {"hotime": b["time"].strftime("%H%M%S"), "donsigubun": "1", "shcode": CODE, "alloc_gubun": "0"}
        for i in range(10):
            v[f"offerho{i + 1}"], v[f"bidho{i + 1}"] = b["asks"][i], b["bids"][i]
            v[f"offerrem{i + 1}"], v[f"bidrem{i + 1}"] = b["ask_sizes"][i], b["bid_sizes"][i]
        rows.append([v[f] for f in H1_FIELDS])
    _write(out / f"H1__{stamp}.csv", H1_FIELDS, rows, "utf-8")
    rows = [
        ["1", OPEN, TRIGGER - 100, TRIGGER, CODE, CODE, VI_AT.strftime("%H%M%S")],
        ["0", OPEN, TRIGGER - 100, TRIGGER, CODE, CODE, RELEASE_AT.strftime("%H%M%S")],
        ["0", 0, 0, 0, "005930", "005930", "093000"],  # a release of a VI the file never saw start
    ]
    _write(out / f"VI__{stamp}.csv", VI_FIELDS, rows, "utf-8")
    _stock_list(out)


def creon() -> None:
    out = HERE / "creon"
    rows = []
    header = [str(i) for i in range(29)]

    def row(at: dt.time, price: int, volume: int, cum: int, side: str, flag: str) -> list:
        v = dict.fromkeys(range(29), "")
        v |= {
            0: f"A{CODE}",
            1: NAME,
            2: price - BASE,
            3: at.strftime("%H%M"),
            4: OPEN,
            9: cum,
            13: price,
            14: side,
            17: volume,
            18: at.strftime("%H%M%S"),
            19: flag,
            20: "2",
            22: "2",
        }
        return [v[i] for i in range(29)]

    for s, expected in ((50, 50_000), (55, 50_100)):  # the opening call's expected price
        rows.append(row(dt.time(8, 59, s), expected, 0, 1_100 + s, "1", "1"))
    for p in prints():
        if p["time"] == RELEASE_AT:  # the VI call's expected prices before its uncross
            for s in (30, 50, 110):
                at = (dt.datetime.combine(DAY, VI_AT) + dt.timedelta(seconds=s)).time()
                rows.append(row(at, UNCROSS - 100 * (s < 100), 0, 5_000 + s, "1", "1"))
        rows.append(row(p["time"], p["price"], p["volume"], p["cum"], "2" if p["side"] < 0 else "1", "2"))
    _write(out / f"StockCur_{DAY:%Y%m%d}.csv", header, rows, "cp949")
    _stock_list(out)


def tickdata() -> None:
    out = HERE / "tickdata_korea"
    day = DAY.strftime("%m/%d/%Y")
    rows = []
    for i, p in enumerate(prints()):
        ms = f"{p['time'].strftime('%H:%M:%S')}.{(i * 137) % 1000:03d}"
        rows.append([day, ms, f"{p['price']}.0", p["volume"], "0", "", ""])
        if i == 10:  # a print Tick Data flags for exclusion (condition 3)
            rows.append([day, ms, f"{p['price'] + 900}.0", 10, "3", "X", f"{p['price']}.0"])
    _write(out / f"{CODE}_{DAY:%Y%m%d}_trades.csv", None, rows, "ascii")
    rows = [
        [
            day,
            f"{b['time'].strftime('%H:%M:%S')}.250",
            f"{b['bids'][0]}.0",
            f"{b['asks'][0]}.0",
            b["bid_sizes"][0],
            b["ask_sizes"][0],
        ]
        for b in books()
    ]
    _write(out / f"{CODE}_{DAY:%Y%m%d}_quotes.csv", None, rows, "ascii")


def _stock_list(out: Path) -> None:
    (out / "stocks.csv").write_text(
        f"stock_code,stock_name,market,kospi200\n{CODE},{NAME},KOSPI,Y\n005930,삼성전자,KOSPI,Y\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    kiwoom()
    ls_xing()
    creon()
    tickdata()
