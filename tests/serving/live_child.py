"""The live executor as its own process, for the kill -9 test (tests/serving/test_live_kis.py):
``python tests/serving/live_child.py BEGIN_US T0 SPEED STOP_US STOCKS_FILE`` runs ``vicap live
--source kis --broker kis-paper --strategy buy-and-hold`` (the same :func:`vicap.live_cmd.run_session`)
against the loopback fake KIS named by the ``VICAP_KIS_*`` variables. The only thing the command
line cannot give it is the fake's replay clock: ``BEGIN_US + (monotonic() - T0) * SPEED`` (the
monotonic clock is the machine's, shared by the test and this process)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from vicap.live_cmd import LiveOptions, run_session
from vicap.settings import get_settings


def main() -> None:
    begin_us, t0, speed, stop_us = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])

    def clock() -> int:
        return begin_us + max(0, int((time.monotonic() - t0) * speed * 1e6))

    options = LiveOptions(
        source="kis", broker="kis-paper", strategy="buy-and-hold", stocks_file=Path(sys.argv[5]),
        stop_us=stop_us, status_port=0,
    )  # fmt: skip
    asyncio.run(run_session(get_settings(), options, clock_us=clock))


if __name__ == "__main__":
    main()
