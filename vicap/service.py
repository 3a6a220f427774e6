"""The model service as ``bentoml serve vicap.service:VICap`` (and ``vicap serve``) start it: the
settings (data root, online store, model, policy, token) read here, the service made by
:func:`serving.service.make_service`."""

from __future__ import annotations

from serving.decisions import DecisionService
from serving.service import make_service
from vicap.settings import get_settings


def open_decisions() -> DecisionService:
    s = get_settings()
    online_store = s.online_store.get_secret_value()
    return DecisionService(s.paths.feast, online_store, s.serve_model, s.serve_policy or None)


_settings = get_settings()
_token = _settings.service_token
VICap = make_service(open_decisions, _token.get_secret_value() if _token else None, _settings.serve_workers)
