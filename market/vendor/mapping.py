"""The YAML mapping language: how a vendor's file becomes rows of the vicap tick schema (or, with
``kind: vi_events``, rows of the VI log).

A layout may span several files (Kiwoom's 주식체결 0B, 주식호가잔량 0D and VI발동/해제 1h are three
real-time types a recorder dumps apart): a mapping folder holds one YAML per file kind, and each
mapping's ``files`` pattern says which files of the source it reads. What the mappings of
``market/vendor/mappings/`` needed from the language:

- a column's source is a source column or the file name (``filename: regex``, group 1);
- ``abs``: a +/- that marks direction, not a negative value (Kiwoom prints "+72100");
- ``sign_side``: the aggressor side is the sign of a signed field (Kiwoom FID 15 거래량);
- ``extract``: a regex whose group 1 is the value (CREON codes "A005930");
- ``scale``: units (천원, 만원) to KRW or shares, a number or one per market;
- ``values``: code tables (LS cgubun +/-, CREON 체결상태 1/2 and 예상체결가구분 1/2);
- ``constants``: what a whole file is (Tick Data's quote file: book rows);
- ``timestamp.date``: the date from a column or the file name where times are HHMMSS;
- ``exclude``: source values whose rows the vendor itself says to drop (quarantined, named);
- ``base_price``: 기준가 from a column, or the price minus its change from the base.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from market.krx.dataset import MEMBERSHIP, IngestError
from market.krx.schema import SIDES, TICK_SCHEMA

TICK_COLUMNS = [f.name for f in TICK_SCHEMA]
# the columns of the VI log a ``kind: vi_events`` mapping fills, a row per trigger or release
VI_EVENT_COLUMNS = ("stock_code", "event", "vi_type", "trigger_price", "static_ref", "dynamic_ref")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Source(_Strict):
    """Where a vicap column comes from and how to read it."""

    source: str | None = None  # a source column
    filename: str | None = None  # or a regex on the file name; group 1 is the value
    abs: bool = False
    sign_side: bool = False
    extract: str | None = None
    scale: float | dict[str, float] = 1.0

    @model_validator(mode="after")
    def _one_origin(self) -> Source:
        if (self.source is None) == (self.filename is None):
            raise ValueError("a column comes from exactly one of `source:` or `filename:`")
        return self


class DateSpec(_Strict):
    """The date of rows whose time columns carry none: a column, or a regex on the file name."""

    column: str | None = None
    filename: str | None = None
    format: str = "%Y%m%d"

    @model_validator(mode="after")
    def _one_origin(self) -> DateSpec:
        if (self.column is None) == (self.filename is None):
            raise ValueError("the date comes from exactly one of `column:` or `filename:`")
        return self


class TimestampSpec(_Strict):
    columns: list[str]  # joined with a space before parsing
    format: str  # strptime format of the joined text, e.g. "%Y%m%d %H%M%S%f", or ISO8601
    timezone: str = "Asia/Seoul"
    date: DateSpec | None = None


class BaseFromChange(_Strict):
    """기준가 as the price minus 전일대비; ``sign`` names the 전일대비구분 column where the change
    itself is unsigned (LS), ``down`` its codes of a fall (4 하한, 5 하락)."""

    change: str
    sign: str | None = None
    down: list[str] = ["4", "5"]


class Mapping(_Strict):
    """A vendor file layout."""

    name: str
    kind: Literal["ticks", "vi_events"] = "ticks"
    files: str = "*"  # which files of a source folder this layout reads (a glob on the name)
    encoding: str = "auto"  # utf-8 | cp949 | auto (try both)
    header: bool = True
    names: list[str] | None = None  # the column names of a file without a header row
    timestamp: TimestampSpec
    columns: dict[str, str | Source]  # vicap column -> its source
    constants: dict[str, object] = Field(default_factory=dict)  # vicap column -> one value
    # vicap column -> {source text: value}; a side may be named (buy, sell, auction, unknown)
    values: dict[str, dict[str, object]] = Field(default_factory=dict)
    exclude: dict[str, list[str]] = Field(default_factory=dict)  # source column -> values to drop
    base_price: str | BaseFromChange | None = None  # 기준가 (else the previous day's last trade)
    # source columns of index and futures membership (Y/N, 1/0, true/false); absent: not a member
    kospi200: str | None = None
    kosdaq150: str | None = None
    futures_underlying: str | None = None  # 주식선물 기초자산

    @model_validator(mode="after")
    def _known_columns(self) -> Mapping:
        known = VI_EVENT_COLUMNS if self.kind == "vi_events" else TICK_COLUMNS
        unknown = sorted((set(self.columns) | set(self.constants)) - set(known))
        if unknown:
            raise ValueError(f"unknown {self.kind} column(s) {unknown}")
        if not self.header and not self.names:
            raise ValueError("a file without a header (`header: false`) needs `names:`")
        return self

    def sources(self) -> dict[str, Source]:
        return {k: Source(source=v) if isinstance(v, str) else v for k, v in self.columns.items()}

    def source_columns(self) -> list[str]:
        """Every source column the layout reads (to check a file has them)."""
        named = [s.source for s in self.sources().values() if s.source]
        named += [c for c in self.timestamp.columns] + list(self.exclude)
        if self.timestamp.date and self.timestamp.date.column:
            named.append(self.timestamp.date.column)
        if isinstance(self.base_price, str):
            named.append(self.base_price)
        elif self.base_price is not None:
            named += [c for c in (self.base_price.change, self.base_price.sign) if c]
        named += [c for c in (getattr(self, m) for m in MEMBERSHIP) if c]
        return list(dict.fromkeys(named))

    def instrument_columns(self) -> dict[str, str]:
        """vicap instrument column -> source column, for membership flags the layout carries."""
        return {m: getattr(self, m) for m in MEMBERSHIP if getattr(self, m)}

    def translations(self) -> dict[str, dict[str, object]]:
        """``values`` with side names as their codes: {vicap column: {source text: vicap value}}."""
        return {
            column: {str(text): SIDES.get(v, v) if column == "side" else v for text, v in table.items()}
            for column, table in self.values.items()
        }

    def reads(self, path: Path) -> bool:
        return Path(path).match(self.files)

    @classmethod
    def load(cls, path: Path) -> Mapping:
        try:
            return cls.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError, ValueError) as exc:
            raise IngestError(f"{path}: not a valid column mapping: {exc}") from exc

    @classmethod
    def own_schema(cls) -> Mapping:
        """vicap's own tick schema (what ``vicap generate`` writes), read without ``--mapping``."""
        columns = {c: c for c in TICK_COLUMNS if c != "timestamp"}
        flags = {"True": True, "False": False, "true": True, "false": False}
        return cls(
            name="vicap_ticks",
            timestamp=TimestampSpec(columns=["timestamp"], format="ISO8601"),
            columns=columns,
            values={"news_flag": flags, "disclosure_flag": flags},
        )


def load_layout(paths: list[Path]) -> list[Mapping]:
    """Mappings from YAML files or folders of them (a folder: one layout of several file kinds)."""
    files = []
    for path in paths:
        files += sorted(Path(path).glob("*.yaml")) if Path(path).is_dir() else [Path(path)]
    if not files:
        raise IngestError(f"{', '.join(map(str, paths))}: no mapping (*.yaml)")
    return [Mapping.load(f) for f in files]


def filename_value(pattern: str, path: Path) -> str | None:
    found = re.search(pattern, Path(path).name)
    return found.group(1) if found else None
