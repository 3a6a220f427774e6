from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from vicap.settings import Settings


def test_defaults_and_paths(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VICAP_DATA_DIR", raising=False)
    s = Settings()
    assert (
        s.data_dir == Path("data") and s.online_store.get_secret_value() == "sqlite" and s.ray_address is None
    )
    assert s.paths.vi_log == tmp_path / "data" / "raw" / "vi_log.parquet"
    assert s.paths.tick_partition("2024-03-05") == tmp_path / "data" / "raw" / "ticks" / "date=2024-03-05"
    assert s.paths.windows == tmp_path / "data" / "events" / "windows.parquet"


def test_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("VICAP_DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("VICAP_BROKERAGE_RATE", "0.00015")
    s = Settings()
    assert s.paths.root == tmp_path / "elsewhere" and s.brokerage_rate == 0.00015


def test_unknown_environment_key_is_an_error(monkeypatch):
    monkeypatch.setenv("VICAP_DATADIR", "/tmp/x")
    with pytest.raises(ValidationError, match=r"unknown setting.*VICAP_DATADIR"):
        Settings()


def test_unknown_dotenv_key_is_an_error(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("VICAP_BROKERAGE_RATE=0.0002\nVICAP_ONLINE_STOR=redis://x\n")
    with pytest.raises(ValidationError, match="vicap_online_stor"):
        Settings()
    (tmp_path / ".env").write_text("VICAP_BROKERAGE_RATE=0.0002\n")
    assert Settings().brokerage_rate == 0.0002


def test_bad_values_are_rejected(monkeypatch):
    monkeypatch.setenv("VICAP_BROKERAGE_RATE", "-1")
    with pytest.raises(ValidationError, match="brokerage_rate"):
        Settings()
    monkeypatch.delenv("VICAP_BROKERAGE_RATE")
    monkeypatch.setenv("VICAP_ONLINE_STORE", "postgres://db:5432")
    with pytest.raises(ValidationError, match="online_store"):
        Settings()
    monkeypatch.setenv("VICAP_ONLINE_STORE", "redis://10.0.0.5:6380/2")
    assert Settings().online_store.get_secret_value() == "redis://10.0.0.5:6380/2"
    monkeypatch.setenv("VICAP_ONLINE_STORE", "rediss://vicap:pw-123@cache:6380/1")
    assert "pw-123" not in repr(Settings()) and "pw-123" not in str(Settings().online_store)


def test_secrets_never_print(monkeypatch):
    monkeypatch.setenv("VICAP_ONLINE_STORE", "redis://vicap:very-secret-value@cache:6379/0")
    s = Settings()
    assert "very-secret-value" not in repr(s) and "very-secret-value" not in str(s.model_dump())
    assert s.online_store.get_secret_value().endswith("very-secret-value@cache:6379/0")


def test_every_setting_is_read_by_vicap():
    """A setting nothing reads is a promise the code does not keep (redis_url and require_redis
    name the Redis the tests and benchmarks use)."""
    import subprocess

    for name in Settings.model_fields:
        found = subprocess.run(
            [
                "grep",
                "-rlw",
                "--include=*.py",
                name,
                "market",
                "validation",
                "feature_repo",
                "vicap",
                "tests",
                "bench",
            ],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parents[2],
        ).stdout.split()
        assert [f for f in found if not f.endswith("vicap/settings.py")], f"{name}: read nowhere"
