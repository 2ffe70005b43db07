"""`allowance fixtures registry`: a generated extract that the engine accepts."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from cli_helpers import cli, ok, ok_json, user_error

from allowance.constants import REGISTRY_COLUMNS


def test_registry_is_written(isolated: Path) -> None:
    f = isolated / "F.parquet"
    out = ok(cli("fixtures", "registry", "--people", "2000", "--seed", "1", "--as-of", "2025-07-01", "--out", f))
    assert out.stdout.startswith(f"wrote 2,000 rows to {f}")
    df = pl.read_parquet(f)
    assert df.height == 2000
    assert set(REGISTRY_COLUMNS) <= set(df.columns)


def test_same_seed_same_rows(isolated: Path) -> None:
    a, b, c = isolated / "a.parquet", isolated / "b.parquet", isolated / "c.parquet"
    for f, seed in ((a, "7"), (b, "7"), (c, "8")):
        ok(cli("fixtures", "registry", "--people", "500", "--seed", seed, "--as-of", "2025-07-01", "--out", f))
    assert pl.read_parquet(a).equals(pl.read_parquet(b))
    assert not pl.read_parquet(a).equals(pl.read_parquet(c))


def test_generated_registry_runs(isolated: Path) -> None:
    f = isolated / "F.parquet"
    led = isolated / "l.duckdb"
    ok(cli("fixtures", "registry", "--people", "2000", "--seed", "1", "--as-of", "2025-07-01", "--out", f))
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    res = ok_json(cli("run", "quarterly", "--quarter", "2025Q3", "--registry", f, "--as-of", "2025-07-01",
                      "--ledger", led, "--max-quarantine-share", "0.05", "--json"))
    reg = res["registry"]
    assert reg["rows_in"] == 2000
    assert reg["clean"] + reg["quarantined"] == 2000
    assert reg["quarantined"] > 0  # the generator plants broken rows on purpose
    assert res["lines"] > 0


def test_generated_registry_passes_the_default_threshold(isolated: Path) -> None:
    """The generator promises "about bad_share (default 0.2 %) of the rows" broken; the engine
    refuses above 0.5 % by default. A trial run on a default extract must not be refused."""
    f = isolated / "F.parquet"
    led = isolated / "l.duckdb"
    ok(cli("fixtures", "registry", "--people", "2000", "--seed", "1", "--as-of", "2025-07-01", "--out", f))
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    res = ok_json(cli("run", "quarterly", "--quarter", "2025Q3", "--registry", f, "--as-of", "2025-07-01",
                      "--ledger", led, "--json"))
    assert res["registry"]["quarantined"] <= 0.005 * 2000


def test_csv_output(isolated: Path) -> None:
    f = isolated / "F.csv"
    ok(cli("fixtures", "registry", "--people", "100", "--seed", "1", "--as-of", "2025-07-01", "--out", f))
    assert pl.read_csv(f, infer_schema=False).height == 100


def test_unknown_suffix(isolated: Path) -> None:
    f = isolated / "F.json"
    user_error(cli("fixtures", "registry", "--people", "10", "--as-of", "2025-07-01", "--out", f), ".parquet or .csv")
    assert not f.exists()


def test_malformed_as_of(isolated: Path) -> None:
    user_error(cli("fixtures", "registry", "--people", "10", "--as-of", "2025-13-01", "--out", isolated / "F.parquet"),
               "--as-of")


def test_an_out_that_cannot_be_written_is_one_line(isolated: Path) -> None:
    """A fifth audit: an --out under a file failed as an internal error (exit 1)."""
    blocker = isolated / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "registry.parquet"
    user_error(cli("fixtures", "registry", "--people", "100", "--out", out), str(out), "cannot write the registry")
