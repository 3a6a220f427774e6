"""Numba kernels of the KRX matching engine: one stock, one regular trading day.

Prices live on the day's tick grid as row indices (``grid[i]`` is the price in KRW), so the book
is a pair of arrays of FIFO queues (linked lists through the order pool) and every price the
engine can produce is on the grid and inside the daily limits by construction.

The state is plain int64 arrays (see the index constants below) so that the kernels can be
cached to disk and called from Python with a batch of order events at a time. Their names:
E input events, R result codes, S scalar state, O order pool, L price levels, OUT output rows
(the tick stream), F fills, V VI records, D random-end delays. The Python face
of this module is :class:`market.exchange.engine.Exchange`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from market.krx import band_direction

# ---- phases
PH_PREOPEN, PH_CONTINUOUS, PH_VI, PH_CLOSING, PH_CLOSED = 0, 1, 2, 3, 4

# ---- input event kinds (rows of E: ts, kind, side, price index, qty, target order id)
K_LIMIT, K_MARKET, K_CANCEL, K_ADVANCE = 0, 1, 2, 3
E_TS, E_KIND, E_SIDE, E_IDX, E_QTY, E_TARGET = 0, 1, 2, 3, 4, 5
E_COLS = 6

# ---- result codes per input event
R_OK, R_REJECT_PRICE, R_REJECT_CLOSED, R_CANCEL_UNKNOWN, R_REJECT_QTY = 0, 1, 2, 3, 4

# ---- output rows (tick stream); the book block is bid prices, ask prices, bid volumes, ask volumes
EV_TRADE, EV_BOOK, EV_INDICATIVE, EV_STATUS = 0, 1, 2, 3
C_TS, C_TYPE, C_PRICE, C_VOLUME, C_CUM_VOLUME, C_SIDE, C_VI_STATUS, C_VI_TYPE, C_VI_DIR, C_ORDER = range(10)
C_PHASE = 10
C_BOOK = 11
LEVELS = 10
OUT_COLS = C_BOOK + 4 * LEVELS

# ---- order pool rows
O_SIDE, O_IDX, O_QTY, O_TS, O_NEXT, O_PREV, O_LIVE, O_ORIG = range(8)
O_COLS = 8

# ---- fills (ts, order id, price, qty, order side, liquidity 0 maker / 1 taker / 2 auction)
F_TS, F_ORDER, F_PRICE, F_QTY, F_SIDE, F_LIQ = range(6)
F_COLS = 6
LIQ_MAKER, LIQ_TAKER, LIQ_AUCTION = 0, 1, 2

# ---- VI records
(
    V_TRIGGER_TS,
    V_RELEASE_TS,
    V_TYPE,
    V_DIR,
    V_REF,
    V_TRIGGER_PRICE,
    V_AUCTION_PRICE,
    V_AUCTION_VOLUME,
    V_STATIC_REF,
    V_DYNAMIC_REF,
    V_PHASE,
) = range(11)
V_COLS = 11
VI_NONE, VI_STATIC, VI_DYNAMIC, VI_BOTH = 0, 1, 2, 3

# ---- level arrays L[row, price index]: head/tail/qty per side (0 bid, 1 ask)
L_HEAD, L_TAIL, L_QTY = 0, 2, 4
L_ROWS = 6

# ---- scalar state S
(
    S_PHASE,
    S_BEST_BID,
    S_BEST_ASK,
    S_STATIC_REF,
    S_DYNAMIC_REF,
    S_LAST_PRICE,
    S_CUM_VOLUME,
    S_T_PREOPEN,
    S_T_INDICATIVE,
    S_T_OPEN,
    S_T_CLOSE_START,
    S_T_CLOSE_END,
    S_T_VI_END,
    S_VI_ACTIVE,
    S_VI_TYPE,
    S_VI_DIR,
    S_N_VI,
    S_NEXT_ID,
    S_N_OUT,
    S_N_FILLS,
    S_N_LIVE,
    S_RNG,
    S_STATIC_BP,
    S_DYNAMIC_BP,
    S_DYNAMIC_BP_CLOSE,
    S_INBAND_FILL,
    S_EMIT_BOOK,
    S_RECORD_FILLS,
    S_VI_ENABLED,
    S_CLOSE_EXTENDED,
    S_OPEN_PRICE,
    S_CLOSE_PRICE,
    S_AUCTION_US,
    S_BASE_PRICE,
) = range(34)
S_SIZE = 34


@njit(cache=True)
def vi_check(S, price, dynamic_bp):
    """VI type and direction an execution at ``price`` would trigger now (static and dynamic bands)."""
    if S[S_VI_ENABLED] == 0:
        return VI_NONE, 0
    ds = band_direction(price, S[S_STATIC_REF], S[S_STATIC_BP])
    dd = band_direction(price, S[S_DYNAMIC_REF], dynamic_bp)
    vtype = (VI_STATIC if ds != 0 else 0) | (VI_DYNAMIC if dd != 0 else 0)
    return vtype, (dd if dd != 0 else ds)


@njit(cache=True)
def vi_status_now(S):
    return 1 if S[S_VI_ACTIVE] == 1 else 0


@njit(cache=True)
def emit_row(S, OUT, grid, L, ts, typ, price, volume, side, order_id, vi_status, with_book):
    r = S[S_N_OUT]
    S[S_N_OUT] = r + 1
    OUT[r, C_TS] = ts
    OUT[r, C_TYPE] = typ
    OUT[r, C_PRICE] = price
    OUT[r, C_VOLUME] = volume
    OUT[r, C_CUM_VOLUME] = S[S_CUM_VOLUME]
    OUT[r, C_SIDE] = side
    OUT[r, C_VI_STATUS] = vi_status
    OUT[r, C_VI_TYPE] = S[S_VI_TYPE] if vi_status > 0 else VI_NONE
    OUT[r, C_VI_DIR] = S[S_VI_DIR] if vi_status > 0 else 0
    OUT[r, C_ORDER] = order_id
    OUT[r, C_PHASE] = S[S_PHASE]
    for k in range(4 * LEVELS):
        OUT[r, C_BOOK + k] = 0
    if with_book:
        n = grid.shape[0]
        k = 0
        i = S[S_BEST_BID]
        while i >= 0 and k < LEVELS:
            if L[L_QTY, i] > 0:
                OUT[r, C_BOOK + k] = grid[i]
                OUT[r, C_BOOK + 2 * LEVELS + k] = L[L_QTY, i]
                k += 1
            i -= 1
        k = 0
        i = S[S_BEST_ASK]
        while i < n and k < LEVELS:
            if L[L_QTY + 1, i] > 0:
                OUT[r, C_BOOK + LEVELS + k] = grid[i]
                OUT[r, C_BOOK + 3 * LEVELS + k] = L[L_QTY + 1, i]
                k += 1
            i += 1


@njit(cache=True)
def _record_fill(S, F, ts, oid, price, qty, side, liquidity):
    if S[S_RECORD_FILLS] == 0:
        return
    r = S[S_N_FILLS]
    S[S_N_FILLS] = r + 1
    F[r, F_TS] = ts
    F[r, F_ORDER] = oid
    F[r, F_PRICE] = price
    F[r, F_QTY] = qty
    F[r, F_SIDE] = side
    F[r, F_LIQ] = liquidity


@njit(cache=True)
def _rest(S, O, L, oid, s, idx, qty, ts):
    """Queue order ``oid`` (side index s: 0 bid, 1 ask) at the tail of its price level."""
    O[oid, O_SIDE] = s
    O[oid, O_IDX] = idx
    O[oid, O_QTY] = qty
    O[oid, O_TS] = ts
    O[oid, O_NEXT] = -1
    O[oid, O_LIVE] = 1
    tail = L[L_TAIL + s, idx]
    O[oid, O_PREV] = tail
    if tail == -1:
        L[L_HEAD + s, idx] = oid
    else:
        O[tail, O_NEXT] = oid
    L[L_TAIL + s, idx] = oid
    L[L_QTY + s, idx] += qty
    S[S_N_LIVE] += 1
    if s == 0:
        if idx > S[S_BEST_BID]:
            S[S_BEST_BID] = idx
    elif idx < S[S_BEST_ASK]:
        S[S_BEST_ASK] = idx


@njit(cache=True)
def _unlink(S, O, L, oid):
    s = O[oid, O_SIDE]
    idx = O[oid, O_IDX]
    prv = O[oid, O_PREV]
    nxt = O[oid, O_NEXT]
    if prv == -1:
        L[L_HEAD + s, idx] = nxt
    else:
        O[prv, O_NEXT] = nxt
    if nxt == -1:
        L[L_TAIL + s, idx] = prv
    else:
        O[nxt, O_PREV] = prv
    O[oid, O_LIVE] = 0
    S[S_N_LIVE] -= 1


@njit(cache=True)
def _refresh_best(S, L, n):
    i = S[S_BEST_BID]
    while i >= 0 and L[L_QTY, i] == 0:
        i -= 1
    S[S_BEST_BID] = i
    i = S[S_BEST_ASK]
    while i < n and L[L_QTY + 1, i] == 0:
        i += 1
    S[S_BEST_ASK] = i


@njit(cache=True)
def uncross_price(S, L, grid, previous_price):
    """KRX single-price uncross: (price index, volume), or (-1, 0) when nothing crosses.

    Volume-maximising price among those where every bid above and every ask below executes;
    ties go to the price equal or closest to ``previous_price``, then to the lower price."""
    n = grid.shape[0]
    bb = S[S_BEST_BID]
    ba = S[S_BEST_ASK]
    if bb < 0 or ba >= n or bb < ba:
        return -1, 0
    m = bb - ba + 1
    cum_ask = np.empty(m, dtype=np.int64)  # asks at or below ba + k
    cum_bid = np.empty(m, dtype=np.int64)  # bids at or above ba + k
    acc = 0
    for k in range(m):
        acc += L[L_QTY + 1, ba + k]
        cum_ask[k] = acc
    acc = 0
    for k in range(m - 1, -1, -1):
        acc += L[L_QTY, ba + k]
        cum_bid[k] = acc
    best_vol = 0
    for k in range(m):
        v = min(cum_ask[k], cum_bid[k])
        if v > best_vol:
            best_vol = v
    if best_vol == 0:
        return -1, 0
    best_k = -1
    best_dist = np.int64(1) << 62
    for k in range(m):
        if min(cum_ask[k], cum_bid[k]) != best_vol:
            continue
        bids_above = cum_bid[k + 1] if k + 1 < m else 0
        asks_below = cum_ask[k - 1] if k > 0 else 0
        if bids_above > best_vol or asks_below > best_vol:
            continue
        dist = abs(grid[ba + k] - previous_price)
        if dist < best_dist:  # ascending scan: on equal distance the lower price stays
            best_dist = dist
            best_k = k
    return ba + best_k, best_vol


@njit(cache=True)
def _allocate_side(S, O, L, F, grid, s, price_idx, volume, ts):
    """Fill ``volume`` of side s at the uncross price: better-priced orders fully, then the
    uncross level by time priority, or by quantity priority at a daily-limit price."""
    n = grid.shape[0]
    price = grid[price_idx]
    sign = 1 if s == 0 else -1
    left = volume
    i = S[S_BEST_BID] if s == 0 else S[S_BEST_ASK]
    while left > 0 and 0 <= i < n:
        if (s == 0 and i < price_idx) or (s == 1 and i > price_idx):
            break
        if L[L_QTY + s, i] > 0:
            at_limit = i == price_idx and (i == 0 or i == n - 1)
            # gather the queue; at a limit price, larger orders first (stable, so time breaks ties)
            cnt = 0
            oid = L[L_HEAD + s, i]
            while oid != -1:
                cnt += 1
                oid = O[oid, O_NEXT]
            ids = np.empty(cnt, dtype=np.int64)
            oid = L[L_HEAD + s, i]
            for j in range(cnt):
                ids[j] = oid
                oid = O[oid, O_NEXT]
            if at_limit:
                qtys = np.empty(cnt, dtype=np.int64)
                for j in range(cnt):
                    qtys[j] = -O[ids[j], O_QTY]
                ids = ids[np.argsort(qtys, kind="mergesort")]
            for j in range(cnt):
                if left == 0:
                    break
                oid = ids[j]
                take = min(left, O[oid, O_QTY])
                O[oid, O_QTY] -= take
                L[L_QTY + s, i] -= take
                left -= take
                _record_fill(S, F, ts, oid, price, take, sign, LIQ_AUCTION)
                if O[oid, O_QTY] == 0:
                    _unlink(S, O, L, oid)
        i = i - 1 if s == 0 else i + 1


@njit(cache=True)
def _start_vi(S, OUT, V, L, grid, D, ts, vtype, direction, trigger_price, dynamic_ref, order_id):
    r = S[S_N_VI]
    S[S_N_VI] = r + 1
    V[r, V_TRIGGER_TS] = ts
    V[r, V_RELEASE_TS] = -1
    V[r, V_TYPE] = vtype
    V[r, V_DIR] = direction
    V[r, V_REF] = S[S_STATIC_REF] if (vtype & VI_STATIC) else dynamic_ref
    V[r, V_TRIGGER_PRICE] = trigger_price
    V[r, V_AUCTION_PRICE] = -1
    V[r, V_AUCTION_VOLUME] = 0
    V[r, V_STATIC_REF] = S[S_STATIC_REF]
    V[r, V_DYNAMIC_REF] = dynamic_ref
    V[r, V_PHASE] = S[S_PHASE]
    S[S_VI_ACTIVE] = 1
    S[S_VI_TYPE] = vtype
    S[S_VI_DIR] = direction
    delay = D[S[S_RNG] % D.shape[0]]
    S[S_RNG] += 1
    end = ts + S[S_AUCTION_US] + delay
    if S[S_PHASE] == PH_CLOSING:
        S[S_T_CLOSE_END] = end
        S[S_CLOSE_EXTENDED] = 1
    else:
        S[S_PHASE] = PH_VI
        S[S_T_VI_END] = end
    emit_row(S, OUT, grid, L, ts, EV_STATUS, trigger_price, 0, 0, order_id, 1, S[S_EMIT_BOOK] == 1)


@njit(cache=True)
def _run_uncross(S, O, L, F, OUT, V, grid, ts, price_idx, volume):
    """Execute an auction result and, if a VI was running, release it (vi_status 2 rows)."""
    released = S[S_VI_ACTIVE] == 1
    if volume > 0:
        _allocate_side(S, O, L, F, grid, 0, price_idx, volume, ts)
        _allocate_side(S, O, L, F, grid, 1, price_idx, volume, ts)
        _refresh_best(S, L, grid.shape[0])
        price = grid[price_idx]
        S[S_CUM_VOLUME] += volume
        S[S_LAST_PRICE] = price
        S[S_STATIC_REF] = price  # a single-price auction result is the new static reference
        S[S_DYNAMIC_REF] = price
    vs = 2 if released else 0
    if volume > 0:
        emit_row(S, OUT, grid, L, ts, EV_TRADE, grid[price_idx], volume, 0, -1, vs, False)
    if released:
        r = S[S_N_VI] - 1
        V[r, V_RELEASE_TS] = ts
        V[r, V_AUCTION_PRICE] = grid[price_idx] if volume > 0 else -1
        V[r, V_AUCTION_VOLUME] = volume


@njit(cache=True)
def previous_price(S):
    return S[S_LAST_PRICE] if S[S_LAST_PRICE] > 0 else S[S_STATIC_REF]


@njit(cache=True)
def _transition(S, O, L, F, OUT, V, grid, D):
    """Run the next scheduled transition; return its time, or -1 when none is scheduled."""
    ph = S[S_PHASE]
    emit_book = S[S_EMIT_BOOK] == 1
    if ph == PH_PREOPEN:
        t = S[S_T_OPEN]
        p, v = uncross_price(S, L, grid, S[S_BASE_PRICE])
        if v > 0:
            # the opening price is checked against the static band only (no dynamic VI in the open)
            vtype, d = vi_check(S, grid[p], 0)
            if vtype != VI_NONE:
                _start_vi(S, OUT, V, L, grid, D, t, vtype, d, grid[p], S[S_DYNAMIC_REF], -1)
                return t
            _run_uncross(S, O, L, F, OUT, V, grid, t, p, v)
            S[S_OPEN_PRICE] = grid[p]
        S[S_PHASE] = PH_CONTINUOUS
        emit_row(S, OUT, grid, L, t, EV_STATUS, S[S_LAST_PRICE], 0, 0, -1, 0, emit_book)
        return t
    if ph == PH_VI:
        if S[S_T_VI_END] <= S[S_T_CLOSE_START]:
            t = S[S_T_VI_END]
            p, v = uncross_price(S, L, grid, previous_price(S))
            _run_uncross(S, O, L, F, OUT, V, grid, t, p, v)
            if v > 0 and S[S_OPEN_PRICE] == 0:
                S[S_OPEN_PRICE] = grid[p]
            S[S_PHASE] = PH_CONTINUOUS
            emit_row(S, OUT, grid, L, t, EV_STATUS, S[S_LAST_PRICE], 0, 0, -1, 2, emit_book)
            S[S_VI_ACTIVE] = 0
            S[S_VI_TYPE] = VI_NONE
            S[S_VI_DIR] = 0
            return t
        # a VI still running at 15:20 merges into the closing call and is released by it
        t = S[S_T_CLOSE_START]
        S[S_PHASE] = PH_CLOSING
        S[S_CLOSE_EXTENDED] = 1
        emit_row(S, OUT, grid, L, t, EV_STATUS, 0, 0, 0, -1, 1, emit_book)
        return t
    if ph == PH_CONTINUOUS:
        t = S[S_T_CLOSE_START]
        S[S_PHASE] = PH_CLOSING
        emit_row(S, OUT, grid, L, t, EV_STATUS, 0, 0, 0, -1, 0, emit_book)
        return t
    if ph == PH_CLOSING:
        t = S[S_T_CLOSE_END]
        p, v = uncross_price(S, L, grid, previous_price(S))
        if v > 0 and S[S_CLOSE_EXTENDED] == 0:
            vtype, d = vi_check(S, grid[p], S[S_DYNAMIC_BP_CLOSE])
            if vtype != VI_NONE:
                _start_vi(S, OUT, V, L, grid, D, t, vtype, d, grid[p], S[S_DYNAMIC_REF], -1)
                return t
        was_vi = S[S_VI_ACTIVE] == 1
        _run_uncross(S, O, L, F, OUT, V, grid, t, p, v)
        S[S_CLOSE_PRICE] = grid[p] if v > 0 else S[S_LAST_PRICE]
        S[S_PHASE] = PH_CLOSED
        emit_row(S, OUT, grid, L, t, EV_STATUS, S[S_CLOSE_PRICE], 0, 0, -1, 2 if was_vi else 0, emit_book)
        S[S_VI_ACTIVE] = 0
        S[S_VI_TYPE] = VI_NONE
        S[S_VI_DIR] = 0
        return t
    return -1


@njit(cache=True)
def _next_transition_time(S):
    ph = S[S_PHASE]
    if ph == PH_PREOPEN:
        return S[S_T_OPEN]
    if ph == PH_VI:
        return min(S[S_T_VI_END], S[S_T_CLOSE_START])
    if ph == PH_CONTINUOUS:
        return S[S_T_CLOSE_START]
    if ph == PH_CLOSING:
        return S[S_T_CLOSE_END]
    return np.int64(1) << 62


@njit(cache=True)
def _match_continuous(S, O, L, F, OUT, V, grid, D, oid, s, lim, qty, is_limit, ts):
    """Match an incoming order in continuous trading. A VI fires at the first price level whose
    execution would reach a band; fills before it stand when in-band fill is on (the default)."""
    n = grid.shape[0]
    opp = 1 - s
    step = 1 if s == 0 else -1  # asks are walked upward for a buy, bids downward for a sell
    sign = 1 if s == 0 else -1
    dynamic_ref = S[S_DYNAMIC_REF]  # the last execution before this order
    # find the level where a VI would fire, if the order gets that far
    trigger_level = -1
    trigger_type = VI_NONE
    trigger_dir = 0
    left = qty
    i = S[S_BEST_ASK] if s == 0 else S[S_BEST_BID]
    while left > 0 and 0 <= i < n and ((s == 0 and i <= lim) or (s == 1 and i >= lim)):
        q = L[L_QTY + opp, i]
        if q > 0:
            vtype, d = vi_check(S, grid[i], S[S_DYNAMIC_BP])
            if vtype != VI_NONE:
                trigger_level, trigger_type, trigger_dir = i, vtype, d
                break
            left -= q
        i += step
    left = qty
    traded = False
    if trigger_level < 0 or S[S_INBAND_FILL] == 1:
        i = S[S_BEST_ASK] if s == 0 else S[S_BEST_BID]
        while (
            left > 0
            and 0 <= i < n
            and i != trigger_level
            and ((s == 0 and i <= lim) or (s == 1 and i >= lim))
        ):
            if L[L_QTY + opp, i] > 0:
                level_volume = 0
                price = grid[i]
                rid = L[L_HEAD + opp, i]
                while left > 0 and rid != -1:
                    take = min(left, O[rid, O_QTY])
                    O[rid, O_QTY] -= take
                    left -= take
                    level_volume += take
                    _record_fill(S, F, ts, rid, price, take, -sign, LIQ_MAKER)
                    _record_fill(S, F, ts, oid, price, take, sign, LIQ_TAKER)
                    nxt = O[rid, O_NEXT]
                    if O[rid, O_QTY] == 0:
                        _unlink(S, O, L, rid)
                    rid = nxt
                L[L_QTY + opp, i] -= level_volume
                S[S_CUM_VOLUME] += level_volume
                S[S_LAST_PRICE] = price
                traded = True
                emit_row(S, OUT, grid, L, ts, EV_TRADE, price, level_volume, sign, oid, 0, False)
            i += step
        _refresh_best(S, L, n)
    if traded:
        S[S_DYNAMIC_REF] = S[S_LAST_PRICE]
    if trigger_level >= 0:
        _start_vi(S, OUT, V, L, grid, D, ts, trigger_type, trigger_dir, grid[trigger_level], dynamic_ref, oid)
    if left > 0 and is_limit:
        _rest(S, O, L, oid, s, lim, left, ts)
    elif left > 0 and trigger_level >= 0:
        # a market order that sets off a VI joins the auction as a limit at the trigger price
        # (vicap's reading; resting at the daily limit would force the uncross to the limit)
        _rest(S, O, L, oid, s, trigger_level, left, ts)
    O[oid, O_ORIG] = qty


@njit(cache=True)
def _emit_after_change(S, L, OUT, grid, ts, oid):
    if S[S_EMIT_BOOK] == 0:
        return
    if S[S_PHASE] == PH_CONTINUOUS:
        emit_row(S, OUT, grid, L, ts, EV_BOOK, 0, 0, 0, oid, 0, True)
    elif ts >= S[S_T_INDICATIVE]:
        p, v = uncross_price(S, L, grid, previous_price(S))
        emit_row(
            S, OUT, grid, L, ts, EV_INDICATIVE, grid[p] if v > 0 else 0, v, 0, oid, vi_status_now(S), True
        )


@njit(cache=True)
def process_events(E, R, S, O, L, grid, OUT, F, V, D):
    """Process order events E in time order; return how many were processed (fewer than all
    when an output buffer needs room: the caller grows it and calls again with the rest)."""
    n = grid.shape[0]
    m = E.shape[0]
    for i in range(m):
        if (
            S[S_N_OUT] + n + 32 > OUT.shape[0]
            or S[S_N_FILLS] + 2 * S[S_N_LIVE] + 4 > F.shape[0]
            or S[S_N_VI] + 4 > V.shape[0]
        ):
            return i
        ts = E[i, E_TS]
        while _next_transition_time(S) <= ts:
            _transition(S, O, L, F, OUT, V, grid, D)
        kind = E[i, E_KIND]
        R[i] = R_OK
        if kind == K_ADVANCE:
            continue
        oid = S[S_NEXT_ID]  # every order or cancel event gets the next id, accepted or not
        S[S_NEXT_ID] = oid + 1
        O[oid, O_LIVE] = 0
        O[oid, O_ORIG] = 0
        if ts < S[S_T_PREOPEN] or S[S_PHASE] == PH_CLOSED:
            R[i] = R_REJECT_CLOSED
            continue
        if kind == K_CANCEL:
            target = E[i, E_TARGET]
            if target < 0 or target >= oid or O[target, O_LIVE] == 0:
                R[i] = R_CANCEL_UNKNOWN
                continue
            L[L_QTY + O[target, O_SIDE], O[target, O_IDX]] -= O[target, O_QTY]
            _unlink(S, O, L, target)
            _refresh_best(S, L, n)
            _emit_after_change(S, L, OUT, grid, ts, target)
            continue
        qty = E[i, E_QTY]
        if qty <= 0:
            R[i] = R_REJECT_QTY
            continue
        s = 0 if E[i, E_SIDE] > 0 else 1
        if kind == K_LIMIT:
            lim = E[i, E_IDX]
            if lim < 0 or lim >= n:
                R[i] = R_REJECT_PRICE
                continue
        else:
            lim = n - 1 if s == 0 else 0
        if S[S_PHASE] == PH_CONTINUOUS:
            _match_continuous(S, O, L, F, OUT, V, grid, D, oid, s, lim, qty, kind == K_LIMIT, ts)
        else:
            _rest(S, O, L, oid, s, lim, qty, ts)
            O[oid, O_ORIG] = qty
        _emit_after_change(S, L, OUT, grid, ts, oid)
    return m
