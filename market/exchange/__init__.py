"""The KRX matching engine for one stock and one day: ``kernels`` (numba: order book, call-auction
uncross, VI state machine) under ``engine.Exchange`` (its Python face), and ``random_flow``, a
random order stream for tests and benchmarks. Reads the rules of ``market.krx`` only."""
