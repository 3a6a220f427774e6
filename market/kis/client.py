"""The KIS Open API REST client (krx-market-rules.md, "KIS Open API"): the access token, the
WebSocket approval key and VI status; cash orders and the order inquiry sit on top of it in
market/kis/orders.py. Used by the recorder (VI-status polls, the approval key) and later by the
live executor's KIS broker.

Layered as pykrx is: :meth:`KisRest.call` is the one raw call (rate limiter, retries, token
renewal), the public methods shape requests and replies. What must hold:
- a token is asked for at most once a minute (KIS answers EGW00133 otherwise) and is reused from a
  0600 cache file, named by a hash of the app key, until shortly before it expires;
- EGW00201 (too many requests) is retried with backoff; EGW00123/EGW00121 (expired/invalid token)
  renews the token and retries the call once;
- an order is never sent twice: see :meth:`market.kis.orders.KisOrders.order_cash`;
- secrets (app key and secret, account, token, approval key) never reach a log, an exception
  message or a repr: they are held as :class:`pydantic.SecretStr` and only put into headers.

The clocks are injectable (``sleep``, ``now``: wall seconds; ``market_now_us``: the exchange's
clock, which a replay of a past day runs apart from the wall) so tests need not wait out minutes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from market import krx

log = logging.getLogger(__name__)
# httpx logs every request URL at INFO, and the order inquiry's URL carries the account number
for _noisy in ("httpx", "httpcore"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

REAL_REST, PAPER_REST = (
    "https://openapi.koreainvestment.com:9443",
    "https://openapivts.koreainvestment.com:29443",
)
REAL_WS, PAPER_WS = "ws://ops.koreainvestment.com:21000", "ws://ops.koreainvestment.com:31000"
TOKEN_PATH, APPROVAL_PATH = "/oauth2/tokenP", "/oauth2/Approval"
VI_STATUS_PATH = "/uapi/domestic-stock/v1/quotations/inquire-vi-status"
VI_STATUS_TR = "FHPST01390000"  # 변동성완화장치(VI) 현황
RATE_LIMITED = "EGW00201"  # 초당 거래건수를 초과하였습니다
TOKEN_EXPIRED, TOKEN_INVALID = "EGW00123", "EGW00121"
TOKEN_TOO_SOON = "EGW00133"  # 접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)
MORE_PAGES = ("M", "F")  # response tr_cont: F first page, M middle (more follow); D/E: the last


class KisConfig(BaseModel):
    """What the client needs; vicap builds it from Settings (market/kis reads no settings)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    app_key: SecretStr
    app_secret: SecretStr
    account: SecretStr | None = None  # 'CANO-ACNT_PRDT_CD', e.g. 12345678-01
    paper: bool = True
    rest_url: str | None = None
    ws_url: str | None = None
    token_cache: Path | None = Field(None, description="folder of the token cache; None: no cache")
    min_interval_s: float | None = Field(
        None, description="spacing of REST calls; None: 50 ms real, 500 ms paper"
    )
    timeout_s: float = 10.0
    order_timeout_s: float = 5.0
    retries: int = 5  # attempts on EGW00201 and dropped connections (orders excepted)
    backoff_s: float = 0.2  # first retry wait, doubling, with jitter
    token_wait_s: float = 61.0  # EGW00133: wait out the minute
    token_margin_s: float = 600.0  # a cached token is renewed this long before it expires

    @property
    def rest(self) -> str:
        return self.rest_url or (PAPER_REST if self.paper else REAL_REST)

    @property
    def ws(self) -> str:
        return self.ws_url or (PAPER_WS if self.paper else REAL_WS)

    @property
    def interval_s(self) -> float:
        return self.min_interval_s if self.min_interval_s is not None else (0.5 if self.paper else 0.05)


class KisError(RuntimeError):
    """A KIS error reply: the message names the call, the HTTP status and KIS's code and text,
    never a secret."""

    def __init__(self, what: str, status: int, code: str, text: str) -> None:
        super().__init__(f"{what}: HTTP {status} {code} {text}".strip())
        self.status, self.code = status, code


def _retryable(exc: BaseException) -> bool:
    return (isinstance(exc, KisError) and exc.code == RATE_LIMITED) or isinstance(exc, httpx.TransportError)


def _error(what: str, response: httpx.Response) -> KisError | None:
    """The KIS error in ``response``, or None when it is a success."""
    try:
        body = response.json()
    except json.JSONDecodeError:
        body = {}
    code = str(body.get("msg_cd") or body.get("error_code") or "")
    text = str(body.get("msg1") or body.get("error_description") or "")
    if response.status_code == 200 and body.get("rt_cd", "0") == "0":
        return None
    return KisError(what, response.status_code, code, text)


class KisRest:
    """The REST half of the KIS connection; use as ``async with KisRest(config) as kis``."""

    def __init__(
        self,
        config: KisConfig,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], float] = time.time,
        market_now_us: Callable[[], int] | None = None,
    ) -> None:
        self.config = config
        self.sleep, self._now = sleep, now
        self.market_now_us = market_now_us or (lambda: int(time.time() * 1e6))
        self._http = httpx.AsyncClient(base_url=config.rest, timeout=config.timeout_s)
        self._token: SecretStr | None = None
        self._token_expires = 0.0
        self._token_issued = -1e18
        self._token_lock = asyncio.Lock()
        self._pace_lock = asyncio.Lock()
        self._last_call = -1e18

    def __repr__(self) -> str:
        return f"KisRest({self.config.rest!r}, paper={self.config.paper})"

    async def __aenter__(self) -> KisRest:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- tokens ------------------------------------------------------------------------------

    def _cache_file(self) -> Path | None:
        if self.config.token_cache is None:
            return None
        digest = hashlib.sha256(self.config.app_key.get_secret_value().encode()).hexdigest()[:16]
        return self.config.token_cache / f"kis-token-{digest}.json"

    def _read_cache(self) -> None:
        path = self._cache_file()
        if self._token is not None or path is None or not path.exists():
            return
        try:
            saved = json.loads(path.read_text())
            self._token = SecretStr(saved["access_token"])
            self._token_expires, self._token_issued = float(saved["expires_at"]), float(saved["issued_at"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("token cache %s unreadable: asking KIS for a new token", path.name)

    def _write_cache(self) -> None:
        path = self._cache_file()
        if path is None or self._token is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(
            {
                "access_token": self._token.get_secret_value(),
                "expires_at": self._token_expires,
                "issued_at": self._token_issued,
            }
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # only the owner reads it
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(path, 0o600)

    async def token(self, *, renew: bool = False) -> SecretStr:
        """The access token: cached while valid; a new one at most once a minute."""
        async with self._token_lock:
            self._read_cache()
            fresh = self._token is not None and self._now() < self._token_expires - self.config.token_margin_s
            if fresh and not renew:
                return self._token  # type: ignore[return-value]
            for _ in range(3):
                since = self._now() - self._token_issued
                if since < 60:  # KIS issues one token a minute (EGW00133): wait, do not ask
                    await self.sleep(60 - since)
                try:
                    return await self._new_token()
                except KisError as exc:
                    if exc.code != TOKEN_TOO_SOON:
                        raise
                    log.warning("KIS refused a new token within a minute (EGW00133): waiting")
                    await self.sleep(self.config.token_wait_s)
            raise KisError("token", 403, TOKEN_TOO_SOON, "refused three times")

    async def _credentials_post(self, what: str, path: str, secret_name: str) -> dict:
        """tokenP and Approval: the app key and secret in the body (the secret's name differs)."""
        body = {
            "grant_type": "client_credentials",
            "appkey": self.config.app_key.get_secret_value(),
            secret_name: self.config.app_secret.get_secret_value(),
        }
        response = await self._paced(lambda: self._http.post(path, json=body))
        if error := _error(what, response):
            raise error
        return response.json()

    async def _new_token(self) -> SecretStr:
        reply = await self._credentials_post("token", TOKEN_PATH, "appsecret")
        self._token = SecretStr(reply["access_token"])
        self._token_issued = self._now()
        self._token_expires = self._token_issued + float(reply.get("expires_in", 86_400))
        self._write_cache()
        log.info("new KIS access token, valid %.0f s", self._token_expires - self._token_issued)
        return self._token

    async def approval_key(self) -> SecretStr:
        """A WebSocket approval key (웹소켓 접속키)."""
        reply = await self._credentials_post("approval key", APPROVAL_PATH, "secretkey")
        return SecretStr(reply["approval_key"])

    # -- the raw call ------------------------------------------------------------------------

    async def _paced(self, send: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
        """``send()`` no sooner than the configured spacing after the previous call."""
        async with self._pace_lock:
            wait = self._last_call + self.config.interval_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_call = time.monotonic()
        return await send()

    async def _headers(self, tr_id: str, tr_cont: str = "") -> dict[str, str]:
        token = await self.token()
        return {
            "content-type": "application/json; charset=utf-8",
            "authorization": f"Bearer {token.get_secret_value()}",
            "appkey": self.config.app_key.get_secret_value(),
            "appsecret": self.config.app_secret.get_secret_value(),
            "tr_id": tr_id,
            "tr_cont": tr_cont,
            "custtype": "P",  # 개인 (a personal account)
        }

    async def call(
        self,
        what: str,
        method: str,
        path: str,
        tr_id: str,
        *,
        params: dict | None = None,
        body: dict | None = None,
        tr_cont: str = "",
        retries: int | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """One API call: paced, retried on EGW00201 and dropped connections with backoff, the
        token renewed once on EGW00123/EGW00121."""
        attempts = AsyncRetrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(retries or self.config.retries),
            wait=wait_exponential_jitter(initial=self.config.backoff_s, max=10 * self.config.backoff_s),
            sleep=self.sleep,
            reraise=True,
        )
        renewed = False
        async for attempt in attempts:
            with attempt:
                while True:
                    headers = await self._headers(tr_id, tr_cont)
                    response = await self._paced(
                        lambda h=headers: self._http.request(
                            method,
                            path,
                            params=params,
                            json=body,
                            headers=h,
                            timeout=timeout or httpx.USE_CLIENT_DEFAULT,
                        )
                    )
                    error = _error(what, response)
                    if error and error.code in (TOKEN_EXPIRED, TOKEN_INVALID) and not renewed:
                        log.warning("%s: token %s, renewing it once", what, error.code)
                        renewed = True
                        await self.token(renew=True)
                        continue
                    if error:
                        if error.code == RATE_LIMITED:
                            log.warning("%s: rate limited (EGW00201), backing off", what)
                        raise error
                    return response
        raise AssertionError("not reached: tenacity re-raises the last error")

    # -- quotations --------------------------------------------------------------------------

    async def vi_status(self, day: dt.date | None = None, stock: str = "", kind: str = "0") -> list[dict]:
        """FHPST01390000 rows (newest first), every page; ``kind``: 0 all, 1 static, 2 dynamic,
        3 both (FID_RANK_SORT_CLS_CODE)."""
        params = {
            "FID_COND_SCR_DIV_CODE": "20139",  # 화면번호 0139
            "FID_DIV_CLS_CODE": "0",  # 0 all, 1 up, 2 down
            "FID_INPUT_ISCD": stock,
            "FID_MRKT_CLS_CODE": "0",  # 0 all markets
            "FID_INPUT_DATE_1": (day or krx.from_us(self.market_now_us()).date()).strftime("%Y%m%d"),
            "FID_RANK_SORT_CLS_CODE": kind,
            "FID_TRGT_CLS_CODE": "",
            "FID_TRGT_EXLS_CLS_CODE": "",
        }
        rows, tr_cont = [], ""
        while True:
            response = await self.call(
                "VI status", "GET", VI_STATUS_PATH, VI_STATUS_TR, params=params, tr_cont=tr_cont
            )
            rows += response.json().get("output") or []
            if response.headers.get("tr_cont", "") not in MORE_PAGES:
                return rows
            tr_cont = "N"  # 다음 조회
