"""Vendor tick files (Parquet, CSV in UTF-8 or CP949) into the tick dataset through a YAML column
mapping (``ingest``; shipped layouts under ``mappings/``). Reads ``market.krx`` only."""
