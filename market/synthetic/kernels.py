"""Numba kernel of the synthetic market: participants trading one stock for one day through the
exchange kernels (the same KRX mechanics every other part of vicap uses).

A latent fair value F(t) moves with a market-wide factor, stochastic idiosyncratic volatility and
the planned moves of shock episodes (news, disclosure, program flow, panic). Participants:
- liquidity providers quote a 10-level ladder around F and pull back (wider, thinner) in shocks;
- noise traders place and cancel limit orders near the touch, some market orders, and pull the
  orders a news-fast move of F leaves on the wrong side of the book;
- informed traders trade toward F when the price lags it (at a few bp in calm times; in a shock fewer
  know and only a large mispricing is worth their trade);
- momentum traders chase 30-second moves;
- program traders send the stock's leg of market-wide basket orders (pressure in one direction);
- panicking retail sellers dump during a panic episode.
VIs, auctions and their prices come out of the engine; nothing is painted on afterwards.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from market.exchange import kernels as k

STEP_US = 100_000  # participants act on a 100 ms clock; in calm times the book feed is one row a step

# ---- episode causes (index into CAUSES), rows of the episode plan
CAUSES = ("none", "news", "disclosure", "program", "panic")
CAUSE_NEWS, CAUSE_DISCLOSURE, CAUSE_PROGRAM, CAUSE_PANIC = 1, 2, 3, 4
(
    EP_T0,
    EP_CAUSE,
    EP_DIR,
    EP_JUMP,
    EP_JUMP_DUR,
    EP_CONT,
    EP_CONT_DUR,
    EP_PRESSURE,
    EP_PRESSURE_DUR,
    EP_PERSIST,
    EP_FLAG_T,
    EP_WITHDRAW,
) = range(12)
EP_COLS = 12
EPISODE_MARGIN_S = 150.0  # a VI this long after an episode's plan ends is still its doing

# ---- stock parameters
(
    P_SIGMA,
    P_BETA,
    P_NOISE_RATE,
    P_INFORMED_RATE,
    P_MOMENTUM_RATE,
    P_LP_DEPTH,
    P_LP_HALF,
    P_LOT,
    P_GAP,
    P_VOL_OF_VOL,
    P_INFORMED_EDGE,
    P_AUCTION_PULL,
    P_AUCTION_REACH,
    P_SHOCK_INFORMED_RATE,
    P_SHOCK_INFORMED_EDGE,
    P_SHOCK_PULL,
) = range(16)
P_COLS = 16

# ---- overlay columns written beside the engine's rows
(OV_PROGRAM_NET, OV_INSTITUTION, OV_FOREIGN, OV_INDIVIDUAL, OV_NEWS, OV_DISCLOSURE) = range(6)
OV_COLS = 6

STATUS_OK, STATUS_NEED_ROOM = 0, 1
LP_LEVELS = 10
LP_SLOTS = 24
ANCHOR_PULL = 0.6
VOL_PERSISTENCE = 0.995  # per-second AR(1) of log volatility: clusters that last minutes
INFORMED_REACH = 2
BUSY_SURGE = 4.0  # participant flow multiplier while a shock plays out or a VI runs
CLOSING_CALL_S = 6 * 3600 + 50 * 60  # 15:20, in seconds after 08:30
NOISE_RING = 512
STALE_TICKS = 3
FAST_MOVE = 0.002  # a fair-value move per second that traders read as news (calm: ~0.02%)


@njit(cache=True)
def _plan(epi, t_s):
    """Planned log move of F at t_s seconds (after 08:30) from all shock episodes."""
    total = 0.0
    for e in range(epi.shape[0]):
        dt_ = t_s - epi[e, EP_T0]
        if dt_ <= 0:
            continue
        jump_frac = min(1.0, dt_ / max(epi[e, EP_JUMP_DUR], 1e-9))
        total += epi[e, EP_DIR] * epi[e, EP_JUMP] * jump_frac
        after = dt_ - epi[e, EP_JUMP_DUR]
        if after > 0:
            total += epi[e, EP_DIR] * epi[e, EP_CONT] * min(1.0, after / max(epi[e, EP_CONT_DUR], 1e-9))
    return total


@njit(cache=True)
def _active_episode(epi, t_s):
    """The latest episode still playing out at t_s: its planned moves and pressure, plus a margin."""
    best = -1
    for e in range(epi.shape[0]):
        pressure = epi[e, EP_PRESSURE_DUR] * (2.5 if epi[e, EP_PERSIST] > 0 else 1.0)
        length = max(epi[e, EP_JUMP_DUR] + epi[e, EP_CONT_DUR], pressure) + EPISODE_MARGIN_S
        if epi[e, EP_T0] <= t_s <= epi[e, EP_T0] + length:
            best = e
    return best


@njit(cache=True)
def _submit(ex, ts, kind, side, idx, qty, target):
    """One order event through the exchange (``ex``: its kernel state, as a tuple); returns
    (order id or -1, traded volume, ok)."""
    E1, R1, S, O, L, grid, OUT, F, V, D = ex
    if S[k.S_NEXT_ID] + 1 >= O.shape[0]:
        return -1, 0, False
    E1[0, k.E_TS] = ts
    E1[0, k.E_KIND] = kind
    E1[0, k.E_SIDE] = side
    E1[0, k.E_IDX] = idx
    E1[0, k.E_QTY] = qty
    E1[0, k.E_TARGET] = target
    oid = S[k.S_NEXT_ID]
    before = S[k.S_CUM_VOLUME]
    if k.process_events(E1, R1, S, O, L, grid, OUT, F, V, D) == 0:
        return -1, 0, False
    return (oid if kind != k.K_ADVANCE else -1), S[k.S_CUM_VOLUME] - before, True


@njit(cache=True)
def _top_of_book(S, L, n):
    """A signature of the best levels: the feed publishes a book row when it changes."""
    bb, ba = S[k.S_BEST_BID], S[k.S_BEST_ASK]
    qb = L[k.L_QTY, bb] if bb >= 0 else 0
    qa = L[k.L_QTY + 1, ba] if ba < n else 0
    return ((bb * 1_000_003 + ba) * 1_000_003 + qb) * 1_000_003 + qa


@njit(cache=True)
def _lot(qty_f, lot):
    q = int(qty_f / lot + 0.5) * lot
    return max(q, lot)


@njit(cache=True)
def _liquidity_providers(ex, t, P, lp_order, lp_slots, a_idx, withdraw, continuous, lot):
    """Refresh the 10-level ladder around the anchor, thinner and wider while a shock plays out;
    False when a buffer is full."""
    S, O, grid = ex[2], ex[3], ex[5]
    n = grid.shape[0]
    if np.random.random() < 0.35:
        half = int(P[P_LP_HALF] + 4 * withdraw)
        levels = max(2, int(LP_LEVELS * (1.0 - 0.6 * withdraw)))
        depth = P[P_LP_DEPTH] * (1.0 - 0.8 * withdraw)
        bid_top = a_idx - half
        ask_top = a_idx + half
        if continuous:  # rest only: clamp the ladder to the book instead of crossing it
            if S[k.S_BEST_ASK] < n:
                bid_top = min(bid_top, S[k.S_BEST_ASK] - 1)
            if S[k.S_BEST_BID] >= 0:
                ask_top = max(ask_top, S[k.S_BEST_BID] + 1)
        if ask_top <= bid_top:
            ask_top = bid_top + 1
        for s in range(2):
            for slot in range(LP_SLOTS):
                rid = lp_slots[s, slot]
                if rid < 0:
                    continue
                j = O[rid, k.O_IDX]
                keep = (bid_top - levels < j <= bid_top) if s == 0 else (ask_top <= j < ask_top + levels)
                if O[rid, k.O_LIVE] == 1 and not keep:
                    r, _, ok = _submit(ex, t, k.K_CANCEL, 0, 0, 0, rid)
                    if not ok:
                        return False
                if O[rid, k.O_LIVE] == 0:
                    lp_slots[s, slot] = -1
                    lp_order[s, j] = -1
            slot = 0
            for j in range(levels):
                idx = bid_top - j if s == 0 else ask_top + j
                if idx < 0 or idx >= n or lp_order[s, idx] >= 0:
                    continue
                while slot < LP_SLOTS and lp_slots[s, slot] >= 0:
                    slot += 1
                if slot == LP_SLOTS:
                    break
                q = _lot(depth * (1.0 + 0.25 * j) * np.random.uniform(0.5, 1.5), lot)
                r, _, ok = _submit(ex, t, k.K_LIMIT, 1 - 2 * s, idx, q, -1)
                if not ok:
                    return False
                lp_order[s, idx] = r
                lp_slots[s, slot] = r
    return True


@njit(cache=True)
def _noise_traders(ex, t, P, noise_ring, noise_pos, true_flow, a_idx, rate, continuous, lot):
    """Limit orders near the touch (some improve it), a few market orders, and cancellations of
    their own resting orders; returns (ok, the ring's next position)."""
    O, grid = ex[3], ex[5]
    n = grid.shape[0]
    for _ in range(np.random.poisson(rate)):
        side = 1 if np.random.random() < 0.5 else -1
        size = _lot(lot * np.random.pareto(1.6) * 2.0 + lot, lot)
        if continuous and np.random.random() < 0.12:
            r, vol, ok = _submit(ex, t, k.K_MARKET, side, 0, size, -1)
            agent_side = side
        else:
            mid_idx = a_idx
            # some improve on the quotes (fewer in thin names, whose spreads stay wider)
            inside = np.random.random() < 0.15 * min(1.0, P[P_NOISE_RATE] / 3.0)
            off = int(np.random.exponential(2.5)) - (1 if inside else 0)
            idx = min(max(mid_idx - side * (off + 1), 0), n - 1)
            r, vol, ok = _submit(ex, t, k.K_LIMIT, side, idx, size, -1)
            agent_side = side
            if ok and r >= 0:
                noise_ring[noise_pos % NOISE_RING] = r
                noise_pos += 1
        if not ok:
            return False, noise_pos
        if vol > 0:
            u_cat = np.random.random()
            cat = 2 if u_cat < 0.7 else (0 if u_cat < 0.85 else 1)
            true_flow[cat] += agent_side * vol
    for _ in range(np.random.poisson(rate * 0.8)):
        if noise_pos == 0:
            break
        target = noise_ring[np.random.randint(0, min(noise_pos, NOISE_RING))]
        if target >= 0 and O[target, k.O_LIVE] == 1:
            r, _, ok = _submit(ex, t, k.K_CANCEL, 0, 0, 0, target)
            if not ok:
                return False, noise_pos
    return True, noise_pos


@njit(cache=True)
def _pull_stale_orders(ex, t, noise_ring, noise_pos, a_idx):
    """Noise traders pull the orders a move of the anchor has left on its wrong side (bids above
    it, asks below it, by more than STALE_TICKS): news empties the near side of a real book in
    seconds, where a stale wall would let the price grind toward the news for minutes and trend at
    the minute scale. False when a buffer is full."""
    O = ex[3]
    for i in range(min(noise_pos, NOISE_RING)):
        oid = noise_ring[i]
        if oid < 0 or O[oid, k.O_LIVE] != 1:
            continue
        idx = O[oid, k.O_IDX]
        if (idx > a_idx + STALE_TICKS) if O[oid, k.O_SIDE] == 0 else (idx < a_idx - STALE_TICKS):
            _, _, ok = _submit(ex, t, k.K_CANCEL, 0, 0, 0, oid)
            if not ok:
                return False
    return True


@njit(cache=True)
def _informed_traders(ex, t, P, fair, f_idx, bb, ba, active, in_vi, true_flow, lot, dt_s):
    """Trade toward the fair value when the touch lags it, a few ticks through the touch at most
    (in a VI auction as far as the edge setting lets them); False when a buffer is full."""
    grid = ex[5]
    n = grid.shape[0]
    # in calm times informed money keeps prints near F (efficient prices, no trending mid-quote); in
    # a shock fewer of them know, and only a large mispricing is worth trading
    if active >= 0:
        edge, rate = P[P_SHOCK_INFORMED_EDGE], P[P_SHOCK_INFORMED_RATE]
    else:
        edge, rate = P[P_INFORMED_EDGE], P[P_INFORMED_RATE]
    want = 0
    if ba < n and grid[ba] < fair * (1.0 - edge):
        want = 1
    elif bb >= 0 and grid[bb] > fair * (1.0 + edge):
        want = -1
    if want != 0:
        for _ in range(np.random.poisson(rate * dt_s)):
            size = _lot(lot * np.random.uniform(2.0, 10.0), lot)
            # a few ticks through the touch at most: informed money climbs, it does not sweep
            # (in a VI auction as far as the edge setting lets it bid toward F)
            reach = int(P[P_AUCTION_REACH]) if in_vi else INFORMED_REACH
            idx = min(f_idx, ba + reach) if want > 0 else max(f_idx, bb - reach)
            _, vol, ok = _submit(ex, t, k.K_LIMIT, want, idx, size, -1)
            if not ok:
                return False
            true_flow[0 if np.random.random() < 0.5 else 1] += want * vol
    return True


@njit(cache=True)
def _momentum_traders(ex, t, P, last_sec_price, sec, continuous, true_flow, lot, dt_s):
    """Chase a move of more than 1% over the last 30 seconds with market orders."""
    S = ex[2]
    if continuous and sec >= 30:
        p_then = last_sec_price[(sec - 30) % 40]
        p_now = S[k.S_LAST_PRICE]
        if p_then > 0 and p_now > 0:
            ret = p_now / p_then - 1.0
            if abs(ret) > 0.01:
                side = 1 if ret > 0 else -1
                for _ in range(np.random.poisson(P[P_MOMENTUM_RATE] * min(abs(ret) / 0.01, 5.0) * dt_s)):
                    size = _lot(lot * np.random.uniform(1.0, 5.0), lot)
                    _, vol, ok = _submit(ex, t, k.K_MARKET, side, 0, size, -1)
                    if not ok:
                        return False
                    true_flow[2] += side * vol
    return True


@njit(cache=True)
def _pressure(ex, t, epi, t_s, bb, ba, a_idx, program_net, true_flow, lot, dt_s):
    """The legs of program baskets and panicking sellers' orders, while their episodes last;
    returns (ok, the program's net buy so far)."""
    n = ex[5].shape[0]
    for e in range(epi.shape[0]):
        cause = int(epi[e, EP_CAUSE])
        if cause != CAUSE_PROGRAM and cause != CAUSE_PANIC:
            continue
        since = t_s - epi[e, EP_T0]
        dur = epi[e, EP_PRESSURE_DUR] * (2.5 if epi[e, EP_PERSIST] > 0 else 1.0)
        if since < 0 or since > dur:
            continue
        side = int(epi[e, EP_DIR])
        for _ in range(np.random.poisson(epi[e, EP_PRESSURE] * dt_s)):
            size = _lot(lot * np.random.uniform(3.0, 15.0), lot)
            # aggressive but bounded: a few ticks through the touch, so auctions stay sane
            ref_idx = ba if side > 0 else bb
            if ref_idx < 0 or ref_idx >= n:
                ref_idx = a_idx
            idx = min(max(ref_idx + side * 3, 0), n - 1)
            _, vol, ok = _submit(ex, t, k.K_LIMIT, side, idx, size, -1)
            if not ok:
                return False, program_net
            if cause == CAUSE_PROGRAM:
                program_net += side * vol
                true_flow[0 if np.random.random() < 0.6 else 1] += side * vol
            else:
                true_flow[2] += side * vol
    return True, program_net


@njit(cache=True)
def simulate_stock_day(
    S,
    O,
    L,
    grid,
    OUT,
    F,
    V,
    D,
    OVL,
    VI_CAUSE,
    VI_DRIFT,
    P,
    mkt,
    epi,
    pub_us,
    t_start_us,
    t_end_us,
    base_price,
    seed,
):
    """Simulate from 08:30 (``t_start_us``) until the close. Returns STATUS_NEED_ROOM when a
    buffer is too small (the caller enlarges them and runs again: the result is deterministic)."""
    np.random.seed(seed)
    n = grid.shape[0]
    E1 = np.zeros((1, k.E_COLS), dtype=np.int64)
    R1 = np.zeros(1, dtype=np.int64)
    ex = (E1, R1, S, O, L, grid, OUT, F, V, D)  # the exchange kernel state every order goes through
    lp_order = np.full((2, n), -1, dtype=np.int64)  # the LP's resting order at each level
    lp_slots = np.full((2, LP_SLOTS), -1, dtype=np.int64)  # the same orders as a short list
    noise_ring = np.full(NOISE_RING, -1, dtype=np.int64)
    noise_pos = 0
    pulled_at = -1  # the anchor at the last pull of stale orders
    fair_sec = 0.0  # the fair value at the start of the previous second
    fast = False  # the fair value moved like news over the last second
    last_sec_fast = -1
    true_flow = np.zeros(3, dtype=np.int64)  # institution, foreign, individual (aggressor nets)
    published = np.zeros(3, dtype=np.int64)
    n_pub = 0
    program_net = 0
    last_sec_price = np.zeros(40, dtype=np.int64)  # ring of last prices per second (momentum)
    v = P[P_GAP]
    log_vol = 0.0
    filled_rows = 0
    n_vi_seen = 0
    lot = P[P_LOT]
    t = t_start_us
    open_s = (S[k.S_T_OPEN] - t_start_us) / 1e6
    last_sec = -1
    while t <= t_end_us and S[k.S_PHASE] != k.PH_CLOSED:
        t_s = (t - t_start_us) / 1e6
        sec = int(t_s)
        rows_before = S[k.S_N_OUT]
        top_before = _top_of_book(S, L, n)
        _, _, ok = _submit(ex, t, k.K_ADVANCE, 0, 0, 0, -1)
        if not ok:
            return STATUS_NEED_ROOM
        phase = S[k.S_PHASE]
        continuous = phase == k.PH_CONTINUOUS
        # ---- latent fair value
        if sec != last_sec:
            log_vol = VOL_PERSISTENCE * log_vol + P[P_VOL_OF_VOL] * np.random.standard_normal()
            last_sec = sec
            last_sec_price[sec % 40] = S[k.S_LAST_PRICE] if S[k.S_LAST_PRICE] > 0 else base_price
        m = mkt[min(sec, mkt.shape[0] - 1)] * STEP_US / 1e6
        v += (
            P[P_BETA] * m
            + P[P_SIGMA] * np.exp(log_vol) * np.sqrt(STEP_US / 1e6) * np.random.standard_normal()
        )
        fair = base_price * np.exp(v + _plan(epi, t_s))
        if sec != last_sec_fast:
            fast = fair_sec > 0 and abs(np.log(fair / fair_sec)) > FAST_MOVE
            fair_sec = fair
            last_sec_fast = sec
        f_idx = min(max(np.searchsorted(grid, fair), 0), n - 1)
        # liquidity providers and noise traders see prints, not F: they quote between the two; in a
        # VI auction and while a shock plays out, as far toward F as the market's edge setting lets
        # the call and the release discover it
        last = S[k.S_LAST_PRICE]
        in_vi = S[k.S_VI_ACTIVE] == 1
        active = _active_episode(epi, t_s)
        pull = P[P_AUCTION_PULL] if in_vi else (P[P_SHOCK_PULL] if active >= 0 else ANCHOR_PULL)
        anchor = fair if last <= 0 else np.exp(np.log(last) + pull * (np.log(fair) - np.log(last)))
        a_idx = min(max(np.searchsorted(grid, anchor), 0), n - 1)
        # around a shock the crowd piles in and the feed publishes every book change, as KRX does
        busy = active >= 0 or in_vi
        S[k.S_EMIT_BOOK] = 1 if busy else 0
        surge = BUSY_SURGE if busy else 1.0
        withdraw = 0.0
        if active >= 0 and t_s - epi[active, EP_T0] < epi[active, EP_JUMP_DUR] + 60:
            withdraw = epi[active, EP_WITHDRAW]
        # U-shaped activity over the regular session (busier at the open and before the close)
        from_open = max(t_s - open_s, 0.0)
        to_close = max(CLOSING_CALL_S - t_s, 0.0)
        u = 1.0 + 4.0 * np.exp(-from_open / 1200.0) + 2.0 * np.exp(-to_close / 900.0)
        if phase == k.PH_PREOPEN:
            u = 0.4
        dt_s = STEP_US / 1e6
        # ---- the participants, in this order (the draws of the random stream follow it)
        if not _liquidity_providers(ex, t, P, lp_order, lp_slots, a_idx, withdraw, continuous, lot):
            return STATUS_NEED_ROOM
        rate = P[P_NOISE_RATE] * u * surge * dt_s
        if fast and continuous and a_idx != pulled_at:
            if not _pull_stale_orders(ex, t, noise_ring, noise_pos, a_idx):
                return STATUS_NEED_ROOM
            pulled_at = a_idx
        ok, noise_pos = _noise_traders(
            ex, t, P, noise_ring, noise_pos, true_flow, a_idx, rate, continuous, lot
        )
        if not ok:
            return STATUS_NEED_ROOM
        bb, ba = S[k.S_BEST_BID], S[k.S_BEST_ASK]  # the touch the informed and the pressure see
        if not _informed_traders(ex, t, P, fair, f_idx, bb, ba, active, in_vi, true_flow, lot, dt_s):
            return STATUS_NEED_ROOM
        if not _momentum_traders(ex, t, P, last_sec_price, sec, continuous, true_flow, lot, dt_s):
            return STATUS_NEED_ROOM
        ok, program_net = _pressure(ex, t, epi, t_s, bb, ba, a_idx, program_net, true_flow, lot, dt_s)
        if not ok:
            return STATUS_NEED_ROOM
        # ---- the step's feed: one book (or indicative) row if anything happened
        if S[k.S_N_OUT] + n + 40 >= OUT.shape[0]:
            return STATUS_NEED_ROOM
        publishing = False
        for e in range(epi.shape[0]):
            if epi[e, EP_FLAG_T] >= 0 and epi[e, EP_FLAG_T] <= t_s < epi[e, EP_FLAG_T] + dt_s:
                publishing = True  # make sure a row carries the flag
        quiet_change = S[k.S_EMIT_BOOK] == 0 and (
            S[k.S_N_OUT] > rows_before or _top_of_book(S, L, n) != top_before
        )
        if quiet_change or publishing:
            phase = S[k.S_PHASE]
            if phase == k.PH_CONTINUOUS:
                k.emit_row(S, OUT, grid, L, t, k.EV_BOOK, 0, 0, 0, -1, 0, True)
            elif phase != k.PH_CLOSED and t >= S[k.S_T_INDICATIVE]:
                p, q = k.uncross_price(S, L, grid, k.previous_price(S))
                k.emit_row(
                    S,
                    OUT,
                    grid,
                    L,
                    t,
                    k.EV_INDICATIVE,
                    grid[p] if q > 0 else 0,
                    q,
                    0,
                    -1,
                    k.vi_status_now(S),
                    True,
                )
        # ---- investor flows are published only at the provisional times
        while n_pub < pub_us.shape[0] and pub_us[n_pub] <= t:
            published[:] = true_flow
            n_pub += 1
        # ---- VI bookkeeping: the cause of a new VI, the latent drift at its release
        while n_vi_seen < S[k.S_N_VI]:
            VI_CAUSE[n_vi_seen] = int(epi[active, EP_CAUSE]) if active >= 0 else 0
            VI_DRIFT[n_vi_seen] = np.nan
            n_vi_seen += 1
        if n_vi_seen > 0:
            r = n_vi_seen - 1
            if np.isnan(VI_DRIFT[r]) and V[r, k.V_RELEASE_TS] > 0 and V[r, k.V_AUCTION_PRICE] > 0:
                # what the latent plan says the next 5 minutes hold, from the auction price
                VI_DRIFT[r] = (
                    np.log(fair / V[r, k.V_AUCTION_PRICE]) + _plan(epi, t_s + 300.0) - _plan(epi, t_s)
                )
        # ---- overlay of the rows written this step
        for row in range(filled_rows, S[k.S_N_OUT]):
            OVL[row, OV_PROGRAM_NET] = program_net
            OVL[row, OV_INSTITUTION] = published[0]
            OVL[row, OV_FOREIGN] = published[1]
            OVL[row, OV_INDIVIDUAL] = published[2]
            news = 0
            disclosure = 0
            for e in range(epi.shape[0]):
                ft = epi[e, EP_FLAG_T]
                if ft >= 0 and ft <= (OUT[row, k.C_TS] - t_start_us) / 1e6 < ft + 1.0:
                    if int(epi[e, EP_CAUSE]) == CAUSE_DISCLOSURE:
                        disclosure = 1
                    else:
                        news = 1
            OVL[row, OV_NEWS] = news
            OVL[row, OV_DISCLOSURE] = disclosure
        filled_rows = S[k.S_N_OUT]
        t += STEP_US
    return STATUS_OK
