"""Slack and Telegram alerts for the live executor: entries, exits, errors, feed gaps, the kill switch.

The executor (:mod:`serving.executor`) calls :meth:`Alerts.send` on its hot path and shows
:attr:`Alerts.stats` on the status page; the caller builds :class:`AlertConfig` from vicap settings.

What must hold:
- Off by default: with no notifier configured, ``send`` does nothing and no thread starts.
- ``send`` never blocks and never raises: it queues; one background thread posts with httpx.
- At most ``per_minute`` messages a minute (one window shared by the notifiers, so each gets at most
  that many); the rest are counted and the next message that goes out says "(N alerts suppressed)".
- No secret leaves: every value of ``secrets`` (plus the webhook URL and bot token) becomes "***" in
  the text before it is sent; failures are logged by notifier name and HTTP status or exception
  class only, and httpx's own request log (which prints the URL) is redacted the same way.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

log = logging.getLogger(__name__)

_WINDOW_S = 60.0
_QUEUE_MAX = 1000  # a backlog this deep means the receivers are gone: count the rest as suppressed
_STOP = None
_MAX_CHARS = 4000  # Telegram rejects a text over 4096 characters


class AlertKind(StrEnum):
    ENTRY = "entry"
    EXIT = "exit"
    ERROR = "error"
    FEED_GAP = "feed_gap"
    KILL_SWITCH = "kill_switch"
    SERVICE_DOWN = "service_down"
    INFO = "info"


class AlertConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    slack_webhook_url: SecretStr | None = None
    telegram_bot_token: SecretStr | None = None
    telegram_chat_id: str | None = None
    telegram_api_url: str = "https://api.telegram.org"
    per_minute: int = Field(20, ge=1)
    timeout_s: float = Field(5.0, gt=0)
    retries: int = Field(2, ge=0)  # extra tries on a 5xx, 429 or transport error
    retry_wait_s: float = Field(0.5, ge=0)  # first wait between tries; doubles each time

    @model_validator(mode="after")
    def _telegram_needs_both(self) -> AlertConfig:
        if (self.telegram_bot_token is None) != (self.telegram_chat_id is None):
            raise ValueError("telegram_bot_token and telegram_chat_id must be set together")
        return self

    @property
    def enabled(self) -> bool:
        return self.slack_webhook_url is not None or self.telegram_bot_token is not None


@dataclass(frozen=True, slots=True)
class AlertStats:
    sent: int = 0  # deliveries: one message to two notifiers counts two
    suppressed: int = 0  # messages over the rate limit or the queue bound
    failed: int = 0  # deliveries that still failed after the retries


@dataclass(frozen=True, slots=True)
class _Notifier:
    name: str
    url: str
    chat_id: str | None = None

    def payload(self, text: str) -> dict[str, str]:
        return {"text": text} if self.chat_id is None else {"chat_id": self.chat_id, "text": text}


class _Redact(logging.Filter):
    """Rewrites records on httpx's logger, which prints each request's URL (webhook, bot token)."""

    def __init__(self, redact: Callable[[str], str]):
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self._redact(record.getMessage()), ()
        return True


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    return isinstance(exc, httpx.TransportError)


class Alerts:
    """One per executor: ``send`` from any thread, read ``stats``, ``close`` at shutdown.

    ``secrets`` are the values never to send (KIS app key and secret, account number); ``clock``
    (seconds, monotonic) times the rate-limit window, injected by tests."""

    def __init__(
        self, config: AlertConfig, secrets: Iterable[str] = (), clock: Callable[[], float] = time.monotonic
    ):
        self.config = config
        self._clock = clock
        self._notifiers: list[_Notifier] = []
        own = []
        if config.slack_webhook_url is not None:
            own.append(config.slack_webhook_url.get_secret_value())
            self._notifiers.append(_Notifier("slack", own[-1]))
        if config.telegram_bot_token is not None:
            own.append(config.telegram_bot_token.get_secret_value())
            url = f"{config.telegram_api_url.rstrip('/')}/bot{own[-1]}/sendMessage"
            self._notifiers.append(_Notifier("telegram", url, config.telegram_chat_id))
        # longest first, so a secret that contains another is hidden whole
        self._secrets = sorted({s for s in (*secrets, *own) if s}, key=len, reverse=True)
        self._lock = threading.Lock()
        self._window: deque[float] = deque()
        self._pending = 0  # suppressed since the last message that went out
        self._sent = self._suppressed = self._failed = 0
        self._closed = not self._notifiers
        self._queue: queue.Queue = queue.Queue(maxsize=_QUEUE_MAX)
        self._thread: threading.Thread | None = None
        self._filter = _Redact(self.redact)
        if self._notifiers:
            logging.getLogger("httpx").addFilter(self._filter)
            self._thread = threading.Thread(target=self._run, name="vicap-alerts", daemon=True)
            self._thread.start()

    @property
    def enabled(self) -> bool:
        return bool(self._notifiers)

    @property
    def stats(self) -> AlertStats:
        with self._lock:
            return AlertStats(self._sent, self._suppressed, self._failed)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def send(self, kind: AlertKind, text: str) -> None:
        """Queue one alert; returns at once. Over the rate limit it is counted, not sent."""
        if self._closed:
            return
        try:
            with self._lock:
                now = self._clock()
                while self._window and now - self._window[0] >= _WINDOW_S:
                    self._window.popleft()
                if len(self._window) >= self.config.per_minute:
                    self._pending += 1
                    self._suppressed += 1
                    return
                note = f" ({self._pending} alerts suppressed)" if self._pending else ""
                try:
                    self._queue.put_nowait((AlertKind(kind), f"{text}{note}"))
                except queue.Full:
                    self._pending += 1
                    self._suppressed += 1
                    return
                self._window.append(now)
                self._pending = 0
        except Exception as exc:  # the hot path must never fail because of an alert
            log.warning("alert not queued: %s", type(exc).__name__)

    def close(self, timeout_s: float = 5.0) -> None:
        """Post what is queued (for up to ``timeout_s``), then stop the thread."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout_s
        with contextlib.suppress(queue.Full):  # a full queue after timeout_s: leave the daemon thread
            self._queue.put(_STOP, timeout=timeout_s)
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        logging.getLogger("httpx").removeFilter(self._filter)

    def _run(self) -> None:
        with httpx.Client(timeout=self.config.timeout_s) as client:
            while (item := self._queue.get()) is not _STOP:
                kind, text = item
                message = self.redact(f"[vicap {kind}] {text}")[:_MAX_CHARS]  # cut after redacting
                for notifier in self._notifiers:
                    ok = self._post(client, notifier, message)
                    with self._lock:
                        if ok:
                            self._sent += 1
                        else:
                            self._failed += 1

    def _post(self, client: httpx.Client, notifier: _Notifier, message: str) -> bool:
        retrying = Retrying(
            stop=stop_after_attempt(self.config.retries + 1),
            wait=wait_exponential(multiplier=self.config.retry_wait_s, max=10 * self.config.retry_wait_s),
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    client.post(notifier.url, json=notifier.payload(message)).raise_for_status()
        except httpx.HTTPStatusError as exc:  # the exception's text holds the URL: log the status only
            log.warning("alert to %s failed: HTTP %d", notifier.name, exc.response.status_code)
            return False
        except Exception as exc:
            log.warning("alert to %s failed: %s", notifier.name, type(exc).__name__)
            return False
        return True
