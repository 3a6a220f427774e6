"""The KIS parser and recording ingest on frames KIS and public KIS clients published
(tests/data/kis/published/, each line citing its source), not only on what our exporter wrote:
appended fields, the portal's own short example, batched records, recordings that start
mid-session, and the documented codes that tell auction prints and VI states."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.events.table import detect, events_table
from market.kis import formats as kis
from market.kis.feed import StockFeed
from market.kis.ingest import ingest_kis
from market.krx import seoul_day_number
from market.krx.schema import SIDE_UNKNOWN, VI_STATUS_AUCTION, VI_STATUS_RELEASED
from validation.runner import validate_dataset

PUBLISHED = Path(__file__).resolve().parents[1] / "data" / "kis" / "published"
LINES = [json.loads(line) for line in (PUBLISHED / "frames.jsonl").read_text(encoding="utf-8").splitlines()]
FRAMES = {line["name"]: line["frame"] for line in LINES}
MARKET_OP = json.loads((PUBLISHED / "market_operation.json").read_text(encoding="utf-8"))

WIDTHS = {  # fields per record, as counted in each published frame
    "KIS_DOC_CNT_093354": 46,
    "GO_TEST_20230324": 46,
    "PY_NOTES_20250722": 46,
    "PY_KISAPI_003_20250730": 46,
    "PY_PREPROC_004_20260127": 46,
    "PY_RAW_005380_20260504": 46,
    "JAVA_WTS_CNT_20260922": 47,
    "KISDOC_ASP_093730": 59,
    "PY_FLASK_ASP_120755": 59,
    "JAVA_MOCKINVEST_ASP_121548": 59,
    "ASP_PY_140013": 62,
    "PY_TEST_ASP_143354": 62,
    "JAVA_WTS_ASP_20260922": 63,
    "PGM_DOC_092237": 11,
}


@pytest.mark.parametrize("name", sorted(WIDTHS))
def test_every_published_frame_is_read_by_its_known_prefix(name):
    parsed = kis.parse_frame(FRAMES[name])
    assert isinstance(parsed, kis.Records) and parsed.width == WIDTHS[name]
    assert parsed.drift == WIDTHS[name] - len(kis.FIELDS[parsed.tr_id])
    for record in parsed.records:
        assert list(record) == kis.FIELDS[parsed.tr_id]  # appended fields are read past
        assert record["MKSC_SHRN_ISCD"] in ("005930", "005380")
        time_field = "BSOP_HOUR" if parsed.tr_id == kis.BOOK else "STCK_CNTG_HOUR"
        assert record[time_field] == FRAMES[name].split("^")[1]


def test_the_appended_fields_do_not_shift_the_known_ones():
    trade = kis.parse_frame(FRAMES["JAVA_WTS_CNT_20260922"]).records[0]
    assert (trade["STCK_PRPR"], trade["CNTG_VOL"], trade["CCLD_DVSN"]) == ("277750", "5", "5")
    assert (trade["BSOP_DATE"], trade["HOUR_CLS_CODE"], trade["VI_STND_PRC"]) == ("20260922", "0", "283000")
    book = kis.parse_frame(FRAMES["JAVA_WTS_ASP_20260922"]).records[0]
    assert (book["ASKP1"], book["BIDP1"], book["ANTC_CNTG_VRSS"], book["STCK_DEAL_CLS_CODE"]) == (
        "278000",
        "277500",
        "-274000",
        "0",
    )


def test_the_portals_short_market_operation_example_is_accepted_with_the_missing_field_empty():
    parsed = kis.parse_frame(MARKET_OP["frame"])
    assert parsed.width == 10 and parsed.drift == -1
    record = parsed.records[0]
    assert (record["VI_CLS_CODE"], record["TRHT_YN"], record["EXCH_CLS_CODE"]) == ("N", "N", "")
    assert record["TR_SUSP_REAS_CNTT"] == "(null)" and record["ANTC_MKOP_CLS_CODE"] == "311"


@pytest.mark.parametrize(
    ("name", "keep", "missing"),
    [
        ("KISDOC_ASP_093730", 45, "ANTC_CNPR"),  # the expected price a VI auction shows
        ("KIS_DOC_CNT_093354", 40, "HOUR_CLS_CODE"),
        ("KIS_DOC_CNT_093354", 30, "BSOP_DATE"),
    ],
)
def test_a_record_cut_before_a_field_vicap_uses_is_refused_naming_it(name, keep, missing):
    """The published record cut short (derived data: its first ``keep`` fields)."""
    head, payload = FRAMES[name].rsplit("|", 1)
    cut = f"{head}|{'^'.join(payload.split('^')[:keep])}"
    with pytest.raises(kis.FrameError, match=f"record of {keep} fields lacks {missing}"):
        kis.parse_frame(cut)
    assert kis.parse_frames(pa.array([cut])).errors == {0: str(_error(cut))}


def _error(frame: str) -> kis.FrameError:
    try:
        kis.parse_frame(frame)
    except kis.FrameError as exc:
        return exc
    raise AssertionError("parsed")


def test_a_batched_frame_of_drifted_records_splits_by_its_own_width():
    """Two published 47-field records in one frame, as the Java test builds it."""
    body = FRAMES["JAVA_WTS_CNT_20260922"].split("|", 3)[3]
    parsed = kis.parse_frame(f"0|H0STCNT0|002|{body}^{body}")
    assert parsed.width == 47 and len(parsed.records) == 2 and parsed.records[1]["STCK_PRPR"] == "277750"
    with pytest.raises(kis.FrameError, match="does not split into 3 records"):
        kis.parse_frame(f"0|H0STCNT0|003|{body}^{body}")


frame_field = st.text(alphabet="0123456789AN-", max_size=4)


@settings(max_examples=60, deadline=None)
@given(
    tr_id=st.sampled_from(sorted(kis.FIELDS)),
    width_change=st.integers(-12, 5),
    count=st.integers(1, 4),
    data=st.data(),
)
def test_bulk_parsing_agrees_with_one_by_one(tr_id, width_change, count, data):
    """parse_frames (the recording ingest) and parse_frame (the live client) give the same
    records and the same reasons, whatever the drift."""
    width = max(1, len(kis.FIELDS[tr_id]) + width_change)
    values = data.draw(st.lists(frame_field, min_size=width * count, max_size=width * count + 1))
    frames = [f"0|{tr_id}|{count:03d}|{'^'.join(values)}", *FRAMES.values(), MARKET_OP["frame"]]
    batch = kis.parse_frames(pa.array(frames))
    for i, frame in enumerate(frames):
        try:
            parsed = kis.parse_frame(frame)
        except kis.FrameError as exc:
            assert batch.errors[i] == str(exc)
            continue
        table = batch.tables[parsed.tr_id].to_pylist()
        bulk = [{k: r[k] for k in kis.USED[parsed.tr_id]} for r in table if r["frame"] == i]
        assert bulk == [{k: r[k] for k in kis.USED[parsed.tr_id]} for r in parsed.records]


def test_the_published_recording_ingests_whole(tmp_path):
    report = ingest_kis(PUBLISHED, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "ingest_summary.json").read_text())
    assert report.balanced and (summary["lines"], summary["data_frames"]) == (15, 14)
    # the one refused line is a tr_id vicap does not read (H0STANC0), named
    q = pq.read_table(tmp_path / "out" / "quarantine" / "ingest" / "kis.parquet").to_pylist()
    assert [r["reason"] for r in q] == ["unknown tr_id 'H0STANC0'"]
    assert (summary["records"], summary["records_accepted"], summary["records_quarantined"]) == (19, 19, 0)
    assert summary["drift"] == {"H0STCNT0 47 fields": 1, "H0STASP0 62 fields": 2, "H0STASP0 63 fields": 1}
    bases = {
        (r["date"].isoformat(), r["stock_code"]): r["base_price"]
        for r in pq.read_table(tmp_path / "out" / "instruments.parquet").to_pylist()
    }
    # 기준가 from a trade (price - change) or, with no trade that day, from a book (0 - -close)
    assert bases[("2023-03-24", "005930")] == 62_700 - 400
    assert bases[("2023-06-12", "005930")] == 72_000
    assert bases[("2026-09-22", "005930")] == 274_000
    assert bases[("2024-05-20", "005930")] == 66_000  # book frames only
    assert bases[("2026-05-04", "005380")] == 533_000 - 2_000
    day = pq.read_table(tmp_path / "out" / "ticks" / "date=2023-06-12" / "005930.parquet").to_pandas()
    assert day["event_type"].tolist() == ["trade", "book", "book"]
    first = day.iloc[0]
    assert (first["price"], first["volume"], first["cum_volume"], first["side"]) == (71_900, 1, 3_052_507, 1)
    assert (day["program_net_buy"] == -224_036).all()  # H0STPGM0 at 09:22:37, carried
    batched = pq.read_table(tmp_path / "out" / "ticks" / "date=2026-01-27" / "005930.parquet").to_pandas()
    assert batched["volume"].tolist() == [1, 78, 1, 73] and batched["side"].tolist() == [1, 1, -1, 1]


def test_a_recording_that_starts_mid_session_keeps_its_first_trade_through_validation(tmp_path):
    """The first trade of every published day carries the day's ACML_VOL so far; three of them
    are mid-point prints (71,950 between 71,900 and 72,000), half a tick off the grid."""
    ingest_kis(PUBLISHED, tmp_path / "raw")
    report = validate_dataset(tmp_path / "raw", tmp_path / "reports")
    assert report.ok and report.rows_quarantined == 0, report.reasons


def _recording_without(rec: Path, out: Path, tr_id: str) -> None:
    """A copy of the recording ``rec`` under ``out`` without ``tr_id``'s frames."""
    shutil.copytree(rec, out, ignore=shutil.ignore_patterns("kis-*.jsonl.gz"))
    path = next(rec.glob("kis-*.jsonl.gz"))
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        kept = [line for line in fh if f"|{tr_id}|" not in line]
    # the fastest gzip level: the default (9) spends seconds on a file read back once
    with gzip.open(out / path.name, "wt", encoding="utf-8", compresslevel=1) as fh:
        fh.writelines(kept)


def test_without_market_operation_frames_the_vis_come_from_hour_cls_code(recorded, tmp_path):
    """Paper accounts get no H0STMKO0: the book's HOUR_CLS_CODE 'C' (VI발동) opens the auction
    and its uncross print ends it; the same VIs are found. The recording (the session dataset's
    busiest day, its three busiest stocks) and its ingest with H0STMKO0 are the session's."""
    _recording_without(recorded.rec, tmp_path / "rec", kis.MARKET_OP)
    report = ingest_kis(tmp_path / "rec", tmp_path / "without")
    assert report.balanced and report.records_quarantined == 0
    keys = ["stock_code", "trigger_ts", "vi_type", "direction", "auction_price", "auction_volume"]
    with_op = recorded.events.to_pandas()[keys]
    without = events_table(detect(tmp_path / "without")).to_pandas()[keys]
    assert len(with_op) >= 3
    assert (
        with_op.sort_values(keys[:2])
        .reset_index(drop=True)
        .equals(without.sort_values(keys[:2]).reset_index(drop=True))
    )


DAY = seoul_day_number(1_700_000_000_000_000)
T = 1_700_000_000_000_000


def test_a_vi_opened_by_the_book_code_ends_with_its_uncross_print_whatever_its_ccld_dvsn():
    feed = StockFeed()
    assert feed.on_trade(DAY, T, 1, "0")[1:3] == (0, 1)  # the day's first print
    assert feed.on_book(DAY, T + 1, "C")[1] == VI_STATUS_AUCTION
    assert feed.on_book(DAY, T + 2, "C")[1] == VI_STATUS_AUCTION
    _, status, side, _, _ = feed.on_trade(DAY, T + 3, 1, "0")
    assert (status, side) == (VI_STATUS_RELEASED, 0)  # the uncross is a single-price print
    assert feed.on_trade(DAY, T + 4, -1, "0")[1:3] == (0, -1)


def test_the_opening_calls_book_code_makes_the_next_print_an_auction_print_and_no_vi():
    feed = StockFeed()
    assert feed.on_book(DAY, T, "C")[1] == 0  # before the open 'C' is the open's expected price
    assert feed.on_book(DAY, T + 1, "B")[1] == 0
    assert feed.on_trade(DAY, T + 2, -1, "0")[1:3] == (0, 0)
    assert feed.on_trade(DAY, T + 3, -1, "0")[1:3] == (0, -1)


def test_a_vi_opened_by_market_operation_waits_for_its_release_and_a_new_day_starts_afresh():
    feed = StockFeed({T // 1_000_000: 0})
    feed.on_trade(DAY, T - 5, 1, "0")
    _, status, _, vi, started = feed.on_market_op(DAY, T, True)
    assert (status, vi, started) == (VI_STATUS_AUCTION, 0, True)
    assert feed.on_trade(DAY, T + 10, 1, "0")[1:3] == (VI_STATUS_RELEASED, 0)
    assert feed.on_book(DAY, T + 11, "0")[1] == 0  # released, H0STMKO0 'N' still to come
    assert feed.on_market_op(DAY, T + 12, False)[1] == VI_STATUS_RELEASED
    feed.on_market_op(DAY, T + 13, True)  # a VI still running at the day's end
    assert feed.on_book(DAY + 1, T + 86_400_000_000, "0")[1] == 0 and feed.clock_us > T


def _one_trade_recording(tmp_path: Path, records: list[list[str]]) -> pd.DataFrame:
    rec = tmp_path / "rec"
    rec.mkdir()
    shutil.copy(PUBLISHED / "stocks.csv", rec / "stocks.csv")
    lines = [
        {"recv_ts": f"2023-06-12T09:33:5{4 + i}.02+09:00", "frame": "0|H0STCNT0|001|" + "^".join(values)}
        for i, values in enumerate(records)
    ]
    (rec / "k.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    ingest_kis(rec, tmp_path / "out")
    return pq.read_table(tmp_path / "out" / "ticks" / "date=2023-06-12" / "005930.parquet").to_pandas()


@pytest.mark.parametrize(("moved_to_its_price", "side"), [(True, 0), (False, 1)])
def test_a_print_that_moves_vi_stnd_prc_to_its_own_price_is_a_single_price_print(
    tmp_path, moved_to_its_price, side
):
    """The published trade (VI_STND_PRC 72,100), then a print at 72,300 with CCLD_DVSN 1 whose
    VI_STND_PRC is 72,300 (derived data: a call's uncross resets the static reference)."""
    names = kis.FIELDS[kis.TRADES]
    first = FRAMES["KIS_DOC_CNT_093354"].split("|", 3)[3].split("^")
    second = list(first)
    second[names.index("STCK_CNTG_HOUR")], second[names.index("STCK_PRPR")] = "093355", "72300"
    second[names.index("VI_STND_PRC")] = "72300" if moved_to_its_price else "72100"
    ticks = _one_trade_recording(tmp_path, [first, second])
    assert ticks["side"].tolist() == [1, side]


@pytest.mark.parametrize(
    ("mkop", "ccld", "side"),
    [
        ("20", "1", 1),  # 장중 보통: the aggressor code stands
        ("40", "1", 0),  # 시간외단일가: a single-price print
        ("30", "5", SIDE_UNKNOWN),  # 장종료후 (시간외 종가): no aggressor
        ("22", "1", SIDE_UNKNOWN),  # 장중 대량 (block)
        ("00", "5", -1),  # a digit the table lacks (seen in KIS's own examples): kept
    ],
)
def test_new_mkop_cls_code_tells_prints_without_an_aggressor(tmp_path, mkop, ccld, side):
    """The published trade record with NEW_MKOP_CLS_CODE and CCLD_DVSN set (derived data)."""
    values = FRAMES["KIS_DOC_CNT_093354"].split("|", 3)[3].split("^")
    names = kis.FIELDS[kis.TRADES]
    values[names.index("NEW_MKOP_CLS_CODE")], values[names.index("CCLD_DVSN")] = mkop, ccld
    ticks = _one_trade_recording(tmp_path, [values])
    assert ticks["side"].tolist() == [side]
    assert ticks["timestamp"].iloc[0] == pd.Timestamp("2023-06-12 09:33:54", tz="Asia/Seoul")
