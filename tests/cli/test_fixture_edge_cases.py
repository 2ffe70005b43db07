"""The hand-made extract in fixtures/ through the CLI: every person's 2025Q3 is pinned."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from cli_helpers import cli, ok, ok_json

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "edge_cases.csv"

EXPECTED_FEN = {  # name → fen for Jul+Aug+Sep 2025 (SPEC §1)
    "turns65_aug": 15000,  # 65 in August: Aug, Sep
    "turns70_sep": 30000,  # 7500 + 7500 + 15000
    "band80": 54000,
    "band90": 105000,  # 90 in July
    "centenarian": 180000,
    "moved_in_jun": 45000,
    "luwan_birthplace": 45000,  # ID from a retired Shanghai code; paid by the hukou district
    "legacy15": 45000,  # 15-digit ID upgraded
}


def test_edge_case_fixture_quarter(tmp_path: Path) -> None:
    led, out = tmp_path / "l.duckdb", tmp_path / "out"
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    res = ok_json(cli("run", "quarterly", "--quarter", "2025Q3", "--registry", FIXTURE, "--as-of", "2025-07-01",
                      "--ledger", led, "--out", out, "--max-quarantine-share", "0.1", "--json"))
    assert (res["lines"], res["amount_fen"]) == (8, sum(EXPECTED_FEN.values()))
    assert res["registry"]["quarantine_by_reason"] == {"ID_CHECKSUM": 1}
    assert res["registry"]["legacy_ids_upgraded"] == 1
    assert res["no_card"] == {"people": 1, "amount_fen": 54000}
    pub = ok_json(cli("publish", res["batch_id"], "--approved-by", "tester", "--ledger", led, "--out", out, "--json"))
    pay = pl.read_parquet(Path(pub["out_dir"]) / "payments" / "**" / "*.parquet", hive_partitioning=False)
    assert dict(pay.select("name", "amount_fen").iter_rows()) == EXPECTED_FEN
    legacy = pay.filter(pl.col("name") == "legacy15")["person_id"][0]
    assert legacy.startswith("11010119500101321") and len(legacy) == 18  # 110101500101321 upgraded
    assert pay.filter(pl.col("name") == "luwan_birthplace")["district_code"][0] == "310101"
