"""A batch's lines from its pieces: the compiled pass gives exactly the polars group-by.

`batch.per_line` totals each line's pieces in one compiled pass (`_kernels.line_totals`);
`batch.per_line_grouped` is the same as a group-by over `seq`, the definition. Whatever the
pieces (several per line, months with no entitlement, reissues, top-ups, arrears, recoveries),
the two must be the same frame, row for row and type for type.
"""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from registry_strategies import PROPERTY

from allowance import batch
from allowance.batch import per_line, per_line_grouped

CURRENT_FROM = 105  # months before it are arrears
SCHEMA = {"pkey": pl.UInt32, "rec": pl.Boolean, "_o1": pl.Int32, "_o3": pl.Int64, "from_mi": pl.Int32,
          "to_mi": pl.Int32, "n": pl.Int64, "diff_fen": pl.Int64, "ent_fen": pl.Int64, "held_fen": pl.Int64,
          "district_part": pl.Int64, "reversed": pl.Boolean, "vbit": pl.Int64, "seq": pl.Int64}


@st.composite
def line_pieces(draw: st.DrawFn) -> pl.DataFrame:
    """Pieces in line order: each line one person's consecutive runs of months, of one sign."""
    rows = []
    for seq in range(1, draw(st.integers(1, 30)) + 1):
        rec = draw(st.booleans())
        month = draw(st.integers(100, 110))
        head = (seq * 7 % 13, rec, draw(st.integers(0, 15)), draw(st.integers(0, 10**17)))
        for _ in range(draw(st.integers(1, 4))):
            n = draw(st.integers(1, 3))
            ent = draw(st.sampled_from([0, 7500, 15000, 35000]))
            held = draw(st.sampled_from([0, 7500, 15000]))
            diff = -held if rec else draw(st.sampled_from([7500, 15000, 20000]))
            rows.append((*head, month, month + n - 1, n, diff, ent, held, draw(st.integers(-9000, 9000)),
                         draw(st.booleans()), draw(st.sampled_from([1, 2, 4])), seq))
            month += n + draw(st.integers(0, 2))
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


@settings(parent=PROPERTY, max_examples=150)
@given(line_pieces())
def test_the_compiled_pass_is_the_group_by(pieces: pl.DataFrame) -> None:
    got = per_line(pieces, CURRENT_FROM)
    assert got.height == pieces["seq"].n_unique()
    assert_frame_equal(got, per_line_grouped(pieces, CURRENT_FROM))


ONE_LINE = pl.DataFrame(
    [(3, False, 2, 11, 103, 103, 1, 7500, 0, 0, 3750, False, 1, 1),
     (3, False, 2, 11, 104, 105, 2, 15000, 0, 7500, 7500, True, 2, 1),
     (3, False, 2, 11, 106, 106, 1, 7500, 7500, 0, 3750, False, 2, 1)],
    schema=SCHEMA, orient="row")


def _no_fallback(*_: object) -> pl.DataFrame:
    raise AssertionError("per_line fell back to the group-by")


def test_first_stop_month_and_flags_of_a_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """One line of three pieces, worked by hand: the kernel's own fields, not just agreement."""
    monkeypatch.setattr(batch, "per_line_grouped", _no_fallback)  # the compiled pass is what answers
    row = per_line(ONE_LINE, CURRENT_FROM).row(0, named=True)
    assert (row["from_mi"], row["to_mi"], row["months"]) == (103, 106, 4)
    assert (row["amount_fen"], row["district_fen"]) == (45000, 15000)
    assert (row["any_reversed"], row["any_topup"], row["any_arrears"]) == (True, True, True)
    assert (row["ent_min"], row["ent_max"], row["vmask"], row["first_stop_mi"]) == (0, 7500, 3, 103)


@pytest.mark.parametrize("pieces", [
    pl.DataFrame([(1, False, 0, 5, 105, 105, 1, 7500, 7500, None, 3750, False, 1, 1)], schema=SCHEMA, orient="row"),
    ONE_LINE.with_columns(pl.col("from_mi") - 104),  # a negative month: -1 means "no stop month" to the kernel
    ONE_LINE.with_columns(pl.col("seq").cast(pl.Int32)),
], ids=["null", "negative month", "other type"])
def test_pieces_the_kernel_does_not_take_go_to_the_group_by(pieces: pl.DataFrame) -> None:
    got = per_line(pieces, CURRENT_FROM)
    assert_frame_equal(got, per_line_grouped(pieces, CURRENT_FROM))
