"""The matching rules of the execution model, as small functions over a :class:`~backtest.tape.Tape`:
walking a shown book (within the VI bands, less the liquidity we already took), a resting order's
queue and fills (numba: a replay scans many rows), and a call auction's uncross recomputed with our
order in it (the exchange engine's own uncross).

Only books the market showed: a row fills or queues us only by the book it brought itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np

from backtest.tape import ASK_PX, ASK_QTY, BID_PX, BID_QTY, Tape
from market import krx
from market.exchange import kernels as engine

BUY, SELL = 1, -1
NO_LIMIT = -1
UNCROSS = -2  # scan_resting's "the auction we sat in uncrossed here": the caller prices it


def opposite(side: int) -> tuple[int, int]:
    """The planes (prices, sizes) of the book side an order of ``side`` takes from."""
    return (ASK_PX, ASK_QTY) if side == BUY else (BID_PX, BID_QTY)


def own_side(side: int) -> tuple[int, int]:
    return (BID_PX, BID_QTY) if side == BUY else (ASK_PX, ASK_QTY)


def beyond(price: int, limit: int, side: int) -> bool:
    """``price`` is worse than ``limit`` for an order of ``side`` (never for a market order)."""
    return limit != NO_LIMIT and (price > limit if side == BUY else price < limit)


def band_rates(tape: Tape) -> tuple[int, int]:
    """(static, dynamic) VI bands in basis points for continuous trading (정적 10%; 동적 3% for
    KOSPI200 members, 6% for the rest)."""
    dynamic = krx.dynamic_vi_rate(tape.kospi200, "continuous")
    return krx.rate_to_bp(krx.STATIC_VI_RATE), krx.rate_to_bp(dynamic)


def in_bands(price: int, static_ref: int, dynamic_ref: int, bands: tuple[int, int]) -> bool:
    """A print at ``price`` would not set off a VI (both bands, inclusive as KRX's trigger)."""
    return (
        krx.band_direction(price, static_ref, bands[0]) == 0
        and krx.band_direction(price, dynamic_ref, bands[1]) == 0
    )


@dataclass
class Footprint:
    """Liquidity we took from shown levels: (side plane, price) -> (qty taken, the row we took it
    at, the size the level showed). It stays taken until the recorded book shows the level changed
    (the recorded market does not know we were there)."""

    taken: dict[tuple[int, int], tuple[int, int, int]] = field(default_factory=dict)

    def available(self, tape: Tape, plane: int, price: int, shown: int, row: int) -> int:
        """What is left for us of ``shown`` at ``price`` on the ``plane`` side at ``row``."""
        key = (plane, price)
        if key not in self.taken:
            return shown
        qty, at, size = self.taken[key]
        if size != shown or _level_changed(tape, plane, price, size, at, row):
            del self.taken[key]
            return shown
        return max(0, shown - qty)

    def take(self, plane: int, price: int, qty: int, shown: int, row: int) -> None:
        before = self.taken.get((plane, price), (0, row, shown))[0]
        self.taken[(plane, price)] = (before + qty, row, shown)


def _level_changed(tape: Tape, plane: int, price: int, size: int, after: int, upto: int) -> bool:
    """Some book shown in rows ``after+1..upto`` has ``price`` at another size (or not at all) on
    the side whose prices are ``plane`` (its sizes are the next plane)."""
    own = tape.book[after + 1 : upto + 1]
    own = own[own >= 0]
    if not len(own):
        return False
    px, qty = tape.books[own, plane], tape.books[own, plane + 1]
    at = px == price
    sizes = np.where(at.any(axis=1), (qty * at).sum(axis=1), -1)
    return bool(np.any(sizes != size))


def walk(
    tape: Tape, row: int, side: int, limit: int, qty: int, footprint: Footprint
) -> tuple[list[tuple[int, int]], str]:
    """(price, qty) a marketable order of ``qty`` at ``limit`` (NO_LIMIT: market) takes from the book
    row ``row`` brought: level by level, never more than a level shows less what we already took,
    never at a price that would set off a VI (nothing fills beyond a band: our order cannot create a
    VI the data does not have). The second value says why it stopped short ("" if it did not)."""
    b = int(tape.book[row])
    px_plane, qty_plane = opposite(side)
    prices, sizes = tape.books[b, px_plane], tape.books[b, qty_plane]
    static_ref, dynamic_ref = int(tape.static_ref[row]), int(tape.last_price[row])
    bands = band_rates(tape)
    out, left, why = [], qty, ""
    for p, s in zip(prices.tolist(), sizes.tolist(), strict=True):
        if left == 0:
            break
        if p <= 0 or s <= 0:
            why = "the shown book has no more"
            break
        if beyond(p, limit, side):
            break
        if not in_bands(p, static_ref, dynamic_ref, bands):
            why = f"{p:,} would set off a VI"
            break
        take = min(left, footprint.available(tape, px_plane, p, s, row))
        if take:
            footprint.take(px_plane, p, take, s, row)
            out.append((p, take))
            left -= take
    return out, why


def auction_fill(tape: Tape, row: int, side: int, limit: int, qty: int) -> tuple[int, int, str]:
    """(qty, price, how) our order of ``qty`` at ``limit`` gets from the uncross at ``row``.

    Where the auction's last indicative book explains the recorded print (the engine's uncross of
    its levels gives the printed price and volume), the uncross is recomputed with our order added:
    a better price fills in full, the uncross price by time priority behind every shown order there
    (ours came last). Otherwise (levels beyond the ten shown) today's cap: the printed price when
    ours is strictly better, at most the printed volume."""
    printed, volume = int(tape.price[row]), int(tape.volume[row])
    b = _auction_book(tape, row)
    if b >= 0:
        grid = krx.price_grid(tape.lower_limit, tape.upper_limit, tape.market, tape.day)
        levels = np.zeros((engine.L_ROWS, len(grid)), np.int64)
        for s, (px, sz) in enumerate(((BID_PX, BID_QTY), (ASK_PX, ASK_QTY))):
            for p, q in zip(tape.books[b, px].tolist(), tape.books[b, sz].tolist(), strict=True):
                if p > 0 and q > 0 and (i := int(np.searchsorted(grid, p))) < len(grid) and grid[i] == p:
                    levels[engine.L_QTY + s, i] += q
        previous = int(tape.last_price[row - 1]) if row else 0
        previous = previous or int(tape.static_ref[row])
        if _uncross(levels, grid, previous) == (printed, volume):
            ours = limit if limit != NO_LIMIT else (tape.upper_limit if side == BUY else tape.lower_limit)
            i = int(np.searchsorted(grid, ours))
            shown_there = int(levels[engine.L_QTY + (0 if side == BUY else 1), i])
            levels[engine.L_QTY + (0 if side == BUY else 1), i] += qty
            price, matched = _uncross(levels, grid, previous)
            if price <= 0 or beyond(price, ours, side):
                return 0, price, "recomputed"
            if price != ours:  # strictly better than the uncross: every such order executes
                return qty, price, "recomputed"
            j = int(np.searchsorted(grid, price))
            plane = levels[engine.L_QTY + (0 if side == BUY else 1)]
            better = plane[j + 1 :].sum() if side == BUY else plane[:j].sum()
            return max(0, min(qty, matched - int(better) - shown_there)), price, "recomputed"
    better = limit == NO_LIMIT or (printed < limit if side == BUY else printed > limit)
    return (min(qty, volume), printed, "capped") if better and volume > 0 else (0, printed, "capped")


def _auction_book(tape: Tape, row: int) -> int:
    """The last book shown in the call auction that ends at ``row`` (-1: none)."""
    return int(tape.shown[row - 1]) if row and tape.phase[row - 1] == 2 else -1


def _uncross(levels: np.ndarray, grid: np.ndarray, previous: int) -> tuple[int, int]:
    """(price, volume) of the engine's uncross of ``levels`` ((0, 0): nothing crosses)."""
    bids, asks = np.flatnonzero(levels[engine.L_QTY]), np.flatnonzero(levels[engine.L_QTY + 1])
    if not len(bids) or not len(asks):
        return 0, 0
    state = np.zeros(engine.S_SIZE, np.int64)
    state[engine.S_BEST_BID], state[engine.S_BEST_ASK] = bids[-1], asks[0]
    i, volume = engine.uncross_price(state, levels, grid, previous)
    return (int(grid[i]), int(volume)) if i >= 0 else (0, 0)


@numba.njit(cache=True)
def _level(px_row, price):
    for j in range(px_row.shape[0]):
        if px_row[j] == price:
            return j
    return -1


@numba.njit(cache=True)
def scan_resting(
    kind, price, volume, aggressor, phase, book, books, start, end, side, limit, remaining,
    queue_ahead, level_qty, crossed, probabilistic, power,
):  # fmt: skip
    """Rows ``start..end-1`` applied to a resting (or auction-joined) order of ``side`` at ``limit``
    (-1: market, auction only). Returns (row of its next fill or -1, qty, price, queue_ahead,
    level_qty, crossed) with the order's state after that row (or after ``end - 1``); qty
    :data:`UNCROSS` at the uncross of an auction it sat in (the caller prices that).

    Only rows that bring their own book move the queue or fill us by showing our price: the other
    side showing it fills us when it newly does (the recorded book keeps showing the levels our own
    order took on arrival, and they must not fill us twice)."""
    s_px, s_qty = (0, 1) if side == 1 else (2, 3)
    o_px, o_qty = (2, 3) if side == 1 else (0, 1)
    for i in range(start, end):
        is_trade = kind[i] == 0
        if is_trade and aggressor[i] == 0:  # an uncross: the auction our order sat in
            return i, -2, 0, -1.0, -1.0, False
        if phase[i] == 2 or phase[i] == 0 or limit == -1:
            continue
        if is_trade:
            through = price[i] < limit if side == 1 else price[i] > limit
            if through:
                return i, remaining, limit, 0.0, level_qty, crossed
            # a trade at our price by an aggressor on the other side eats the queue ahead of us
            # (and the displayed size, so that the book row after it is not read as cancellations)
            if price[i] == limit and aggressor[i] == -side and queue_ahead >= 0.0:
                ahead = queue_ahead
                queue_ahead = max(0.0, ahead - volume[i])
                if level_qty >= 0.0:
                    level_qty = max(0.0, level_qty - volume[i])
                if volume[i] > ahead:
                    return i, min(remaining, int(volume[i] - ahead)), limit, queue_ahead, level_qty, crossed
        b = book[i]
        if b < 0:
            continue
        best_opp = books[b, o_px, 0]
        now_crossed = best_opp > 0 and (best_opp <= limit if side == 1 else best_opp >= limit)
        if now_crossed and not crossed:
            # the other side now rests at or through our price: it would have traded with us
            crossed = True
            avail = 0
            for j in range(books.shape[2]):
                p = books[b, o_px, j]
                if p <= 0 or (p > limit if side == 1 else p < limit):
                    break
                avail += books[b, o_qty, j]
            if avail > 0:
                return i, min(remaining, avail), limit, 0.0, level_qty, crossed
        crossed = now_crossed
        j = _level(books[b, s_px], limit)
        if j >= 0:
            q = float(books[b, s_qty, j])
            if queue_ahead < 0.0:
                queue_ahead = q  # first seen: behind everything displayed
            elif probabilistic and level_qty >= 0.0 and q < level_qty:
                behind = max(level_qty - queue_ahead, 0.0)
                fa, fb = queue_ahead**power, behind**power
                share = fb / (fa + fb) if fa + fb > 0 else 0.0
                queue_ahead -= (level_qty - q) * (1.0 - share)
            queue_ahead = max(0.0, min(queue_ahead, q))
            level_qty = q
        else:
            best = books[b, s_px, 0]
            if best > 0 and (best < limit if side == 1 else best > limit):
                queue_ahead = 0.0  # our price is now the best on our side and shows nobody else
                level_qty = 0.0
    return -1, 0, 0, queue_ahead, level_qty, crossed
