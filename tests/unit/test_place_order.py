"""The line order of batch.place_order (two cheap sorts) must be that of a plain two-column sort."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from allowance.batch import place_order


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 10**18)), min_size=1, max_size=50,
                unique_by=lambda t: t[1]))
def test_place_order_is_the_two_column_sort(rows: list[tuple[int, int]]) -> None:
    group = pl.Series([g for g, _ in rows], dtype=pl.Int32)
    key = pl.Series([k for _, k in rows], dtype=pl.Int64)
    expected = pl.DataFrame({"g": group, "k": key}).select(pl.arg_sort_by("g", "k")).to_series().to_numpy()
    assert np.array_equal(place_order(group, key), expected)
