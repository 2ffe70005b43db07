"""A line's columns from its pieces: computed row by row for one-piece lines and grouped for the
rest (batch.per_line), they must equal grouping every line; and the line order of
batch.place_order must be that of a plain two-column sort."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from allowance.batch import per_line, place_order

PIECE = st.tuples(
    st.integers(0, 3),  # person
    st.booleans(),  # recovery
    st.integers(0, 5),  # month within the window
    st.integers(1, 3),  # months in the piece
    st.integers(-600_00, 600_00),  # diff_fen
    st.sampled_from([0, 75_00, 150_00, 600_00]),  # ent_fen
    st.sampled_from([0, 75_00]),  # held_fen
    st.booleans(),  # reversed
    st.sampled_from([1, 2]),  # version bit
)


def _line_pieces(rows: list[tuple[int, bool, int, int, int, int, int, bool, int]]) -> pl.DataFrame:
    f = pl.DataFrame(rows, schema=["pkey", "rec", "m", "n", "diff_fen", "ent_fen", "held_fen", "reversed", "vbit"],
                     orient="row")
    f = f.with_columns(
        pl.col("pkey").cast(pl.UInt32), pl.col("n").cast(pl.Int64), pl.col("vbit").cast(pl.Int64),
        from_mi=(pl.col("m") + 600).cast(pl.Int32), _o1=(pl.col("pkey") % 2).cast(pl.Int32),
        _o3=pl.col("pkey").cast(pl.Int64) * 7, district_part=pl.col("diff_fen") // 2,
    ).with_columns(to_mi=(pl.col("from_mi") + pl.col("n") - 1).cast(pl.Int32)).sort("rec", "pkey", "from_mi")
    return f.with_columns(
        seq=((pl.col("pkey") != pl.col("pkey").shift(1)) | (pl.col("rec") != pl.col("rec").shift(1)))
        .fill_null(True).cum_sum().cast(pl.Int64)
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(PIECE, min_size=1, max_size=30), st.integers(600, 606))
def test_one_piece_lines_equal_grouped_lines(rows: list[tuple[int, bool, int, int, int, int, int, bool, int]],
                                             current_from: int) -> None:
    pieces = _line_pieces(rows)
    fast = per_line(pieces, current_from)
    slow = per_line(pieces, current_from, grouped_only=True)
    assert fast.schema == slow.schema
    assert fast.to_dicts() == slow.to_dicts()
    assert fast["seq"].to_list() == list(range(1, pieces["seq"].max() + 1))


def test_a_quarter_of_single_pieces_and_band_crossers() -> None:
    """Many one-piece lines with a few multi-piece ones among them: merged back in line order."""
    rows = [(p, False, 0, 3, 150_00, 150_00, 0, False, 1) for p in range(0, 40, 2)]
    rows += [(3, False, 0, 1, 75_00, 75_00, 0, False, 1), (3, False, 1, 2, 150_00, 150_00, 0, False, 1),
             (2, True, 0, 3, -75_00, 0, 75_00, False, 2)]
    pieces = _line_pieces(rows)
    fast = per_line(pieces, 601)
    assert fast.to_dicts() == per_line(pieces, 601, grouped_only=True).to_dicts()
    band_crosser = fast.filter(pl.col("pkey") == 3)
    assert band_crosser.select("months", "amount_fen", "ent_min", "ent_max").row(0) == (3, 375_00, 75_00, 150_00)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 10**18)), min_size=1, max_size=50,
                unique_by=lambda t: t[1]))
def test_place_order_is_the_two_column_sort(rows: list[tuple[int, int]]) -> None:
    group = pl.Series([g for g, _ in rows], dtype=pl.Int32)
    key = pl.Series([k for _, k in rows], dtype=pl.Int64)
    expected = pl.DataFrame({"g": group, "k": key}).select(pl.arg_sort_by("g", "k")).to_series().to_numpy()
    assert np.array_equal(place_order(group, key), expected)
