"""`allowance bank-returns import` (SPEC §8): what the bank sends back, as staff see it."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from cli_helpers import cli, ok, ok_json, user_error, write_sample

from allowance.ledger import Ledger
from allowance.money import yuan


def _published(isolated: Path) -> tuple[Path, list[str]]:
    led, out = isolated / "ledger.duckdb", isolated / "out"
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    reg = write_sample(isolated / "registry.parquet")
    bid = ok_json(cli("run", "quarterly", "--quarter", "2025Q3", "--registry", reg, "--as-of", "2025-07-01",
                      "--ledger", led, "--json"))["batch_id"]
    ok(cli("publish", bid, "--approved-by", "t", "--ledger", led, "--out", out))
    with Ledger.use(led, read_only=True) as lg:
        ids = lg.part(bid, "lines").sort("line_id")["line_id"].head(2).to_list()
    return led, ids


def test_a_return_file_is_imported_once_and_says_what_it_reversed(isolated: Path) -> None:
    led, (paid, failed) = _published(isolated)
    with Ledger.use(led, read_only=True) as lg:
        (fen,) = lg.run("select sum(fen * (to_mi - from_mi + 1)) from batch_pieces where line_id = ?", [failed])[0]
    f = isolated / "returns.csv"
    pl.DataFrame({"line_id": [paid, failed], "status": ["PAID", "FAILED"], "reason": [None, "account closed"],
                  "settled_at": ["2025-07-16", "2025-07-16"]}).write_csv(f)
    text = ok(cli("bank-returns", "import", f, "--ledger", led)).stdout
    assert text == (f"{f}: 2 rows, 2 new (1 paid, 1 failed, {yuan(fen)} yuan reversed; the next "
                    "run re-issues what is still due), 0 already recorded\n"), text
    again = ok_json(cli("bank-returns", "import", f, "--ledger", led, "--json"))
    assert (again["new"], again["already_recorded"], again["reversed_fen"]) == (0, 2, 0), again


def test_an_unknown_line_id_is_one_line_and_nothing_is_imported(isolated: Path) -> None:
    led, (paid, _) = _published(isolated)
    f = isolated / "returns.csv"
    pl.DataFrame({"line_id": [paid, "Q2025Q3-nosuch-00000001"], "status": ["PAID", "PAID"]}).write_csv(f)
    user_error(cli("bank-returns", "import", f, "--ledger", led), "unknown or unpublished line id",
               "Q2025Q3-nosuch-00000001", "nothing imported")
    with Ledger.use(led, read_only=True) as lg:
        assert lg.run("select count(*) from bank_returns") == [(0,)]
