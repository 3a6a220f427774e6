"""Trading VIs on paper: the KRX execution model (``execution``: latency, book walking, queues,
call auctions, costs) over recorded stock-days (``tape``), the one strategy interface shared with
live trading (``strategy``) and the strategies (``strategies``), the backtester (``engine``) over a
data root's events (``data``), its measures (``metrics``) and report (``report``)."""
