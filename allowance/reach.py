"""A released review decision stops the person's retroactive clock (四 追溯期 with 五 资格审定).

四 limits back-pay to a window of months before the run; 五's review is the district's, not the
person's. A hold or rejection placed on a draft covers its months from `from_mi` (from the first
month the draft lists for the person), which that draft was paying or recovering. Released a month
later, the next run's window had moved on, and the months at the old window's start were reported
expired, not paid: an old person unpaid for the time the district took to check.

So a decision stops the person's clock: the months from the as-of of the draft it was placed on to
the as-of of the first batch published after its release (the run asking, while none has been) do
not count against them. A month m before the window is still due when the window, lengthened by
those stopped months that come at or after m, reaches it (two decisions one after the other add up;
a stop before m does not lengthen m's time), and never before the first month a released decision
covered. The first published run after a release so pays every month the decision covered; later
runs reach back only by the months it stood: someone released still without a card is paid, when
it comes, the window plus those months (the clock stopped, it did not turn back).

Used by the draft (batch.released_reach: which people, from which month). A review decision on a
draft covers what it lists for the person, reach months too (Ledger._listed_from).
"""

from __future__ import annotations

import polars as pl

from allowance.months import month_index_expr
from allowance.segments import explode_months

REACH_BY_KEY = {"_k": pl.Int64, "reach_mi": pl.Int32}


def reach_by_key(released: pl.DataFrame, held: pl.Series, first: int, as_of_mi: int,
                 covered: int | None) -> pl.DataFrame:
    """_k, reach_mi: each person whose due months reach before `first` (the window's first month,
    a month index), and the first of them.

    `released`: Ledger.released() with `_k` (from_mi, decided_as_of, paid_as_of; null paid_as_of
    is this run's as-of month, `as_of_mi`). `held`: keys under a HOLD in force (their months are
    frozen: no reach until released; a rejection in force leaves the reach, and takes out the
    months it covers, as in the window). `covered`: the first month a rules version covers, the
    earliest a month can be (None: no bound)."""
    decided = released.filter(~pl.col("_k").is_in(held.implode()))
    if decided.height == 0:
        return pl.DataFrame(schema=REACH_BY_KEY)
    # the stopped months, each once: from the draft's as-of month to the month before the payer's
    stopped = explode_months(decided.lazy().select(
        "_k", from_mi=month_index_expr("decided_as_of"),
        to_mi=month_index_expr("paid_as_of").fill_null(as_of_mi) - 1)
    ).filter(pl.col("month_idx").is_not_null()).select("_k", "month_idx").unique()
    # the months a decision covered before the window, each with the stopped months after it
    lowest = pl.col("from_mi") if covered is None else pl.max_horizontal("from_mi", pl.lit(covered))
    candidates = explode_months(
        decided.lazy().group_by("_k").agg(pl.col("from_mi").min())
        .with_columns(from_mi=lowest, to_mi=pl.lit(first - 1))
    ).filter(pl.col("month_idx").is_not_null())
    after = (candidates.join(stopped.rename({"month_idx": "stop_mi"}), on="_k")
             .filter(pl.col("stop_mi") >= pl.col("month_idx")).group_by("_k", "month_idx").len("stood"))
    return (
        candidates.join(after, on=["_k", "month_idx"], how="left")
        .filter(pl.col("month_idx") + pl.col("stood").fill_null(0) >= first)
        .group_by("_k").agg(reach_mi=pl.col("month_idx").min())
        .collect().cast(REACH_BY_KEY)  # type: ignore[arg-type]
    )
