"""The market side of vicap, one sub-package per mechanism: ``krx`` (rules, schemas, time),
``exchange`` (matching engine), ``synthetic`` (generated market), ``vendor`` and ``kis`` (real
input), ``events`` (VI detection and panels). Imports point one way: krx <- exchange <- synthetic;
krx <- vendor, kis, events (``python ../shared/tools/check_layers.py``)."""
