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
moved from what the ledger holds to what is due, as the draft reckons them (`batch.build_draft`);
what is held in a month is the ledger's holdings, plus what the draft's cancelled recoveries give
back for it. The review refuses a draft made before the ledger last changed, so the holdings are
those the draft was made from; and each line is reckoned whole first and must come out as it was
stored, or nothing is cut. A kept line keeps its reason and cause: why it exists is what the draft
said of the person, and a band change or arrears still names the months that made it so.
"""

from __future__ import annotations

import polars as pl

from allowance.errors import LedgerError
from allowance.months import month_date_expr
from allowance.rules import Rules
from allowance.segments import explode_months, line_periods


def _district_share(fen: pl.Expr) -> pl.Expr:
    """The district's share of one month's amount, floored (toward zero when negative): the
    draft's `district_share`, with `num` and `den` the month's funding."""
    return fen.sign() * (fen.abs() * (pl.col("den") - pl.col("num")) // pl.col("den"))


def months_before(
    lines: pl.DataFrame, pieces: pl.DataFrame, first: int, keys: pl.DataFrame, holdings: pl.DataFrame,
    cancels: pl.DataFrame, rules: Rules,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rejected people's lines and pieces cut to the months before `first` (a month index).

    `lines` and `pieces` are their rows of the draft's files (in file order), `keys` their
    person_id and person_key (files written before person_key have none); `holdings` the
    ledger's runs of these people (person_key, from_mi, to_mi, fen), `cancels` the draft's
    cancelled recoveries of theirs (person_key, from_mi, to_mi, fen a month). Returns the lines
    that keep a month, with their columns recomputed, and the pieces of those months (a piece
    across `first` ends the month before it), both in the order given.
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
    months = (
        months.join(held, on=month, how="left").join(funding, on="month_idx", how="left")
        .with_columns(held=pl.col("held").fill_null(0))
        .with_columns(district=_district_share(pl.col("held") + pl.col("fen")) - _district_share(pl.col("held")))
    )

    def per_line(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.group_by("line_id").agg(
            pl.col("month_idx").min().alias("from_mi"), pl.col("month_idx").max().alias("to_mi"),
            pl.len().cast(pl.Int32).alias("months"), pl.col("fen").sum().alias("amount_fen"),
            pl.col("district").sum().alias("district_fen"),
            pl.col("version").unique().sort().str.join("+").alias("rules_version"))

    # Each line reckoned whole must be the line the draft stored, or its months cannot be told apart.
    whole = lines.select("line_id", "amount_fen", "district_fen", "months", "rules_version",
                         from_mi=pl.col("period_from").dt.year() * 12 + pl.col("period_from").dt.month() - 1,
                         to_mi=pl.col("period_to").dt.year() * 12 + pl.col("period_to").dt.month() - 1)
    reckoned = per_line(months).select(whole.columns)
    if (differ := whole.cast(reckoned.schema).join(reckoned, on=whole.columns, how="anti")).height:
        raise LedgerError(f"line {differ['line_id'][0]} of this draft does not add up from its pieces and the "
                          "ledger's holdings, so its months before --from cannot be kept; run the draft again, "
                          "and review the new batch; nothing recorded")
    kept = per_line(months.filter(pl.col("month_idx") < first))
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
    ).select(lines.columns)
    return out.cast(lines.schema), kept_pieces.select(pieces.columns)
