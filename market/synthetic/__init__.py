"""The synthetic KRX market: participants and latent causes (``kernels``) driving the exchange
engine, whole datasets (``generator.generate``, processes or Ray), and the realism check
(``realism``) with its HTML report (``report``). Reads ``market.krx`` and ``market.exchange``."""
