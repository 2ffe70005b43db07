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

A decision also freezes the person's recoveries: a hold keeps every one owed, a rejection those of
the months it covers, where a draft would have cancelled them (the person entitled to the months
again). A district that collects one while the decision stands takes money the person would have
kept. So the months a recovery confirmed recovered while a decision stood (from its placing to
the publication of the first batch after its release) got back (less its cancellations: audit
29A), that the decision covered and that the ledger holds nothing for, are due on its release
whatever their age, where the person is entitled to them: paid
back (audit 28G: a recovery of August, older than the window, cancelled by the draft the hold was
placed on, collected during the hold, was reported expired on the release: 15 000 fen lost). Once
paid back the ledger holds them, and they are old months again: a recovery published since that
takes one back is not the decision's doing (audit 29B), unless it asked back a payment that then
failed at the bank (the first confirmed recovery published after that payment): the district
refunds that by hand, so it took nothing back (29C, 30A). While a hold stands they are not expired.

Used by the draft (batch.released_reach: which people, which months). A review decision on a
draft covers what it lists for the person, reach months too (Ledger._listed_from).
"""

from __future__ import annotations

import polars as pl

from allowance.months import month_index_expr
from allowance.segments import explode_months, months_as_runs

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


REACH_RANGES = {"_k": pl.Int64, "from_mi": pl.Int32, "to_mi": pl.Int32}


def reach_ranges(reach: pl.DataFrame, collected: pl.DataFrame, first: int, covered: int | None) -> pl.DataFrame:
    """_k, from_mi, to_mi: the months before `first` (the window's first month) each person's due
    months reach, as runs of consecutive months: from `reach` (reach_by_key) to the window, and the
    months of `collected` (Ledger.collected_while_decided: _k, month_idx; those before `covered`,
    the first month a rules version covers, are not asked for). Disjoint, ordered."""
    clock = explode_months(reach.lazy().select("_k", from_mi="reach_mi", to_mi=pl.lit(first - 1, pl.Int32)))
    back = collected.lazy().filter(pl.col("month_idx") < first)
    if covered is not None:
        back = back.filter(pl.col("month_idx") >= covered)
    months = (pl.concat([clock.select("_k", "month_idx"), back.select("_k", "month_idx").cast(
        {"_k": pl.Int64, "month_idx": pl.Int32})]).unique().sort("_k", "month_idx"))
    return months_as_runs(months, "_k").sort("_k", "from_mi").collect().cast(REACH_RANGES)  # type: ignore[arg-type]
