"""`allowance batches list|show`: what batches exist and what is in one."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import cli, ok, ok_json, user_error, write_sample


def setup_two_batches(isolated: Path) -> tuple[Path, str, str]:
    led = isolated / "ledger.duckdb"
    reg = write_sample(isolated / "registry.parquet")
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    run = ["run", "quarterly", "--quarter", "2025Q3", "--registry", str(reg), "--as-of", "2025-07-01",
           "--ledger", str(led), "--json"]
    first = ok_json(cli(*run))["batch_id"]
    ok(cli("publish", first, "--approved-by", "李四", "--ledger", led, "--out", isolated / "out"))
    second = ok_json(cli(*run))["batch_id"]
    return led, first, second


def test_list(isolated: Path) -> None:
    led, first, second = setup_two_batches(isolated)
    listed = ok_json(cli("batches", "list", "--ledger", led, "--json"))["batches"]
    by_id = {b["batch_id"]: b for b in listed}
    assert set(by_id) == {first, second}
    assert by_id[first]["status"] == "published" and by_id[first]["approved_by"] == "李四"
    assert by_id[second]["status"] == "draft" and by_id[second]["lines"] == 0
    text = ok(cli("batches", "list", "--ledger", led)).stdout
    lines = text.splitlines()
    assert len(lines) == 2
    assert any(first in ln and "published" in ln and "李四" in ln for ln in lines)
    assert any(second in ln and "draft" in ln for ln in lines)


def test_list_empty_ledger(isolated: Path) -> None:
    led = isolated / "l.duckdb"
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    assert ok_json(cli("batches", "list", "--ledger", led, "--json")) == {"batches": []}
    assert ok(cli("batches", "list", "--ledger", led)).stdout == ""


def test_show(isolated: Path) -> None:
    led, first, _ = setup_two_batches(isolated)
    b = ok_json(cli("batches", "show", first, "--ledger", led, "--json"))
    assert b["batch_id"] == first
    assert (b["kind"], b["quarter"], b["status"]) == ("quarterly", "2025Q3", "published")
    assert b["lines"] > 0 and b["amount_fen"] > 0
    assert b["summary"]["payments"] == {"lines": b["lines"], "amount_fen": b["amount_fen"]}
    assert "manifest" not in b
    assert (b["first_month"], b["last_month"]) == ("2025-07", "2025-09")  # not the ledger's month index (an audit)
    text = ok(cli("batches", "show", first, "--ledger", led)).stdout
    assert f"batch_id: {first}" in text
    assert "status: published" in text and "first_month: 2025-07" in text


def test_show_unknown_batch(isolated: Path) -> None:
    led, _, _ = setup_two_batches(isolated)
    user_error(cli("batches", "show", "nope", "--ledger", led), "unknown batch", "'nope'", "batches list")


def test_unopened_ledger(isolated: Path) -> None:
    led = isolated / "never.duckdb"
    user_error(cli("batches", "list", "--ledger", led), "ledger open")
    user_error(cli("batches", "show", "X", "--ledger", led), "ledger open")


def test_ledger_status_after_publication(isolated: Path) -> None:
    led, first, _ = setup_two_batches(isolated)
    paid = ok_json(cli("batches", "show", first, "--ledger", led, "--json"))
    st = ok_json(cli("ledger", "status", "--ledger", led, "--json"))
    assert st["net_fen"] == paid["amount_fen"]
    assert st["people"] == paid["lines"]
    assert st["entries"] > 0
    assert st["batches"] == {"draft": 1, "published": 1}
    text = ok(cli("ledger", "status", "--ledger", led)).stdout
    assert "batches: draft 1, published 1" in text and "refunds_reported: people 0, fen 0" in text, text


def test_write_off_without_a_reason_is_one_line(tmp_path: Path) -> None:
    led = tmp_path / "l.duckdb"
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    res = cli("recoveries", "write-off", "X-00000001", "--reason", "  ", "--ledger", led)
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == ["error: --reason must say why the recovery is written off"]


def test_a_misspelt_recovery_state_is_one_line(tmp_path: Path) -> None:
    """An audit: `recoveries list --state bogus` listed nothing and exited 0."""
    led = tmp_path / "l.duckdb"
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    user_error(cli("recoveries", "list", "--state", "bogus", "--ledger", led), "--state 'bogus'",
               "open, recovered, written_off, cancelled")
    assert ok_json(cli("recoveries", "list", "--state", "cancelled", "--ledger", led, "--json"))["lines"] == 0
