"""Why a line exists (SPEC §5: NEW, CONTINUING, BAND_CHANGE, ARREARS, REISSUE, RECOVERY), from
what a draft knows of it: one definition for the draft (`batch.build_draft`) and for the lines a
rejection from a month cuts short (`rejection.months_before`)."""

from __future__ import annotations

import polars as pl

# Held as an enum while a draft builds its lines, listing its values in their text's order, so
# sorting or grouping by it orders as by its text.
REASONS = pl.Enum(sorted(["ARREARS", "BAND_CHANGE", "CONTINUING", "NEW", "RECOVERY", "REISSUE"]))


def line_reason() -> pl.Expr:
    """A line's reason from its columns: line_type, any_reversed (a month the bank returned),
    ever_paid (a published payment line before), any_topup (a month paid before, for less),
    any_arrears (a month before the run's current quarter) and amount_changed (amount_changed()).
    The first that holds, in that order."""

    def is_(code: str) -> pl.Expr:
        return pl.lit(code, REASONS)

    return (
        pl.when(pl.col("line_type") == "RECOVERY").then(is_("RECOVERY"))
        .when(pl.col("any_reversed")).then(is_("REISSUE"))
        .when(~pl.col("ever_paid")).then(is_("NEW"))
        .when(pl.col("any_topup")).then(is_("BAND_CHANGE"))
        .when(pl.col("any_arrears")).then(is_("ARREARS"))
        .when(pl.col("amount_changed")).then(is_("BAND_CHANGE"))
        .otherwise(is_("CONTINUING"))
    )


def amount_changed() -> pl.Expr:
    """A month's amount in the line (ent_min, ent_max) is not the one the person was last paid
    (last_paid_fen: their last positive held run's; null if none)."""
    return (pl.col("ent_min") != pl.col("last_paid_fen")) | (pl.col("ent_max") != pl.col("last_paid_fen"))
