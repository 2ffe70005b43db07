"""batch.matched (an unordered join, its matches written back by row) must be a left join's column."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allowance.batch import matched


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-5, 30), max_size=60),
       st.lists(st.tuples(st.integers(-5, 30), st.integers(0, 1000)), max_size=40, unique_by=lambda t: t[0]))
def test_matched_is_the_left_joins_column(left_keys: list[int], right_rows: list[tuple[int, int]]) -> None:
    left = pl.DataFrame({"_k": left_keys, "fen": range(len(left_keys))}, schema={"_k": pl.Int64, "fen": pl.Int64})
    right = pl.DataFrame({"_k": [k for k, _ in right_rows], "pkey": [v for _, v in right_rows]},
                         schema={"_k": pl.Int64, "pkey": pl.UInt32})
    expected = left.join(right, on="_k", how="left", maintain_order="left")["pkey"]
    got = matched(left, right, "_k", "pkey")
    assert got.dtype == pl.UInt32
    assert got.to_list() == expected.to_list()


def test_matched_refuses_a_key_repeated_on_the_right() -> None:
    left = pl.DataFrame({"_k": [1, 2]})
    right = pl.DataFrame({"_k": [2, 2], "pkey": [0, 1]})
    with pytest.raises(ValueError, match="repeated"):
        matched(left, right, "_k", "pkey")
