"""Entitlement as runs (`entitlement_segments`) is the month-level entitlement (`person_months`).

The draft computes entitlement as runs of months with one amount, cut where an age band or a
rules version starts, and reads band amounts and the exit-month switch by position in small
tables. `person_months` is the plain month-by-month definition (SPEC §1, 四). Whatever the
registry and the window, the runs spelt out month by month must be exactly its rows, also when
the month of death or moving out is not paid.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import given
from hypothesis import strategies as st
from registry_strategies import PROPERTY, Drawn, month_index, registries

from allowance.entitlement import entitlement_segments, person_months
from allowance.registry import CLEAN_SCHEMA
from allowance.rules import DEFAULT_RULES_DIR, CitedBool, Rules, load

RULES = load(DEFAULT_RULES_DIR)
# The same versions, but the month of death or moving out is not paid from the 2024 notice on.
EXIT_UNPAID = Rules(
    [v if v.effective_from.year < 2024 else
     v.model_copy(update={"exit_month_paid": CitedBool(value=False, cite="test: exit month unpaid")})
     for v in RULES.versions]
)
# Windows inside, across and after the 2024-05 version start.
WINDOWS = [(dt.date(2023, 1, 1), dt.date(2025, 9, 1)), (dt.date(2024, 4, 1), dt.date(2024, 6, 1)),
           (dt.date(2025, 7, 1), dt.date(2025, 9, 1)), (dt.date(2025, 9, 1), dt.date(2025, 9, 1))]


@PROPERTY
@given(registries(), st.sampled_from(WINDOWS), st.sampled_from([RULES, EXIT_UNPAID]))
def test_runs_month_by_month_are_person_months(drawn: Drawn, window: tuple[dt.date, dt.date], rules: Rules) -> None:
    first, last = (month_index(d) for d in window)
    clean = pl.DataFrame(drawn.rows, schema=CLEAN_SCHEMA).with_row_index("pkey")
    runs = entitlement_segments(clean.lazy(), rules, first, last).collect()
    assert runs.select((pl.col("from_mi") >= first) & (pl.col("from_mi") <= pl.col("to_mi"))
                       & (pl.col("to_mi") <= last)).to_series().all()
    spelt = (
        runs.select("pkey", pl.int_ranges("from_mi", pl.col("to_mi") + 1, dtype=pl.Int32).alias("month_idx"),
                    "monthly_fen")
        .explode("month_idx")
        .sort("pkey", "month_idx")
    )
    months = person_months(clean.lazy(), rules, first, last).select("pkey", "month_idx", "monthly_fen").collect()
    assert spelt.equals(months.sort("pkey", "month_idx"))
