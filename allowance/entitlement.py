"""Person-month entitlement (SPEC §1; notice 一, 二, 四) as polars expressions, no I/O.

A person is entitled for month m when, in m, they are at least the lowest band's age
(一 年满65周岁), hold Shanghai hukou on some day of m (一 本市户籍), are alive on some day of
m, and a rules version is in force. 四 "从老年人符合条件的当月开始，按月计算": the birthday
month already counts at the new age, the month of moving in is paid, and (engine rule
`exit_month_paid`, rules YAML) so are the months of death and of moving out.
"""

from __future__ import annotations

import polars as pl

from allowance.months import month_index, month_index_expr
from allowance.rules import MAX_LOOKUP_AGE, Rules, lookup_age_expr
from allowance.segments import sweep_diff

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


def exit_paid_by_month(rules: Rules, first: int, last: int) -> pl.Series:
    """Per month of [first, last], in order: is a month of death or moving out paid (engine rule
    `exit_month_paid`)."""
    return pl.Series("exit_paid", [rules.exit_month_paid(m) for m in range(first, last + 1)], dtype=pl.Boolean)


def exit_paid_table(rules: Rules, first: int, last: int) -> pl.LazyFrame:
    """exit_paid_by_month as a table by month_idx, to join person-months on."""
    return pl.DataFrame(
        [pl.Series("month_idx", range(first, last + 1), dtype=pl.Int32), exit_paid_by_month(rules, first, last)]
    ).lazy()


def person_months(registry: pl.LazyFrame, rules: Rules, first: int, last: int) -> pl.LazyFrame:
    """Every (person, month) in [first, last] the person is entitled to, with its amount.

    Columns: pkey, month_idx, monthly_fen, version_id, band_min_age. Raises RulesError if a
    month of the window has no rules version (SPEC §1.4), before any row is computed.
    """
    lookup = rules.age_lookup(first, last).lazy()
    exit_paid = exit_paid_table(rules, first, last)
    spans = person_spans(registry, rules, first, last)
    exploded = (
        spans.with_columns(month_idx=pl.int_ranges("start_mi", pl.col("end_mi") + 1, dtype=pl.Int32))
        .explode("month_idx")
        .with_columns(age=lookup_age_expr(age_in_month_expr(pl.col("birth_mi"), pl.col("month_idx"))))
    )
    is_exit_month = (pl.col("month_idx") == pl.col("death_mi")) | (pl.col("month_idx") == pl.col("out_mi"))
    return (
        exploded.join(exit_paid, on="month_idx", how="left")
        .filter(~is_exit_month.fill_null(False) | pl.col("exit_paid"))
        .join(lookup, on=["month_idx", "age"], how="inner")
        .select(list(PERSON_MONTH_SCHEMA))
    )


def entitlement_segments(registry: pl.LazyFrame, rules: Rules, first: int, last: int) -> pl.LazyFrame:
    """The same entitlement as `person_months`, as runs of months with one amount each.

    Columns: pkey, from_mi, to_mi, monthly_fen, sorted by person and month. A run's version is
    rules.at(from_mi): callers take it from there (carrying its text for 5 million runs cost
    0.1 s). Within a person's entitled span the amount can only change where the age crosses a
    band's lower bound or a new rules version starts, so the runs are cut at exactly those
    months — no month-by-month explosion. A run never straddles two versions. `person_months`
    is the month-level reference this must always agree with
    (tests/property/test_entitlement_runs.py).
    """
    # The band amounts and the exit switch as arrays by month (and age), read by position: two
    # hash joins of 5 million runs against these small tables took 0.1-0.15 s.
    fen_at = _fen_by_month_and_age(rules, first, last)
    exit_paid = exit_paid_by_month(rules, first, last)
    ages = sorted({b.min_age for m in range(first, last + 1) for b in rules.at(m).bands})
    version_starts = sorted(
        {month_of for v in rules.versions if first < (month_of := month_index(v.effective_from)) <= last}
    )

    spans = (
        person_spans(registry, rules, first, last)
        .with_columns(
            # person_spans keeps only spans inside the window: end_mi is one of its months
            end_mi=pl.when(
                ((pl.col("end_mi") == pl.col("death_mi")) | (pl.col("end_mi") == pl.col("out_mi"))).fill_null(False)
                & ~pl.lit(exit_paid).gather(pl.col("end_mi") - first)
            )
            .then(pl.col("end_mi") - 1)
            .otherwise(pl.col("end_mi"))
        )
        .filter(pl.col("start_mi") <= pl.col("end_mi"))
        .select("pkey", "birth_mi", "start_mi", "end_mi")
    )
    cut_cols = [(pl.col("birth_mi") + 12 * a).cast(pl.Int32).alias(f"age{a}") for a in ages]
    cut_cols += [pl.lit(v, pl.Int32).alias(f"ver{v}") for v in version_starts]
    cuts = (
        spans.with_columns(cut_cols)
        .unpivot(index=["pkey", "birth_mi", "start_mi", "end_mi"], value_name="from_mi")
        .filter((pl.col("from_mi") > pl.col("start_mi")) & (pl.col("from_mi") <= pl.col("end_mi")))
        .select("pkey", "birth_mi", "end_mi", "from_mi")
    )
    starts = spans.select("pkey", "birth_mi", "end_mi", pl.col("start_mi").alias("from_mi"))
    same_next = pl.col("pkey").shift(-1) == pl.col("pkey")
    dup_prev = (pl.col("pkey").shift(1) == pl.col("pkey")) & (pl.col("from_mi").shift(1) == pl.col("from_mi"))
    return (
        pl.concat([starts, cuts])
        # (pkey, from_mi) as one int64 (a month index is small and not negative): a one-column
        # sort instead of a two-column one.
        .sort(pl.col("pkey").cast(pl.Int64) * (1 << 32) + pl.col("from_mi"))
        .filter(~dup_prev.fill_null(False))
        .with_columns(
            to_mi=pl.when(same_next.fill_null(False))
            .then(pl.col("from_mi").shift(-1) - 1)
            .otherwise(pl.col("end_mi"))
            .cast(pl.Int32),
        )
        # a run starts inside the window, at an age of at least the lowest band (a null: no band)
        .with_columns(monthly_fen=pl.lit(fen_at).gather(
            (pl.col("from_mi") - first) * (MAX_LOOKUP_AGE + 1)
            + lookup_age_expr(age_in_month_expr(pl.col("birth_mi"), pl.col("from_mi")))))
        .filter(pl.col("monthly_fen").is_not_null())
        .select("pkey", "from_mi", "to_mi", "monthly_fen")
    )


def _fen_by_month_and_age(rules: Rules, first: int, last: int) -> pl.Series:
    """rules.age_lookup's monthly_fen at row (month - first) * (MAX_LOOKUP_AGE + 1) + age, for
    every month of [first, last] and age 0 .. MAX_LOOKUP_AGE; null where no band pays."""
    lookup = rules.age_lookup(first, last)
    at = (lookup["month_idx"] - first).cast(pl.Int64) * (MAX_LOOKUP_AGE + 1) + lookup["age"]
    return pl.repeat(None, (last - first + 1) * (MAX_LOOKUP_AGE + 1), dtype=pl.Int64, eager=True).scatter(
        at, lookup["monthly_fen"])


def without_blocked(segs: pl.LazyFrame, blocked: pl.LazyFrame) -> pl.LazyFrame:
    """Entitlement runs minus the months a review hold or rejection covers (SPEC §1.5, 五).

    `blocked` has pkey, from_mi, to_mi (to_mi null = open-ended). A run partly covered is
    cut: the covered months are removed, the rest stays.
    """
    b = blocked.with_columns(to_mi=pl.col("to_mi").fill_null(10**6))
    # Subtract with the sweep: held = the entitlement amount over the covered months.
    covered = (
        segs.join(b.rename({"from_mi": "b_from", "to_mi": "b_to"}), on="pkey", how="inner")
        .with_columns(
            from_mi=pl.max_horizontal("from_mi", "b_from"),
            to_mi=pl.min_horizontal("to_mi", "b_to"),
        )
        .filter(pl.col("from_mi") <= pl.col("to_mi"))
        .select("pkey", "from_mi", "to_mi", pl.col("monthly_fen").alias("fen"))
        .unique()
    )
    kept = (
        sweep_diff(segs.select("pkey", "from_mi", "to_mi", "monthly_fen"), covered, key="pkey")
        .filter(pl.col("diff_fen") > 0)
        .select("pkey", "from_mi", "to_mi", pl.col("diff_fen").alias("monthly_fen"))
    )
    return kept
