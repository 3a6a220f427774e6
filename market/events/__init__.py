"""VI events: the streaming detector (``detector``, batch and live alike), the event table and its
agreement with the exchange's VI log (``table``), and 1-second panels around each VI (``panels``).
Reads ``market.krx`` only."""
