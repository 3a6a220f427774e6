"""The account: cash and positions moved only by fills, and the position lots behind every figure
a trader reads (P&L, win rate, drawdown).

Each buy order opens one lot (its partial fills add to it); a sale closes the oldest open lots of
the stock first (FIFO), whatever event it was sent for, so a sale booked under another VI closes
the lot it really sold. A lot still open is worth what selling it would bring: its shares at the
best bid shown, less the brokerage and the sell tax (never the last trade: a holder cannot sell
there). No short selling.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from backtest.execution import BUY, Fill, fill_costs
from market import krx


@dataclass
class Lot:
    """The shares one buy order bought, and what became of them."""

    client_id: int
    event_id: str
    stock_code: str
    opened_ts: int  # its first fill (the holding clock starts here)
    entry_reason: str = ""
    qty: int = 0  # bought
    open_qty: int = 0
    amount: float = 0.0  # KRW bought (qty x price)
    cost: float = 0.0  # paid for all of them, brokerage included
    fees: float = 0.0  # brokerage both ways and the sell tax of the shares sold
    sold_qty: int = 0
    proceeds: float = 0.0  # received for those sold, brokerage and tax deducted
    closed_ts: int = 0  # its last sale
    exit_reason: str = ""

    @property
    def cost_per_share(self) -> float:
        return self.cost / self.qty if self.qty else 0.0

    @property
    def realised(self) -> float:
        return self.proceeds - self.sold_qty * self.cost_per_share


def exit_value(qty: int, price: int, market: str, day: dt.date, brokerage_rate: float) -> float:
    """What selling ``qty`` at ``price`` would bring after brokerage and the sell tax."""
    amount = qty * price
    brokerage, tax = fill_costs(-1, amount, market, day, brokerage_rate)
    return float(amount - brokerage - tax)


@dataclass
class Lots:
    """Every lot of a run, FIFO per stock."""

    all: list[Lot] = field(default_factory=list)
    _open: dict[str, list[Lot]] = field(default_factory=dict)
    _by_order: dict[int, Lot] = field(default_factory=dict)

    def apply(self, fill: Fill) -> None:
        if fill.side == BUY:
            lot = self._by_order.get(fill.client_id)
            if lot is None:
                lot = Lot(fill.client_id, fill.event_id, fill.stock_code, fill.fill_ts, fill.reason)
                self._by_order[fill.client_id] = lot
                self.all.append(lot)
                self._open.setdefault(fill.stock_code, []).append(lot)
            lot.qty += fill.qty
            lot.open_qty += fill.qty
            lot.amount += fill.amount
            lot.cost += fill.amount + fill.brokerage
            lot.fees += fill.brokerage
            return
        left, per_share = fill.qty, (fill.amount - fill.brokerage - fill.tax) / fill.qty
        queue = self._open.get(fill.stock_code, [])
        while left and queue:
            lot = queue[0]
            take = min(left, lot.open_qty)
            lot.open_qty -= take
            lot.sold_qty += take
            lot.proceeds += take * per_share
            lot.fees += (fill.brokerage + fill.tax) * take / fill.qty
            lot.closed_ts, lot.exit_reason = fill.fill_ts, fill.reason
            left -= take
            if lot.open_qty == 0:
                queue.pop(0)
        if left:
            raise AssertionError(f"{fill.stock_code}: sold {left} more than the open lots hold")


@dataclass
class Account:
    """Cash and positions, moved only by fills; ``markets`` names each stock's market (its exit
    costs)."""

    cash: float
    positions: dict[str, int] = field(default_factory=dict)
    brokerage_rate: float = krx.DEFAULT_BROKERAGE_RATE
    markets: dict[str, str] = field(default_factory=dict)
    lots: Lots = field(default_factory=Lots)

    def apply(self, fill: Fill) -> None:
        held = self.positions.get(fill.stock_code, 0) + fill.side * fill.qty
        if held < 0:
            raise AssertionError(f"{fill.stock_code}: position went short ({held})")
        self.cash += fill.cash_flow
        self.positions[fill.stock_code] = held
        self.lots.apply(fill)

    def holdings_value(self, marks: Mapping[str, int], day: dt.date) -> float:
        """Every open position at its mark (the bid), net of what selling it would cost."""
        return sum(
            exit_value(q, marks.get(s, 0), self.markets.get(s, "KOSPI"), day, self.brokerage_rate)
            for s, q in self.positions.items()
            if q
        )

    def equity(self, marks: Mapping[str, int], day: dt.date) -> float:
        return self.cash + self.holdings_value(marks, day)


TRADE_TABLE_COLUMNS = [
    "strategy", "client_id", "event_id", "stock_code", "entry_ts", "exit_ts", "qty", "bought", "pnl",
    "net_return", "entry_reason", "exit_reason", "status", "costs",
]  # fmt: skip


def trade_table(
    fills: Iterable[Fill],
    marks: Mapping[str, tuple[int, int]],
    strategy: str = "",
    markets: Mapping[str, str] | None = None,
    brokerage_rate: float = krx.DEFAULT_BROKERAGE_RATE,
) -> pd.DataFrame:
    """One row per lot (per buy order): its P&L after every cost, sold shares at what they brought
    and open ones at ``marks`` ({stock: (bid, µs)}: the last bid shown before the end) net of exit
    costs; ``status`` open or closed."""
    lots = Lots()
    for f in sorted(fills, key=lambda f: (f.fill_ts, f.client_id)):
        lots.apply(f)
    rows = []
    for lot in lots.all:
        pnl, fees, exit_ts, status, reason = lot.realised, lot.fees, lot.closed_ts, "closed", lot.exit_reason
        if lot.open_qty:
            bid, at = marks.get(lot.stock_code, (0, lot.closed_ts or lot.opened_ts))
            market = (markets or {}).get(lot.stock_code, "KOSPI")
            value = exit_value(lot.open_qty, bid, market, krx.seoul_date(at), brokerage_rate)
            pnl += value - lot.open_qty * lot.cost_per_share
            fees += lot.open_qty * bid - value
            exit_ts, status, reason = at, "open", "open at the end (marked at the bid)"
        rows.append(
            {
                "strategy": strategy, "client_id": lot.client_id, "event_id": lot.event_id,
                "stock_code": lot.stock_code, "entry_ts": lot.opened_ts, "exit_ts": exit_ts, "qty": lot.qty,
                "bought": lot.amount, "pnl": pnl, "net_return": pnl / lot.amount if lot.amount else 0.0,
                "entry_reason": lot.entry_reason, "exit_reason": reason, "status": status, "costs": fees,
            }
        )  # fmt: skip
    return pd.DataFrame(rows, columns=TRADE_TABLE_COLUMNS)
