"""Runs of months ("segments": key, from_mi, to_mi, fen per month) and the sweep over them.

A segment [from, to] at f fen is the step function +f at `from`, −f at `to + 1`. Sorting the
steps of many segments by (key, month) and taking a running sum gives, between consecutive
step months, the total fen per month: that is how the ledger nets its journal and how a run
subtracts the ledger from the entitlement, exactly, without one row per person-month.

Because every key's steps sum to zero, one running sum over the whole sorted frame restarts
at zero at each key: no per-group window is needed.
"""

from __future__ import annotations

import polars as pl

from allowance.months import month_date_expr


def net_segments(segs: pl.LazyFrame, key: str) -> pl.LazyFrame:
    """Canonical net of possibly overlapping signed segments: maximal runs, zero runs dropped.

    `key` names an integer person column (the ledger nets on the ID's int64 key).

    Segments are sorted by (key, from); a key whose consecutive segments never overlap has no
    overlap at all (sorted by start, any overlap shows between neighbours), and its net is its
    segments, zero ones dropped and touching ones of the same fen merged. Only keys with an
    overlap (a top-up, a recovery, a reversal) are swept step by step. At a quarter nearly
    nobody overlaps: the new months come after the held ones (1.5 s → 0.7 s at 9 million segments).
    """
    rows = by_key_then_month(segs.select(key, "from_mi", "to_mi", "fen").collect(), key, "from_mi")
    overlap = rows.select(
        ((pl.col(key) == pl.col(key).shift(1)) & (pl.col("from_mi") <= pl.col("to_mi").shift(1))).fill_null(False)
    ).to_series()
    mixed = rows.filter(overlap)[key].unique().implode()
    plain = rows.lazy().filter(~pl.col(key).is_in(mixed) & (pl.col("fen") != 0))
    swept = _swept(rows.filter(pl.col(key).is_in(mixed)), key)
    # Each key's rows are all in one part, in order: merging touching runs needs no global sort.
    return merge_adjacent(pl.concat([plain, swept]), key)


def _swept(segs: pl.DataFrame, key: str) -> pl.LazyFrame:
    """The sweep: steps (+fen at from, −fen after to) by (key, month), summed; nonzero runs."""
    steps = pl.concat(
        [
            segs.select(key, pl.col("from_mi").alias("mi"), pl.col("fen").alias("d")),
            segs.select(key, (pl.col("to_mi") + 1).alias("mi"), (-pl.col("fen")).alias("d")),
        ]
    )
    return (
        by_key_then_month(steps, key).lazy()
        .with_columns(
            c=pl.col("d").cum_sum(),
            nxt=pl.col("mi").shift(-1),
            same=(pl.col(key).shift(-1) == pl.col(key)).fill_null(False),
        )
        .filter(pl.col("same") & (pl.col("nxt") > pl.col("mi")) & (pl.col("c") != 0))
        .select(key, pl.col("mi").alias("from_mi"), (pl.col("nxt") - 1).alias("to_mi"), pl.col("c").alias("fen"))
    )


def by_key_then_month(rows: pl.DataFrame, key: str, month: str = "mi") -> pl.DataFrame:
    """The rows ordered by (key, month), stably (rows with equal keys and months keep their order).

    Polars' sort of the two integer columns. On the Xeon of the first rounds numpy's lexsort and
    a gather were faster (1.1 s against 2.9 s at 18 million steps); on this AMD EPYC numpy sorts
    int64 4-5 times slower: a fresh quarter's 4.5 million pieces took 0.33-0.43 s by lexsort and
    gather, 0.18-0.19 s this way, and shuffled keys 1.1 s against 0.38 s (seventeenth round)."""
    return rows.sort(key, month, maintain_order=True)


def merge_adjacent(segs: pl.LazyFrame, key: str) -> pl.LazyFrame:
    """Join consecutive runs of one key that touch and carry the same fen (input sorted by key, from)."""
    new_run = (
        (pl.col(key) != pl.col(key).shift(1))
        | (pl.col("fen") != pl.col("fen").shift(1))
        | (pl.col("from_mi") != pl.col("to_mi").shift(1) + 1)
    ).fill_null(True)
    marked = segs.with_columns(_start=new_run).with_columns(_last=pl.col("_start").shift(-1).fill_null(True))
    starts = marked.filter(pl.col("_start")).select(key, "from_mi", "fen")
    lasts = marked.filter(pl.col("_last")).select("to_mi")
    return pl.concat([starts, lasts], how="horizontal").select(
        key, pl.col("from_mi").cast(pl.Int32), pl.col("to_mi").cast(pl.Int32), pl.col("fen").cast(pl.Int64)
    )


def sweep_diff(ent: pl.LazyFrame, held: pl.LazyFrame, key: str = "pkey") -> pl.LazyFrame:
    """Where entitlement ≠ holdings: key, from_mi, to_mi, ent_fen, held_fen, diff_fen (per month).

    `ent` has key, from_mi, to_mi, monthly_fen; `held` has key, from_mi, to_mi, fen. Both must
    already be restricted to the window. Pieces are cut at every step of either side.
    """
    steps = pl.concat(
        [
            ent.select(key, pl.col("from_mi").alias("mi"), pl.col("monthly_fen").alias("de"),
                       pl.lit(0, pl.Int64).alias("dh")),
            ent.select(key, (pl.col("to_mi") + 1).alias("mi"), (-pl.col("monthly_fen")).alias("de"),
                       pl.lit(0, pl.Int64).alias("dh")),
            held.select(key, pl.col("from_mi").alias("mi"), pl.lit(0, pl.Int64).alias("de"),
                        pl.col("fen").alias("dh")),
            held.select(key, (pl.col("to_mi") + 1).alias("mi"), pl.lit(0, pl.Int64).alias("de"),
                        (-pl.col("fen")).alias("dh")),
        ]
    )
    return (
        steps.sort(key, "mi")
        .with_columns(
            ent_fen=pl.col("de").cum_sum(),
            held_fen=pl.col("dh").cum_sum(),
            nxt=pl.col("mi").shift(-1),
            same=(pl.col(key).shift(-1) == pl.col(key)).fill_null(False),
        )
        .filter(pl.col("same") & (pl.col("nxt") > pl.col("mi")) & (pl.col("ent_fen") != pl.col("held_fen")))
        .select(
            key,
            pl.col("mi").cast(pl.Int32).alias("from_mi"),
            (pl.col("nxt") - 1).cast(pl.Int32).alias("to_mi"),
            "ent_fen",
            "held_fen",
            (pl.col("ent_fen") - pl.col("held_fen")).alias("diff_fen"),
        )
    )


def clip(segs: pl.LazyFrame, first: int, last: int) -> pl.LazyFrame:
    """Segments restricted to months first..last."""
    return (
        segs.with_columns(
            from_mi=pl.max_horizontal(pl.col("from_mi"), pl.lit(first, pl.Int32)),
            to_mi=pl.min_horizontal(pl.col("to_mi"), pl.lit(last, pl.Int32)),
        )
        .filter(pl.col("from_mi") <= pl.col("to_mi"))
    )


def months_as_runs(months: pl.LazyFrame, by: str) -> pl.LazyFrame:
    """Rows of a month each (`month_idx`, ascending within each `by`) as runs of consecutive
    months of one `by`: from_mi, to_mi, and every other column's first value. For small lists
    (a run of consecutive months has one month index less its place among its `by`'s months)."""
    return (months.with_columns(_part=pl.col("month_idx") - pl.col("month_idx").cum_count().over(by))
            .group_by(by, "_part").agg(pl.all().exclude("month_idx", "from_mi", "to_mi").first(),
                                       from_mi=pl.col("month_idx").min(), to_mi=pl.col("month_idx").max())
            .drop("_part"))


def explode_months(segs: pl.LazyFrame) -> pl.LazyFrame:
    """One row per month of each segment (`month_idx`), for tests and small lists."""
    return segs.with_columns(month_idx=pl.int_ranges("from_mi", pl.col("to_mi") + 1, dtype=pl.Int32)).explode(
        "month_idx"
    )


def line_periods(line_rows: pl.DataFrame, line_pieces: pl.DataFrame) -> pl.Series:
    """Each line's months as text where they are not every month from its first to its last
    (`2025-07,2025-10..2025-12`), null where they are (nearly every line): SPEC §6 gives a line a
    period and a count of months, and one line per person per batch; a line paying July and
    October to December (August and September paid before, or a quarter paid between two failed
    ones re-issued together) read as a second payment of the months between (audits 20A, 20C).
    Built from the few such lines' pieces (`seq`, in line order, by month within a line)."""
    gapped = line_rows.filter(pl.col("months") != pl.col("to_mi") - pl.col("from_mi") + 1)["seq"]
    column = pl.repeat(None, line_rows.height, dtype=pl.String, eager=True)
    if gapped.len() == 0:
        return column.alias("periods")
    runs = (
        line_pieces.filter(pl.col("seq").is_in(gapped.implode())).select("seq", "from_mi", "to_mi")
        .with_columns(run=((pl.col("seq") != pl.col("seq").shift(1))
                           | (pl.col("from_mi") != pl.col("to_mi").shift(1) + 1)).fill_null(True).cum_sum())
        .group_by("run", maintain_order=True).agg(pl.col("seq").first(), pl.col("from_mi").min(), pl.col("to_mi").max())
        .with_columns(month_date_expr(c).dt.to_string("%Y-%m").alias(c) for c in ("from_mi", "to_mi"))
        .with_columns(text=pl.when(pl.col("from_mi") == pl.col("to_mi")).then(pl.col("from_mi"))
                      .otherwise(pl.format("{}..{}", "from_mi", "to_mi")))
        .group_by("seq", maintain_order=True).agg(pl.col("text").str.join(","))
    )
    return column.scatter(runs["seq"] - 1, runs["text"]).alias("periods")
