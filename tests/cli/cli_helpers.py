"""One way to call the CLI and one way to check an error (STYLE habits 6, 9)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from allowance.cli import app
from allowance.constants import EXIT_REFUSED
from allowance.testing import person, write_registry

runner = CliRunner()


def cli(*args: str | Path, env: Mapping[str, str | None] | None = None) -> Result:
    return runner.invoke(app, [str(a) for a in args], env=dict(env or {}), catch_exceptions=False)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    return result


def ok_json(result: Result) -> dict[str, Any]:
    """Exit 0 and stdout is exactly one JSON object."""
    ok(result)
    obj = json.loads(result.stdout)  # raises if anything but one JSON document is printed
    assert isinstance(obj, dict), result.stdout
    assert result.stdout.strip().count("\n") == 0, result.stdout
    return obj


def user_error(result: Result, *fragments: str, code: int = EXIT_REFUSED) -> str:
    """A user error: its exit code, nothing on stdout, exactly one `error:` line on stderr."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.stdout == "", result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error:"), line
    for f in fragments:
        assert f.lower() in line.lower(), (f, line)
    return line


def sample_rows(n: int = 30) -> list[dict[str, Any]]:
    """People of every band across two districts and both channels, plus some without a card."""
    rows = []
    for i in range(n):
        birth = dt.date(1920 + (i * 3) % 75, 1 + i % 12, 1 + i % 28)
        rows.append(person(birth, seq=i, district_code=("310101", "310115", "310104")[i % 3],
                           channel=(None, "senior_card", "social_security_card")[i % 3]))
    return rows


def write_sample(path: Path, n: int = 30) -> Path:
    return write_registry(sample_rows(n), path)


def published_sample(root: Path, ledger: str = "ledger.duckdb") -> tuple[Path, Path, str]:
    """A ledger opened at 2025-07 with the sample's 2025Q3 published to `root/out`: (ledger, out, batch id)."""
    led, out = root / ledger, root / "out"
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    reg = write_sample(root / "registry.parquet")
    bid = ok_json(cli("run", "quarterly", "--quarter", "2025Q3", "--registry", reg, "--as-of", "2025-07-01",
                      "--ledger", led, "--json"))["batch_id"]
    ok(cli("publish", bid, "--approved-by", "t", "--ledger", led, "--out", out))
    return led, out, bid


def tree_hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}

