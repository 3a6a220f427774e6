"""The KIS Open API: its real-time wire format in one place (``formats``), recordings of the feed
into the tick dataset (``ingest``) and a dataset written back as a recording (``export``). The live
client and the recorder join here. Reads ``market.krx`` only."""
