"""The sequence view: the per-second panel up to a decision as fixed-length channels."""

from __future__ import annotations

import numpy as np

from feature_repo.features import calc
from feature_repo.features.inputs import EventInfo, rows_where
from feature_repo.features.spec import EOK, SEQUENCE_LENGTH
from market import krx

SEQUENCE_CHANNELS = {
    "seq_ret": "log(close / trigger price)",
    "seq_volume": "log1p shares traded",
    "seq_flow": "(buy - sell) / (buy + sell + 1) aggressor volume",
    "seq_imbalance_l5": "5-level book imbalance (0 when no book)",
    "seq_spread_ticks": "quoted spread in ticks (0 when not quoted)",
    "seq_indicative": "log(indicative price / trigger price) during the auction, else 0",
    "seq_program": "program net buy change, 억원",
    "seq_phase": "0 before the trigger, 1 auction, 2 release second, 3 after",
    "seq_mask": "1 for a panel second, 0 for left padding",
}


def sequence_row(panel: dict[str, np.ndarray], info: EventInfo, k: int) -> dict[str, np.ndarray]:
    """The per-second panel up to decision ``k`` as fixed-length float32 channels (left-padded)."""
    seen = calc.tail(rows_where(panel, panel["since_release_s"] <= k), SEQUENCE_LENGTH)
    trig = float(info.trigger_price)
    tick = krx.tick_size(info.trigger_price, info.market, info.day)
    close = calc.filled_close(seen, trig)
    buy, sell = seen["buy_volume"], seen["sell_volume"]
    in_auction = (seen["offset_s"] >= 0) & (seen["since_release_s"] < 0)
    shown = in_auction & (np.nan_to_num(seen["indicative_price"]) > 0)
    indicative = np.where(shown, seen["indicative_price"], trig)
    phase = np.select(
        [seen["offset_s"] < 0, in_auction, seen["since_release_s"] == 0], [0.0, 1.0, 2.0], default=3.0
    )
    channels = {
        "seq_ret": np.log(close / trig),
        "seq_volume": np.log1p(seen["volume"]),
        "seq_flow": (buy - sell) / (buy + sell + 1.0),
        "seq_imbalance_l5": np.nan_to_num(seen["imbalance_l5"]),
        "seq_spread_ticks": np.nan_to_num(seen["spread"] / tick),
        "seq_indicative": np.log(indicative / trig),
        "seq_program": np.nan_to_num(seen["program_net_buy_change"]) * trig / EOK,
        "seq_phase": phase,
        "seq_mask": np.ones(len(close)),
    }
    pad = SEQUENCE_LENGTH - len(close)
    return {name: np.pad(v, (pad, 0)).astype(np.float32) for name, v in channels.items()}
