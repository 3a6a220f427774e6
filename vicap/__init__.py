"""vicap: capture, learn and trade KRX Volatility Interruptions (VI, 변동성완화장치)."""

__version__ = "0.1.0"
