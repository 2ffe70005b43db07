"""bytescan.numbered (a batch's line ids, written by a kernel) against its definition, the
polars expression numbered_expr; and months.month_date_in against month_date_expr."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from allowance.bytescan import BLOCK, numbered, numbered_expr
from allowance.months import month_date_expr, month_date_in


def _expected(prefix: str, seq: pl.Series, digits: int) -> list[str | None]:
    return seq.to_frame("s").select(numbered_expr(prefix, pl.col("s"), digits)).to_series().to_list()


@settings(max_examples=60, deadline=None)
@example(prefix="000", values=[0], digits=10)  # a prefix shorter than a view's 4-byte head (found by hypothesis)
@given(
    prefix=st.text(min_size=0, max_size=24),
    values=st.lists(st.integers(min_value=-5, max_value=10**9 + 5) | st.none(), max_size=40),
    digits=st.integers(min_value=1, max_value=10),
)
def test_numbered_is_its_definition(prefix: str, values: list[int | None], digits: int) -> None:
    # Any prefix (non-ASCII, shorter than a view's 4-byte head, texts of 12 bytes or fewer kept
    # inline), any number (null, negative, wider than `digits`): the kernel where its layout
    # fits, the expression where not, and the same texts either way.
    seq = pl.Series("seq", values, dtype=pl.Int64)
    got = numbered(prefix, seq, digits)
    assert got.dtype == pl.String
    assert got.to_list() == _expected(prefix, seq, digits)


def test_numbered_over_several_blocks_on_two_threads() -> None:
    seq = pl.Series("seq", range(1, 2 * BLOCK + 7), dtype=pl.Int64)
    got = numbered("Q2025Q3-0538db71-", seq, 8)
    assert got.to_list() == _expected("Q2025Q3-0538db71-", seq, 8)
    assert got[0] == "Q2025Q3-0538db71-00000001"
    assert got[-1] == f"Q2025Q3-0538db71-{2 * BLOCK + 6:08d}"


def test_numbered_keeps_a_chunked_or_unsigned_column_right() -> None:
    seq = pl.concat([pl.Series("s", [3, 1], dtype=pl.UInt32), pl.Series("s", [99999999], dtype=pl.UInt32)],
                    rechunk=False)
    assert numbered("S2026-05-15-abcdef12-", seq, 8).to_list() == [
        "S2026-05-15-abcdef12-00000003", "S2026-05-15-abcdef12-00000001", "S2026-05-15-abcdef12-99999999"]


def test_month_date_in_is_month_date_expr_inside_the_window() -> None:
    first, last = 2024 * 12 + 10, 2026 * 12 + 2
    frame = pl.DataFrame({"m": list(range(first, last + 1)) * 2 + [None]}, schema={"m": pl.Int32})
    assert frame.select(month_date_in("m", first, last)).to_series().to_list() == \
        frame.select(month_date_expr("m")).to_series().to_list()


def test_month_date_in_refuses_a_month_outside_the_window() -> None:
    frame = pl.DataFrame({"m": [2025 * 12 + 6, 2025 * 12 + 9]}, schema={"m": pl.Int32})
    with pytest.raises(pl.exceptions.PolarsError):
        frame.select(month_date_in("m", 2025 * 12 + 6, 2025 * 12 + 8))
