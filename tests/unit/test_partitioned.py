"""Bank files are the groups of a batch's lines, each in line order, whether or not a group's
lines lie together (outputs._partitioned: slices when they do, a partition when not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from allowance.outputs import _partitioned, _runs, funding_table, group_totals

ROWS = [("310101", "senior_card", 1), ("310101", "senior_card", 2), ("310101", "social_security_card", 3),
        ("310104", "senior_card", 4), ("310104", "senior_card", 5)]


def _files(df: pl.DataFrame, root: Path) -> dict[str, list[int]]:
    files: dict[str, dict[str, Any]] = {}
    _partitioned(df, ["district_code", "channel"], root, "payments", files)
    return {rel: pl.read_parquet(root / rel)["n"].to_list() for rel in files}


@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4], [3, 0, 2, 1, 4], [0, 3, 1, 4, 2]])
def test_each_file_holds_its_group_in_the_order_given(tmp_path: Path, order: list[int]) -> None:
    df = pl.DataFrame([ROWS[i] for i in order], schema=["district_code", "channel", "n"], orient="row")
    got = _files(df, tmp_path)
    want: dict[str, list[int]] = {}
    for d, c, n in (ROWS[i] for i in order):
        want.setdefault(f"payments/district_code={d}/channel={c}/part-0.parquet", []).append(n)
    assert got == want
    contiguous = order == [0, 1, 2, 3, 4]
    assert (_runs(df, ["district_code", "channel"]) is not None) == contiguous


@pytest.mark.parametrize("rows", [
    ROWS,
    [("310101", None, 7), ("310101", "senior_card", 1), ("310115", "senior_card", 2)],  # a null channel group
    [],
])
def test_group_totals_from_slices_are_the_group_by_s(rows: list[tuple[str, str | None, int]]) -> None:
    df = pl.DataFrame(rows, schema={"district_code": pl.String, "channel": pl.String, "n": pl.Int64}, orient="row"
                      ).with_columns(amount_fen=pl.col("n") * 7500, municipal_fen=pl.col("n") * 3750,
                                     district_fen=pl.col("n") * 3750)
    keys = ["district_code", "channel"]
    runs = _runs(df, keys) if df.height else None
    assert (runs is None) == (df.height == 0)
    by_slices, by_group = group_totals(df, keys, runs), group_totals(df, keys)
    assert by_slices.equals(by_group) and by_slices["lines"].sum() == df.height
    assert funding_table(by_slices).equals(funding_table(group_totals(df, ["district_code"])))
    assert funding_table(by_slices)["amount_fen"].sum() == df["amount_fen"].sum()
