"""The model service over HTTP (BentoML): ``POST /predict``, ``POST /act``, ``GET /metadata`` and
BentoML's own ``GET /healthz`` (it asks :meth:`DecisionService.healthy`).

The service is made by :func:`make_service` from a loader of its :class:`DecisionService`, so the
settings stay in ``vicap`` (the composition root, ``vicap/service.py``, which ``bentoml serve``
and ``vicap serve`` both load). A bad payload is a 400 (BentoML validates the pydantic request), an
unknown VI or decision a 404, as is /act without a policy (BentoML hides the message of a 5xx), a
missing or wrong bearer token a 401: never a 500 or a traceback (BentoML still logs one for each
refused request).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable

import bentoml
from bentoml.exceptions import NotFound
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from serving.decisions import DecisionService, NoPolicy, UnknownDecision
from serving.schemas import Action, ActRequest, DecisionKey, Metadata, Prediction

SERVICE_NAME = "vicap"
OPEN_PATHS = ("/healthz", "/livez", "/readyz")  # probes answer without the token
REQUEST_TIMEOUT_S = 10


class BearerToken:
    """ASGI middleware: every HTTP request but the probes carries ``Authorization: Bearer <token>``.
    The token is compared in constant time and never echoed."""

    def __init__(self, app, token: str) -> None:
        self.app, self.token = app, token.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, given = header.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token):
            return await self.app(scope, receive, send)
        body = json.dumps({"error": "missing or wrong bearer token (Authorization: Bearer <token>)"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class VICapAPI:
    """The service's endpoints; :func:`make_service` gives it its loader."""

    load: Callable[[], DecisionService]

    def __init__(self) -> None:
        self.decisions = type(self).load()

    def __is_alive__(self) -> bool:  # BentoML's /healthz and /livez
        return self.decisions.healthy()

    @bentoml.api(route="/predict", input_spec=DecisionKey)
    def predict(self, event_id: str, decision_offset: int) -> Prediction:
        try:
            return self.decisions.predict(DecisionKey(event_id=event_id, decision_offset=decision_offset))
        except UnknownDecision as exc:
            raise NotFound(str(exc)) from None

    @bentoml.api(route="/act", input_spec=ActRequest)
    def act(
        self,
        event_id: str,
        decision_offset: int,
        start_price: float,
        last_price: float,
        step_s: int | None = None,
        holding: bool = False,
        entry_price: float = 0.0,
    ) -> Action:
        request = ActRequest(
            event_id=event_id, decision_offset=decision_offset, start_price=start_price,
            last_price=last_price, step_s=step_s, holding=holding, entry_price=entry_price,
        )  # fmt: skip
        try:
            return self.decisions.act(request)
        except (UnknownDecision, NoPolicy) as exc:
            raise NotFound(str(exc)) from None


async def _metadata(request: Request) -> JSONResponse:
    service = bentoml.get_current_service()
    return JSONResponse(service.decisions.metadata().model_dump())


def make_service(load: Callable[[], DecisionService], token: str | None = None, workers: int = 1):
    """The BentoML service answering with what ``load()`` opens (in each worker, at start)."""
    inner = type("VICap", (VICapAPI,), {"load": staticmethod(load), "__module__": VICapAPI.__module__})
    svc = bentoml.service(name=SERVICE_NAME, traffic={"timeout": REQUEST_TIMEOUT_S}, workers=workers)(inner)
    svc.mount_asgi_app(Starlette(routes=[Route("/metadata", _metadata, methods=["GET"])]), path="/")
    if token:
        svc.add_asgi_middleware(BearerToken, token=token)
    return svc


__all__ = ["Metadata", "make_service"]
