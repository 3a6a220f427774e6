"""Trading costs: brokerage on both sides and the sell tax (증권거래세 + 농어촌특별세) by settlement
year. Source: ``shared/docs/krx-market-rules.md``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from market.krx.calendar import settlement_date
from market.krx.prices import FUND_MARKETS, check_market

DEFAULT_BROKERAGE_RATE = 0.00014  # KIS online, per side; a third-party figure, so configurable

# 증권거래세 + 농어촌특별세 on the sale amount, by settlement year (T+2).
SELL_TAX_BY_YEAR: dict[int, dict[str, float]] = {
    2021: {"KOSPI": 0.0023, "KOSDAQ": 0.0023},
    2022: {"KOSPI": 0.0023, "KOSDAQ": 0.0023},
    2023: {"KOSPI": 0.0020, "KOSDAQ": 0.0020},
    2024: {"KOSPI": 0.0018, "KOSDAQ": 0.0018},
    2025: {"KOSPI": 0.0015, "KOSDAQ": 0.0015},
    2026: {"KOSPI": 0.0020, "KOSDAQ": 0.0020},
}


def sell_tax_rate(market: str, on: dt.date) -> float:
    """Transaction tax + 농특세 on a sale traded on ``on`` (a fraction), by the settlement year (T+2)."""
    check_market(market)
    if market in FUND_MARKETS:
        return 0.0  # ETFs are exempt from the securities transaction tax
    year = settlement_date(on).year
    if year not in SELL_TAX_BY_YEAR:
        known = f"{min(SELL_TAX_BY_YEAR)}-{max(SELL_TAX_BY_YEAR)}"
        raise ValueError(f"no sell-tax rate known for settlement year {year} (table covers {known})")
    return SELL_TAX_BY_YEAR[year][market]


@dataclass(frozen=True)
class CostModel:
    """Brokerage on both sides, sell tax on the sale amount."""

    brokerage_rate: float = DEFAULT_BROKERAGE_RATE

    def buy_cost(self, amount: float) -> float:
        return amount * self.brokerage_rate

    def sell_cost(self, amount: float, market: str, on: dt.date) -> float:
        return amount * (self.brokerage_rate + sell_tax_rate(market, on))

    def round_trip_rate(self, market: str, on: dt.date) -> float:
        return 2 * self.brokerage_rate + sell_tax_rate(market, on)
