"""A rejection from a month (五 区民政部门资格审定, SPEC §1.5: a decision covers a person and months):
the draft keeps the months before it.

`review reject --from F` says the person is not entitled from F on. Their months before F in the
draft are still due, and the draft's own window is the one that found them: taken out with the
person and left to the next run, they were lost to the retroactive window (四 追溯期) whenever that
run's window had moved on, a month later (audit 26I: 75 yuan in the repro). So the person's lines
keep their months before F, under the same line ids, and only the months from F on leave the draft
(the next run recovers what the ledger holds of them, cause NOT_ENTITLED).

A kept line's amount, months, period and `periods` follow from its pieces. Its shares are those of
each month (七(二): the district's share of a month's amount floored, the city taking any odd fen),
moved from what the ledger holds to what is due, as the draft reckons them (`money.district_moved`);
what is held in a month is the ledger's holdings, plus what the draft's cancelled recoveries give
back for it. The review refuses a draft made before the ledger last changed, so the holdings are
those the draft was made from; and each line is reckoned whole first and must come out as it was
stored, or nothing is cut. A kept line's reason is reckoned again from its months (`reasons`: a
band change cut off no longer makes it BAND_CHANGE), where the whole line's reckoning gives the
reason the draft stored; a recovery keeps its cause, which is the person's (a death, a move).
"""

from __future__ import annotations

import polars as pl

from allowance.errors import LedgerError
from allowance.money import district_moved
from allowance.months import month_date_expr, month_index_expr
from allowance.reasons import amount_changed, line_reason
from allowance.rules import Rules
from allowance.segments import explode_months, line_periods


def months_before(
    lines: pl.DataFrame, pieces: pl.DataFrame, first: int, keys: pl.DataFrame, holdings: pl.DataFrame,
    cancels: pl.DataFrame, rules: Rules, returned: pl.DataFrame, ever_paid: pl.Series, current_from: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rejected people's lines and pieces cut to the months before `first` (a month index).

    `lines` and `pieces` are their rows of the draft's files (in file order), `keys` their
    person_id and person_key (files written before person_key have none); `holdings` the
    ledger's runs of these people (person_key, from_mi, to_mi, fen), `cancels` the draft's
    cancelled recoveries of theirs (person_key, from_mi, to_mi, fen a month). For the reason:
    `returned` the months the bank returned (person_id, from_mi, to_mi: Ledger.reversals),
    `ever_paid` the person_keys of those ever paid, `current_from` the run's current quarter's
    first month. Returns the lines that keep a month, with their columns recomputed, and the
    pieces of those months (a piece across `first` ends the month before it), both in the order
    given.
    """
    if lines.height == 0:
        return lines, pieces
    month = ["person_key", "month_idx"]
    months = explode_months(
        pieces.lazy().select("line_id", "person_id", "from_mi", "to_mi", "fen").join(keys.lazy(), on="person_id")
    ).collect()
    held = pl.concat([
        explode_months(holdings.lazy()).select([*month, "fen"]).collect(),
        explode_months(cancels.lazy()).select([*month, "fen"]).collect(),
    ]).group_by(month).agg(held=pl.col("fen").sum())
    at = sorted(set(months["month_idx"].to_list()))
    funding = pl.DataFrame(
        {"month_idx": at,
         "num": [rules.at(m).funding.municipal for m in at],
         "den": [rules.at(m).funding.municipal + rules.at(m).funding.district for m in at],
         "version": [rules.at(m).id for m in at]},
        schema={"month_idx": pl.Int32, "num": pl.Int64, "den": pl.Int64, "version": pl.String})
    bank_returned = explode_months(returned.lazy().join(keys.lazy(), on="person_id")).select(month).unique()
    months = (
        months.join(held, on=month, how="left").join(funding, on="month_idx", how="left")
        .join(bank_returned.collect().with_columns(returned=pl.lit(True)), on=month, how="left")
        .with_columns(held=pl.col("held").fill_null(0), returned=pl.col("returned").fill_null(False))
        .with_columns(district=district_moved(pl.col("held") + pl.col("fen"), pl.col("held")))
    )
    # what the person was last paid a month (their last positive held run's amount)
    last_paid = (holdings.filter(pl.col("fen") > 0).sort("person_key", "to_mi")
                 .group_by("person_key").agg(pl.col("fen").last().alias("last_paid_fen")))
    kinds = lines.select("line_id", "line_type")

    def per_line(frame: pl.DataFrame) -> pl.DataFrame:
        return (
            frame.group_by("line_id").agg(
                pl.col("person_key").first(),
                pl.col("month_idx").min().alias("from_mi"), pl.col("month_idx").max().alias("to_mi"),
                pl.len().cast(pl.Int32).alias("months"), pl.col("fen").sum().alias("amount_fen"),
                pl.col("district").sum().alias("district_fen"),
                pl.col("version").unique().sort().str.join("+").alias("rules_version"),
                pl.col("returned").any().alias("any_reversed"),
                ((pl.col("held") > 0) & (pl.col("fen") > 0)).any().alias("any_topup"),
                (pl.col("held") + pl.col("fen")).min().alias("ent_min"),
                (pl.col("held") + pl.col("fen")).max().alias("ent_max"))
            .join(kinds, on="line_id").join(last_paid, on="person_key", how="left")
            .with_columns(ever_paid=pl.col("person_key").is_in(ever_paid.implode()),
                          any_arrears=pl.col("from_mi") < current_from)
            .with_columns(amount_changed=amount_changed())
            .with_columns(line_reason().cast(pl.String).alias("reason"))
        )

    # Each line reckoned whole must be the line the draft stored, or its months cannot be told apart.
    whole = lines.select("line_id", "amount_fen", "district_fen", "months", "rules_version",
                         from_mi=month_index_expr("period_from"), to_mi=month_index_expr("period_to"))
    reckoned = per_line(months)
    if (differ := whole.cast(reckoned.select(whole.columns).schema)
            .join(reckoned, on=whole.columns, how="anti")).height:
        raise LedgerError(f"line {differ['line_id'][0]} of this draft does not add up from its pieces and the "
                          "ledger's holdings, so its months before --from cannot be kept; run the draft again, "
                          "and review the new batch; nothing recorded")
    # The reason is reckoned again (a band change cut off is no longer why the line exists: audit
    # 27A) where the whole line's reckoning gives the reason the draft stored; otherwise (a case
    # the draft reckons from what the review cannot see) it stays as drafted.
    drafted = reckoned.join(lines.select("line_id", drafted="reason"), on="line_id").select(
        "line_id", "drafted", same=pl.col("reason") == pl.col("drafted"))
    kept = (per_line(months.filter(pl.col("month_idx") < first)).join(drafted, on="line_id")
            .with_columns(pl.when("same").then("reason").otherwise("drafted").alias("reason"))
            .drop("same", "drafted"))
    kept_pieces = (
        pieces.filter(pl.col("from_mi") < first)
        .with_columns(pl.min_horizontal("to_mi", pl.lit(first - 1, pl.Int32)).alias("to_mi"))
    )
    kept_lines = (
        lines.with_row_index("_line").join(kept, on="line_id", how="inner", suffix="_kept")
        .sort("_line").with_row_index("seq", offset=1)
    )
    periods = line_periods(
        kept_lines.select(pl.col("seq").cast(pl.Int64), "from_mi", "to_mi", months="months_kept"),
        kept_pieces.join(kept_lines.select("line_id", "seq"), on="line_id").sort("seq", "from_mi")
        .select(pl.col("seq").cast(pl.Int64), "from_mi", "to_mi"))
    out = kept_lines.with_columns(
        period_from=month_date_expr("from_mi"), period_to=month_date_expr("to_mi"), months="months_kept",
        periods=periods, amount_fen="amount_fen_kept", district_fen="district_fen_kept",
        municipal_fen=pl.col("amount_fen_kept") - pl.col("district_fen_kept"), rules_version="rules_version_kept",
        reason="reason_kept",
    ).select(lines.columns)
    return out.cast(lines.schema), kept_pieces.select(pieces.columns)
