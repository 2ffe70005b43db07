"""The scheduled jobs (pipelines/): what they leave for staff."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from cli_helpers import write_sample
from typer.testing import CliRunner

from allowance.ledger import Ledger
from allowance.months import parse_month
from pipelines import nightly, quarterly


def _job(main: object, *args: str) -> dict[str, object]:
    app = typer.Typer()
    app.command()(main)  # type: ignore[arg-type]
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, (res.stdout, res.stderr)
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_quarterly_and_nightly_jobs_write_their_change_reports(tmp_path: Path) -> None:
    led, out = tmp_path / "l.duckdb", tmp_path / "out"
    Ledger.create(led, parse_month("2025-07")).close()
    reg = write_sample(tmp_path / "registry.parquet")
    q = _job(quarterly.main, "--registry", reg, "--quarter", "2025Q3", "--as-of", "2025-07-01",
             "--ledger", led, "--out", out, "--publish-as", "tester")
    assert q["ok"] and q["lines"] > 0  # type: ignore[operator]
    assert (out / "reports" / str(q["batch_id"]) / "summary.txt").is_file()
    assert "NEW_ENTRANT" in (out / "reports" / str(q["batch_id"]) / "summary.txt").read_text(encoding="utf-8")
    n = _job(nightly.main, "--registry", reg, "--as-of", "2025-08-15", "--ledger", led, "--out", out)
    assert n["ok"]
    assert (out / "reports" / str(n["batch_id"]) / "summary.txt").is_file()
