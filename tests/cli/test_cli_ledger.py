"""`allowance ledger open|status`: opened once, with an opening month; defaults from $ALLOWANCE_LEDGER."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import cli, ok, ok_json, user_error


def test_open_then_status(isolated: Path) -> None:
    led = isolated / "x" / "ledger.duckdb"
    out = ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led)).stdout
    assert out == f"opened {led} with opening month 2025-07\n"
    assert led.is_file()
    info = ok_json(cli("ledger", "status", "--ledger", led, "--json"))
    assert info == {"ledger": str(led), "opening_month": "2025-07", "entries": 0, "person_months_held": 0,
                    "net_fen": 0, "people": 0, "batches": {}}
    text = ok(cli("ledger", "status", "--ledger", led)).stdout
    assert "opening_month: 2025-07" in text


def test_open_json(isolated: Path) -> None:
    led = isolated / "l.duckdb"
    assert ok_json(cli("ledger", "open", "--opening-month", "2024-01", "--ledger", led, "--json")) == {
        "ledger": str(led), "opening_month": "2024-01"}


def test_second_opening_is_refused(isolated: Path) -> None:
    led = isolated / "l.duckdb"
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    user_error(cli("ledger", "open", "--opening-month", "2024-01", "--ledger", led), "already open", "2025-07")
    # … and the first opening month stands.
    assert ok_json(cli("ledger", "status", "--ledger", led, "--json"))["opening_month"] == "2025-07"


@pytest.mark.parametrize("month", ["2025-7", "2025-13", "202507", "next month", ""])
def test_open_malformed_month(isolated: Path, month: str) -> None:
    led = isolated / "l.duckdb"
    user_error(cli("ledger", "open", "--opening-month", month, "--ledger", led), "YYYY-MM")
    assert not led.exists()


def test_ledger_defaults_from_env(isolated: Path) -> None:
    led = isolated / "env" / "ledger.duckdb"
    env = {"ALLOWANCE_LEDGER": str(led)}
    ok(cli("ledger", "open", "--opening-month", "2025-07", env=env))
    assert led.is_file()
    assert not (isolated / "var").exists()  # not the built-in default
    assert ok_json(cli("ledger", "status", "--json", env=env))["ledger"] == str(led)
    user_error(cli("ledger", "open", "--opening-month", "2025-07", env=env), "already open")


def test_status_of_a_ledger_never_opened(isolated: Path) -> None:
    led = isolated / "none.duckdb"
    user_error(cli("ledger", "status", "--ledger", led), str(led), "ledger open")
    assert not led.exists()
