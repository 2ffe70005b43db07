"""Person-month entitlement (SPEC §1; notice 一, 二, 四) as polars expressions, no I/O.

A person is entitled for month m when, in m, they are at least the lowest band's age
(一 年满65周岁), hold Shanghai hukou on some day of m (一 本市户籍), are alive on some day of
m, and a rules version is in force. 四 "从老年人符合条件的当月开始，按月计算": the birthday
month already counts at the new age, the month of moving in is paid, and (engine rule
`exit_month_paid`, rules YAML) so are the months of death and of moving out.
"""

from __future__ import annotations

import polars as pl

from allowance.months import month_index_expr
from allowance.rules import Rules

PERSON_MONTH_SCHEMA = {
    "pkey": pl.UInt32,
    "month_idx": pl.Int32,
    "monthly_fen": pl.Int64,
    "version_id": pl.String,
    "band_min_age": pl.Int32,
}


def age_in_month_expr(birth_mi: pl.Expr, month_idx: pl.Expr) -> pl.Expr:
    """SPEC §1: (m.year - b.year) - (1 if m.month < b.month), i.e. floor((m - b) / 12) in months."""
    return ((month_idx - birth_mi) // 12).cast(pl.Int32)


def person_spans(registry: pl.LazyFrame, rules: Rules, first: int, last: int) -> pl.LazyFrame:
    """Per person, the first and last month (indexes) that could be paid inside [first, last].

    Expects the clean registry with a `pkey` column. Start: the month of turning the lowest
    band's age, the month hukou began, the window's start. End: the month of death or
    moving out (both included here; the exit switch is applied per month), the window's end.
    """
    birth_mi = month_index_expr("birth_date")
    return registry.select(
        "pkey",
        birth_mi.alias("birth_mi"),
        pl.max_horizontal(
            pl.lit(first, pl.Int32),
            birth_mi + rules.min_age() * 12,
            month_index_expr("hukou_since").fill_null(first),
        ).alias("start_mi"),
        pl.min_horizontal(
            pl.lit(last, pl.Int32),
            month_index_expr("death_date").fill_null(last),
            month_index_expr("hukou_out_date").fill_null(last),
        ).alias("end_mi"),
        month_index_expr("death_date").alias("death_mi"),
        month_index_expr("hukou_out_date").alias("out_mi"),
    ).filter(pl.col("start_mi") <= pl.col("end_mi"))


def person_months(registry: pl.LazyFrame, rules: Rules, first: int, last: int) -> pl.LazyFrame:
    """Every (person, month) in [first, last] the person is entitled to, with its amount.

    Columns: pkey, month_idx, monthly_fen, version_id, band_min_age. Raises RulesError if a
    month of the window has no rules version (SPEC §1.4), before any row is computed.
    """
    lookup = rules.age_lookup(first, last).lazy()
    exit_paid = pl.DataFrame(
        {
            "month_idx": list(range(first, last + 1)),
            "exit_paid": [rules.exit_month_paid(m) for m in range(first, last + 1)],
        },
        schema={"month_idx": pl.Int32, "exit_paid": pl.Boolean},
    ).lazy()
    spans = person_spans(registry, rules, first, last)
    exploded = (
        spans.with_columns(month_idx=pl.int_ranges("start_mi", pl.col("end_mi") + 1, dtype=pl.Int32))
        .explode("month_idx")
        .with_columns(age=age_in_month_expr(pl.col("birth_mi"), pl.col("month_idx")))
    )
    is_exit_month = (pl.col("month_idx") == pl.col("death_mi")) | (pl.col("month_idx") == pl.col("out_mi"))
    return (
        exploded.join(exit_paid, on="month_idx", how="left")
        .filter(~is_exit_month.fill_null(False) | pl.col("exit_paid"))
        .join(lookup, on=["month_idx", "age"], how="inner")
        .select(list(PERSON_MONTH_SCHEMA))
    )


def without_decisions(person_months_lf: pl.LazyFrame, blocked: pl.LazyFrame) -> pl.LazyFrame:
    """Drop person-months a review hold or rejection covers (SPEC §1.5, 五 资格审定).

    `blocked` has pkey, from_mi, to_mi (inclusive; to_mi may be null = open-ended).
    """
    covered = (
        person_months_lf.select("pkey", "month_idx")
        .join(blocked, on="pkey", how="inner")
        .filter(
            (pl.col("month_idx") >= pl.col("from_mi"))
            & (pl.col("to_mi").is_null() | (pl.col("month_idx") <= pl.col("to_mi")))
        )
        .select("pkey", "month_idx")
        .unique()
    )
    return person_months_lf.join(covered, on=["pkey", "month_idx"], how="anti")
