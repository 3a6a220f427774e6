"""``vicap live``'s guards: a real-money session needs its confirmation and shows what it would
trade with (the account masked), and option combinations that cannot work are refused with the
reason, before anything connects anywhere."""

from __future__ import annotations

from typer.testing import CliRunner

from vicap.cli import app

runner = CliRunner()
ACCOUNT = "12345678-01"


def _real(monkeypatch) -> None:
    monkeypatch.setenv("VICAP_KIS_PAPER", "false")
    monkeypatch.setenv("VICAP_KIS_ACCOUNT", ACCOUNT)
    monkeypatch.setenv("VICAP_KIS_APP_KEY", "real-app-key-0001")
    monkeypatch.setenv("VICAP_KIS_APP_SECRET", "real-app-secret-0001")


def test_kis_real_refuses_to_start_without_confirmation_and_shows_the_account_and_limits(
    monkeypatch, data_dir
):
    _real(monkeypatch)
    result = runner.invoke(app, ["live", "--source", "kis", "--broker", "kis-real"])
    assert result.exit_code == 2
    assert "--confirm-real" in result.output
    assert "****5678-01" in result.output and ACCOUNT not in result.output
    assert "max_order_notional" in result.output and "10,000,000" in result.output
    assert "real-app" not in result.output


def test_a_kis_account_on_a_replayed_day_is_refused(monkeypatch, data_dir):
    _real(monkeypatch)
    result = runner.invoke(app, ["live", "--broker", "kis-real", "--confirm-real"])
    assert result.exit_code == 2 and "a KIS account trades only on the KIS feed" in result.output


def test_kis_paper_refuses_a_real_account(monkeypatch, data_dir):
    _real(monkeypatch)
    result = runner.invoke(app, ["live", "--source", "kis", "--broker", "kis-paper"])
    assert result.exit_code == 2 and "needs a paper account" in result.output
