"""vicap's one typed settings object: ``VICAP_*`` environment variables and an optional ``.env``.

An unknown ``VICAP_*`` key is an error (a typo must not silently fall back to a default).
Secrets are ``SecretStr``: they print as ``**********`` and never reach a log.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from market.krx import DEFAULT_BROKERAGE_RATE

ENV_PREFIX = "VICAP_"


class UnknownSetting(ValueError):
    pass


class DataPaths:
    """The data contracts of architecture.md under one data root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.raw = root / "raw"
        self.ticks = self.raw / "ticks"
        self.instruments = self.raw / "instruments.parquet"
        self.vi_log = self.raw / "vi_log.parquet"
        self.quarantine = root / "quarantine"
        self.events = root / "events" / "events.parquet"
        self.windows = root / "events" / "windows.parquet"
        self.features = root / "features"
        self.labels = root / "labels"
        self.feast = root / "feast"
        self.reports = root / "reports"
        self.bench_reports = self.reports / "bench"
        self.journal = root / "journal"

    def tick_partition(self, day: str) -> Path:
        return self.ticks / f"date={day}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="forbid", frozen=True
    )

    data_dir: Path = Field(Path("data"), description="data root (VICAP_DATA_DIR)")
    online_store: SecretStr = Field(
        SecretStr("sqlite"),
        description="'sqlite' (embedded) or redis[s]://[user:password@]host:port[/db][?cluster=true]; "
        "a secret, as it may hold a password",
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis for the production online store")

    @field_validator("online_store")
    @classmethod
    def _online_store_kind(cls, value: SecretStr) -> SecretStr:
        if not re.fullmatch(r"sqlite|rediss?://\S+", value.get_secret_value()):
            raise ValueError("expected 'sqlite' or a redis:// or rediss:// URL")
        return value

    require_redis: bool = Field(False, description="CI: a Redis test must run, not skip")
    ray_address: str | None = Field(
        None,
        description="Ray cluster for generate and validate when --ray-address is not given; None: processes",
    )
    brokerage_rate: float = Field(DEFAULT_BROKERAGE_RATE, ge=0, lt=0.01, description="per side, fraction")

    # the model service (serving/service.py): `vicap serve` and plain `bentoml serve` read these
    serve_model: str = Field("vicap-lightgbm", description="registered model answering /predict")
    serve_policy: str | None = Field("vicap-ppo", description="registered policy answering /act; '' for none")
    serve_host: str = Field("127.0.0.1", description="the service binds here (never all interfaces unasked)")
    serve_port: int = Field(3000, ge=1, le=65535)
    serve_workers: int = Field(1, ge=1, le=32, description="service worker processes (each loads the model)")
    service_token: SecretStr | None = Field(
        None, description="when set, every request but /healthz needs 'Authorization: Bearer <token>'"
    )

    # KIS Open API (market/kis/client.py); credentials only from the environment
    kis_app_key: SecretStr | None = Field(None, description="KIS appkey")
    kis_app_secret: SecretStr | None = Field(None, description="KIS appsecret")
    kis_account: SecretStr | None = Field(None, description="account 'CANO-ACNT_PRDT_CD', e.g. 12345678-01")
    kis_paper: bool = Field(True, description="paper-trading (모의투자) account: VTTC tr_ids, paper hosts")
    kis_rest_url: str | None = Field(None, description="REST base URL; None: KIS's host for the account kind")
    kis_ws_url: str | None = Field(None, description="WebSocket URL; None: KIS's host for the account kind")
    kis_token_cache: Path = Field(
        Path.home() / ".cache" / "vicap", description="folder of the 0600 KIS token cache"
    )

    # the live executor (serving/executor.py): alerts and the status page; secrets from the environment
    slack_webhook_url: SecretStr | None = Field(None, description="Slack incoming-webhook URL for alerts")
    telegram_bot_token: SecretStr | None = Field(None, description="Telegram bot token for alerts")
    telegram_chat_id: str | None = Field(None, description="Telegram chat the alerts go to")
    telegram_api_url: str = Field("https://api.telegram.org", description="Telegram Bot API base URL")
    alerts_per_minute: int = Field(20, ge=1, description="alert messages a minute, at most, per notifier")
    status_host: str = Field("127.0.0.1", description="the live status page binds here")
    status_port: int = Field(8765, ge=0, le=65535, description="the live status page's port (0: off)")
    status_token: SecretStr | None = Field(
        None, description="bearer token of the status page's actions (the kill switch); unset: no actions"
    )

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_environment(cls, values: object) -> object:
        known = {ENV_PREFIX + name.upper() for name in cls.model_fields}
        unknown = sorted(k for k in os.environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in known)
        if unknown:
            raise UnknownSetting(
                f"unknown setting(s) in the environment: {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return values

    @cached_property
    def paths(self) -> DataPaths:
        return DataPaths(self.data_dir.resolve())


def get_settings(**overrides: object) -> Settings:
    return Settings(**overrides)
