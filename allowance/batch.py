"""Draft a batch: entitlement minus ledger → payment, recovery and no-card lines (SPEC §4, §5).

One mechanism serves every run: for a window of due months, compute each person's
entitlement per month, subtract what the ledger holds for that person-month, and turn the
differences into lines. Positive differences are paid (NEW, CONTINUING, BAND_CHANGE, ARREARS,
REISSUE); negative ones are listed for the district to recover (RECOVERY), never netted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from allowance import __version__, idcard
from allowance.bytescan import hash_columns, numbered
from allowance.constants import CHANNELS, DISTRICT_CODES, MAX_AGE_ALIVE
from allowance.entitlement import entitlement_segments, exit_paid_by_month, without_blocked
from allowance.errors import RefusedError, UserError
from allowance.ledger import CANCEL_COLUMNS, PAID_WITH, Ledger, held_keys, keyed, line_hashes, taken_off_owed
from allowance.log import Laps
from allowance.money import district_moved
from allowance.months import (
    fmt,
    month_date_expr,
    month_date_in,
    month_index,
    month_index_expr,
    month_start,
    quarter_label,
)
from allowance.reach import REACH_BY_KEY, reach_by_key, reach_ranges
from allowance.reasons import amount_changed, line_reason
from allowance.registry import Validated
from allowance.rules import Rules
from allowance.segments import by_key_then_month, clip, explode_months, line_periods, months_as_runs, sweep_diff

LINE_NO_DIGITS = 8  # a line id is its batch id, "-", and the line's number in 8 digits (more when it has more)
LINE_COLUMNS = [
    "batch_id", "line_id", "line_type", "person_id", "name", "district_code", "channel", "card_no",
    "period_from", "period_to", "months", "periods", "amount_fen", "municipal_fen", "district_fen",
    "reason", "cause", "rules_version",
]

# A line's codes, held as enums while a draft builds its lines (four text columns of 4.4 million
# rows took 0.28 GB at a 15.35M quarter's peak); stored as text (ledger.PART_SCHEMAS). Each enum
# lists its values in their text's order, so sorting or grouping by one orders as by its text.
LINE_TYPES = pl.Enum(["PAYMENT", "RECOVERY"])
CAUSES = pl.Enum(sorted(["AMOUNT_CORRECTION", "DEATH", "MIGRATION", "NOT_ENTITLED", "NOT_IN_EXTRACT"]))


@dataclass(frozen=True)
class Window:
    """The due months of a run, as month indexes (inclusive). Empty when first > last."""

    kind: str  # quarterly | supplement
    first: int
    last: int
    current_from: int  # months before this are arrears
    quarter: str | None
    expired_before: int  # months before this are outside the retroactive window

    @property
    def empty(self) -> bool:
        return self.first > self.last


def window_for(kind: str, as_of: dt.date, ledger: Ledger, rules: Rules, quarter: tuple[int, int] | None) -> Window:
    """SPEC §4: quarterly = retroactive start … end of the quarter; supplement = retroactive
    start … end of the latest pre-disbursed quarter (nothing before the first one)."""
    as_of_mi = month_index(as_of)
    opening = ledger.opening_month
    # SPEC §4: a run never uses facts dated after its as-of. What the ledger holds from a batch
    # published as of a later day is such a fact (an audit reran a missed night, its archived
    # extract without a death that the quarter since published knew of, and the night's window
    # reached that quarter: the dead person was paid its three months again).
    if (later := ledger.latest_published_as_of()) is not None and as_of < later[0]:
        raise UserError(f"--as-of {as_of} is before {later[0]}, the as-of of {later[1]}, already published: the "
                        "ledger holds what was paid since, and a run never uses facts dated after its as-of "
                        "(SPEC §4); a missed night needs no rerun: tonight's run, with tonight's extract, pays what "
                        "is due")
    if kind == "quarterly":
        assert quarter is not None
        q_first, q_last = quarter
        if q_first > as_of_mi + 1:
            raise UserError(
                f"quarter {quarter_label(q_first)} starts after {fmt(as_of_mi + 1)}; a quarter is "
                f"pre-disbursed from its first month (四 按季度预拨), as-of is {as_of}"
            )
        if q_last < opening:
            raise UserError(f"quarter {quarter_label(q_first)} ends before the ledger's opening month {fmt(opening)}")
        last, current_from, label = q_last, q_first, quarter_label(q_first)
    else:
        latest = ledger.latest_published_quarter_end()
        if latest is None:
            return Window(kind, 1, 0, 1, None, opening)
        last, current_from, label = latest, latest - 2, quarter_label(latest)
    # SPEC §1.4: a month no version covers is an error; the first such month of the quarter is named.
    for m in range(current_from, last + 1):
        rules.at(m)
    # 四 追溯期: the engine rule `retro_months` of the version in force when the payment is made
    # (paid_in_month: a quarter's first month, or the as-of month when later; a night's as-of
    # month), as for the channels. The window's end's version let the same person on the same day
    # be back-paid 24 months by the night's run and 12 by the quarter's, whose last month a raise
    # with a shorter window had reached (audit 26A).
    retro = rules.at(_paid_in(kind, as_of_mi, current_from)).retro_months.value
    expired_before = max(opening, as_of_mi - retro)
    return Window(kind, max(expired_before, opening), last, current_from, label, expired_before)


@dataclass
class Draft:
    batch: dict[str, Any]
    lines: pl.DataFrame  # line_type, reason, cause and rules_version as enums; the file holds text
    pieces: pl.DataFrame
    no_card: pl.DataFrame
    quarantine: pl.DataFrame
    changes: pl.DataFrame
    stops: dict[str, int]
    cancels: pl.DataFrame  # recoveries still owed, cancelled instead of paid again (cancel_owed_recoveries)
    card_holders: pl.DataFrame | None = None  # every holder of a card paid to two people (card_shared)
    ends: pl.DataFrame | None = None  # what the extract changes of the ledger's person_ends (ends_seen)


def _batch_id(kind: str, window: Window, as_of: dt.date, registry_sha: str, state: str, rules: Rules) -> str:
    """Deterministic: the same run on the same ledger state (`state`: Ledger.ledger_state) gets
    the same id (rerun-safe), however many drafts and approvals came before it."""
    h = hashlib.sha256(
        f"{kind}|{window.quarter}|{window.first}|{window.last}|{as_of}|{registry_sha}|{state}|{rules.fingerprint()}"
        .encode()
    ).hexdigest()[:8]
    tag = window.quarter if kind == "quarterly" else f"{as_of:%Y%m%d}"
    return f"{'Q' if kind == 'quarterly' else 'S'}{tag}-{h}"


def diff_pieces(
    entitled: pl.DataFrame, rules: Rules, window: Window, held: pl.LazyFrame | pl.DataFrame, blocked: pl.DataFrame,
    ids: pl.DataFrame,
) -> pl.DataFrame:
    """Where entitlement ≠ ledger inside the window, as runs: pkey, from_mi, to_mi, ent_fen,
    held_fen, diff_fen (per month), each run inside one rules version.

    `entitled` is entitlement_segments over the window's months. `held` is the ledger's runs
    (pkey, from_mi, to_mi, fen) of the people in `ids`, which maps the ID key to pkey for the
    clean rows and for people the ledger holds who are absent from the extract altogether (no
    entitlement: their held months are recovered). People whose row is quarantined are not in
    either: no facts, no payment and no recovery.
    """
    ent = entitled.lazy()
    blocks = keyed(blocked, "decisions", strict=False).join(ids, on="_k").select("pkey", "from_mi", "to_mi", "action")
    rejected = blocks.filter(pl.col("action") == "REJECT")
    if rejected.height:
        ent = without_blocked(ent, rejected.lazy().select("pkey", "from_mi", "to_mi"))
    held = clip(held.lazy().select("pkey", "from_mi", "to_mi", "fen"), window.first, window.last)
    ent_runs, held_runs = ent.collect(), held.collect()
    if window.kind == "supplement":
        # Most nights nearly nobody changed: drop everyone whose runs are the ledger's first.
        ent_runs, held_runs = _only_differing(ent_runs, held_runs)
    settled, ent_rest, held_rest = _settled_pieces(ent_runs, held_runs)
    pieces = pl.concat([settled.lazy(), sweep_diff(ent_rest.lazy(), held_rest.lazy(), key="pkey")])
    holds = blocks.filter(pl.col("action") == "HOLD")
    if holds.height:
        pieces = frozen_out(pieces.collect(), holds, window).lazy()
    # Cut runs at version starts (a recovery run can cross one) so each run has one version.
    starts = [s for s in (month_index(v.effective_from) for v in rules.versions) if window.first < s <= window.last]
    for s in starts:
        crossing = (pl.col("from_mi") < s) & (pl.col("to_mi") >= s)
        pieces = pl.concat([
            pieces.filter(~crossing),
            pieces.filter(crossing).with_columns(to_mi=pl.lit(s - 1, pl.Int32)),
            pieces.filter(crossing).with_columns(from_mi=pl.lit(s, pl.Int32)),
        ])
    return pieces.collect()


def _runs_differ(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    """The people (pkey) whose set of (from_mi, to_mi, fen) runs is not the same in `a` and `b`.

    Runs of one person never overlap, so the same set of runs means the same amount in every month.
    pkey is a row number, so people are bucketed by it and their runs matched in one compiled pass
    (`_kernels.runs_differ_rows`), exactly and without a hash join: two anti joins of the 4.6
    million runs a side took 0.6 s. Keys too sparse for that (or nulls) are compared as sets.
    """
    cols = ["pkey", "from_mi", "to_mi", "fen"]
    top = _dense_top(a, b)
    if top is None or a.select(cols).null_count().row(0) != (0,) * 4 or b.select(cols).null_count().row(0) != (0,) * 4:
        return _runs_differ_as_sets(a, b)
    from allowance._kernels import runs_differ_rows  # numba, loaded by validation already

    out = np.empty(top, dtype=np.bool_)
    side = [f[c].to_numpy() for f in (a, b) for c in cols]
    runs_differ_rows(*side[:4], *side[4:], top, out)
    return pl.Series("pkey", np.flatnonzero(out)).cast(a.schema["pkey"]).to_frame()


def _dense_top(*frames: pl.DataFrame) -> int | None:
    """1 + the largest pkey of `frames` when their pkeys can index an array (none null or
    negative, and at most about twice as many as their rows: batch's pkey is a row number);
    None when a frame is empty or the keys are too sparse (then callers group or join)."""
    keys = [f["pkey"] for f in frames]
    if any(k.len() == 0 or k.null_count() for k in keys):
        return None
    top = max(int(k.max()) for k in keys) + 1  # type: ignore[arg-type]
    if min(int(k.min()) for k in keys) < 0 or top > 2 * sum(f.height for f in frames) + 1024:  # type: ignore[arg-type]
        return None
    return top


def _runs_differ_as_sets(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    """_runs_differ by comparing the two sets of runs (a join on the whole run)."""
    on = ["pkey", "from_mi", "to_mi", "fen"]
    if a.height == 0 or b.height == 0:
        return pl.concat([a.select("pkey"), b.select("pkey")]).unique()
    # Each run as one exact int64 (mixed radix over the observed ranges) when they fit: a join on
    # one integer column instead of four (2 s → 0.5 s for 4.5 million runs a side).
    lo = pl.concat([a.select(on), b.select(on)]).select(
        pl.col("from_mi").min().alias("m0"), pl.col("to_mi").max().alias("m1"),
        pl.col("fen").min().alias("f0"), pl.col("fen").max().alias("f1"), pl.col("pkey").max().alias("k1"),
    ).row(0, named=True)
    span, fens = lo["m1"] - lo["m0"] + 1, lo["f1"] - lo["f0"] + 1
    radix = span * span * fens
    if (lo["k1"] + 1) * radix >= 1 << 63:
        return pl.concat([a.join(b, on=on, how="anti").select("pkey"), b.join(a, on=on, how="anti").select("pkey")]
                         ).unique()

    def code(f: pl.DataFrame) -> pl.DataFrame:
        return f.select(
            ((pl.col("pkey").cast(pl.Int64) * span + (pl.col("from_mi") - lo["m0"])) * span
             + (pl.col("to_mi") - lo["m0"])) * fens + (pl.col("fen") - lo["f0"])
        ).to_series().alias("c").to_frame()

    ca, cb = code(a), code(b)
    odd = pl.concat([ca.join(cb, on="c", how="anti"), cb.join(ca, on="c", how="anti")])
    return odd.select((pl.col("c") // radix).cast(a.schema["pkey"]).alias("pkey")).unique()


def _as_runs(ent: pl.DataFrame) -> pl.DataFrame:
    """Entitlement segments in the ledger's shape: pkey, from_mi, to_mi, fen."""
    return ent.select("pkey", "from_mi", "to_mi", pl.col("monthly_fen").cast(pl.Int64).alias("fen"))


def _only_differing(ent: pl.DataFrame, held: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Entitlement and holdings of only the people whose runs are not the same on both sides:
    for the others nothing differs in any month, and there is nothing to compute."""
    differing = _runs_differ(_as_runs(ent), held)
    return ent.join(differing, on="pkey", how="semi"), held.join(differing, on="pkey", how="semi")


def _settled_pieces(ent: pl.DataFrame, held: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The differences of everyone whose held months agree with their entitlement, without the sweep.

    Let H be the last month the ledger holds for a person inside the window. When their held runs
    are exactly their entitlement runs cut at H (runs of one person never overlap, so the same
    runs mean the same amount in every month), nothing differs up to H, and after H nothing is
    held: the sweep would return their entitlement runs from H + 1 on, cut at H + 1, and that is
    what is returned here. Someone with nothing held has every entitlement run as a difference.
    Everyone else (a run missing or different on either side) is returned to be swept whole.

    Most people are settled: at a quarter they differ only by the new quarter's months, on a
    nightly supplement not at all, on a fresh ledger they hold nothing; a sort of 10 to 20
    million steps is left to the few who are not.
    Returns (settled pieces, entitlement runs to sweep, held runs to sweep).
    """
    runs = _with_last_held(_as_runs(ent), held)
    up_to_h = runs.filter(pl.col("_h").is_not_null() & (pl.col("from_mi") <= pl.col("_h"))).select(
        "pkey", "from_mi", pl.min_horizontal("to_mi", "_h").alias("to_mi"), "fen")
    differing = _runs_differ(up_to_h, held)
    settled = (
        runs.join(differing, on="pkey", how="anti")
        .filter((pl.col("_h").is_null() | (pl.col("to_mi") > pl.col("_h"))) & (pl.col("fen") != 0))
        .select(
            "pkey",
            pl.max_horizontal("from_mi", (pl.col("_h") + 1).fill_null(pl.col("from_mi")))
            .cast(pl.Int32).alias("from_mi"),
            pl.col("to_mi").cast(pl.Int32),
            ent_fen=pl.col("fen"), held_fen=pl.lit(0, pl.Int64), diff_fen=pl.col("fen"),
        )
    )
    return settled, ent.join(differing, on="pkey", how="semi"), held.join(differing, on="pkey", how="semi")


def _with_last_held(runs: pl.DataFrame, held: pl.DataFrame) -> pl.DataFrame:
    """`runs` with `_h`, the last month `held` holds for the run's person (null: nothing held).

    pkey is a row number, so the maximum is taken in an array indexed by it (a group-by and a
    join of 4.4 million people took 0.8 s, this 0.2-0.3 s); keys too sparse for that are grouped.
    """
    top = _dense_top(runs, held)
    if top is not None:
        none = np.iinfo(np.int64).min
        last = np.full(top, none, dtype=np.int64)
        # intp and int64 take numpy's fast path of ufunc.at (mixed types: 0.85 s against 0.18 s)
        np.maximum.at(last, held["pkey"].to_numpy().astype(np.intp), held["to_mi"].to_numpy().astype(np.int64))
        h = pl.Series("_h", last[runs["pkey"].to_numpy()])
        return runs.with_columns(pl.when(h != none).then(h).cast(held.schema["to_mi"]).alias("_h"))
    upto = held.group_by("pkey").agg(pl.col("to_mi").max().alias("_h"))
    return runs.join(upto, on="pkey", how="left")


CANCEL_SCHEMA = {"line_id": pl.String, "person_key": pl.Int64, "district_code": pl.String, "from_mi": pl.Int32,
                 "to_mi": pl.Int32, "fen": pl.Int64}
assert tuple(CANCEL_SCHEMA) == CANCEL_COLUMNS


def cancel_owed_recoveries(
    pieces: pl.DataFrame, owed: pl.DataFrame, ids: pl.DataFrame,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(pieces, cancels): a positive difference in a month that a recovery still claims back is
    first taken off that claim, and only the rest is paid.

    The person holds the money the recovery asks for (it is open, or written off), so paying the
    month again would pay it twice. `owed` is Ledger.owed_recoveries (_k, line_id, district_code,
    runs of fen owed a month); `ids` maps _k to pkey. Only the few people with something owed are
    expanded month by month; a month owed by several recoveries is taken off the oldest first.
    cancels: line_id, person_key, district_code, from_mi, to_mi (one month), fen (a month).
    """
    none = pl.DataFrame(schema=CANCEL_SCHEMA)
    if owed.height == 0 or pieces.height == 0:
        return pieces, none
    owed = owed.join(ids.select("_k", "pkey"), on="_k")
    due = pieces.filter(pl.col("diff_fen") > 0).join(owed.select("pkey").unique(), on="pkey", how="semi")
    if due.height == 0:
        return pieces, none
    taken = taken_off_owed(explode_months(owed.lazy()),
                           explode_months(due.lazy()).select("pkey", "month_idx", need="diff_fen"), "pkey")
    if taken.height == 0:
        return pieces, none
    cancels = taken.select("line_id", pl.col("_k").alias("person_key"), "district_code", from_mi="month_idx",
                           to_mi="month_idx", fen="cancel").sort("line_id", "from_mi").cast(CANCEL_SCHEMA)
    return less_cancelled(pieces, taken.select("pkey", "month_idx", fen="cancel")), cancels


def less_cancelled(pieces: pl.DataFrame, cancelled: pl.DataFrame) -> pl.DataFrame:
    """`pieces` with each month's difference less what `cancelled` (pkey, month_idx, fen) takes
    off a recovery for it: the ledger will hold that much again once the cancellation is
    published. Only the people in `cancelled` are expanded month by month."""
    month = ["pkey", "month_idx"]
    per_month = cancelled.group_by(month).agg(cancel=pl.col("fen").sum())
    who = per_month.select("pkey").unique()
    theirs = (
        explode_months(pieces.join(who, on="pkey", how="semi").lazy())
        .join(per_month.lazy(), on=month, how="left")
        .with_columns(pl.col("cancel").fill_null(0))
        .with_columns(held_fen=pl.col("held_fen") + pl.col("cancel"), diff_fen=pl.col("diff_fen") - pl.col("cancel"))
        .filter(pl.col("diff_fen") != 0)
        .with_columns(from_mi=pl.col("month_idx"), to_mi=pl.col("month_idx"))
        .select(pieces.columns)
        .collect()
    )
    return pl.concat([pieces.join(who, on="pkey", how="anti"), theirs])


def before_window(window: Window, opening: int, rules: Rules) -> Window:
    """The months owed before the retroactive window (四 追溯期), from the ledger's opening month:
    never paid, reported as expired. Only months a rules version covers: before them nothing was
    due, and they are not asked for (SPEC §1.4; audit 26A: a ledger opened before the 2016 scheme,
    or a rules folder without it, refused every run naming a month none of them paid)."""
    last = min(window.expired_before - 1, window.last)
    covered = rules.covered_since(last) if last >= opening else None
    return dataclasses.replace(window, first=max(opening, last + 1 if covered is None else covered), last=last)


def cancel_owed_before_window(
    clean: pl.DataFrame, rules: Rules, window: Window, opening: int, holdings: pl.DataFrame,
    blocked: pl.DataFrame, owed: pl.DataFrame, reach: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Cancellations (CANCEL_SCHEMA) of recoveries still owed for months older than the
    retroactive window, where the person is entitled to those months again.

    The window (四 追溯期) limits what is paid late; a cancellation pays nothing: the person was
    paid for the month when it was due and the recovery asked for it back in error (missing
    from one night's extract, a death recorded in error). Left open, the district would chase
    money the person is owed. Only the people owing such months are computed, by the rules the
    window's months use, in the same oldest-recovery-first order. A person under an active review
    hold (五) keeps every recovery owed: their case is open, whichever months the hold names. A
    rejection covers its months only: the months before it are the person's, and their
    recoveries are cancelled as anyone's (audit 28C: a rejection from November left July's and
    August's recoveries owed, and reported them expired).
    """
    old = before_window(window, opening, rules)
    if window.empty or old.empty or owed.height == 0:
        return pl.DataFrame(schema=CANCEL_SCHEMA)
    on_hold = held_keys(blocked)
    people = (clean.join(owed.filter(pl.col("from_mi") <= old.last).select("_k").unique(), on="_k", how="semi")
              .join(on_hold, on="_k", how="anti"))
    ids = people.select("pkey", "_k")
    held = before_reach(holdings.lazy().join(ids.lazy(), on="_k").select("pkey", "from_mi", "to_mi", "fen"),
                        reach).collect()
    ent = before_reach(entitlement_segments(people.lazy(), rules, old.first, old.last), reach).collect()
    # a rejection's months are not theirs (diff_pieces takes them out), the months before it are
    return cancel_owed_recoveries(diff_pieces(ent, rules, old, held, blocked, ids), owed, ids)[1]


def frozen_out(pieces: pl.DataFrame, holds: pl.DataFrame, window: Window) -> pl.DataFrame:
    """Drop the months a HOLD covers from the differences: nothing paid, nothing recovered.

    Only the few held people are expanded month by month; everyone else passes through.
    """
    held_keys = holds.select("pkey").unique()
    mine = pieces.join(held_keys, on="pkey", how="semi")
    if mine.height == 0:
        return pieces
    months = explode_months(mine.lazy()).collect()
    covered = explode_months(
        holds.lazy().with_columns(to_mi=pl.col("to_mi").fill_null(window.last))
        .pipe(clip, window.first, window.last)
    ).select("pkey", "month_idx").unique().collect()
    kept = (
        months.join(covered, on=["pkey", "month_idx"], how="anti")
        .select("pkey", pl.col("month_idx").alias("from_mi"), pl.col("month_idx").alias("to_mi"), "ent_fen",
                "held_fen", "diff_fen")
    )
    return pl.concat([pieces.join(held_keys, on="pkey", how="anti"), kept.select(pieces.columns)])


def absent_people(held_rows: pl.DataFrame, quarantine: pl.DataFrame,
                  ledger: Ledger) -> tuple[pl.DataFrame, int, pl.DataFrame]:
    """People the ledger holds who are in no row of the extract (not even a quarantined one), how
    many it holds whose row is quarantined (neither paid nor recovered tonight), and where those
    of them whose quarantined rows name no district of SPEC §7 (UNKNOWN_DISTRICT, a retired code)
    were last paid (_k, district_code): the change report lists them there, where the row is to be
    mended (audit 26B: under `unknown`, which no district reads). `held_rows` is the holdings with
    the clean row (pkey) of their person, null where there is none.

    A registry without them says they are not entitled (a corrected birth date gives a new ID;
    a cancelled hukou record disappears), so their held months are recovered, cause
    NOT_IN_EXTRACT; their district is the one they were last paid in. The shrink and mass-stop
    circuit breakers stand between a truncated extract and mass recoveries.
    """
    quarantined = quarantined_keys(quarantine)
    # Only the few left are made unique (4.6 million took 0.3 s).
    not_clean = held_rows.filter(pl.col("pkey").is_null()).select("_k").unique()
    gone = not_clean.join(quarantined, on="_k", how="anti")
    placeless = (not_clean.join(quarantined, on="_k").group_by("_k").agg(pl.col("known").any())
                 .filter(~pl.col("known")).select("_k"))
    # One lookup for both: each reads the lines files their last payments are in.
    paid_in = ledger.payees(pl.concat([gone, placeless])["_k"]).select("_k", "name", "district_code")
    absent = (
        gone.with_columns(person_id=idcard.id_from_key_expr("_k"))
        .join(paid_in, on="_k", how="left")
        .with_columns(pl.col("district_code").fill_null("unknown"))
        .sort("_k")
    )
    return absent, not_clean.height - gone.height, paid_in.join(placeless, on="_k", how="semi").select(
        "_k", "district_code")


def ends_seen(clean: pl.DataFrame, known: pl.DataFrame, at_stake: np.ndarray, min_age: int) -> pl.DataFrame:
    """What the extract changes of the ledger's person_ends (`known`: _k, start_mi, end_mi;
    Ledger.person_ends): person_key, start_mi, end_mi (the months a clean row with a death or hukou
    out date entitles: from the month of the `min_age`th birthday, or of moving in when later, to
    the earlier of the months of death and of moving out) where they are not the ones known, for
    the people `at_stake` (by clean row: held by the ledger, or with a difference tonight; the
    others' absence would cost nothing, and a fresh quarter's extract has 160 000 ends at 15.35M,
    the year's dead, none of them paid); and null months for each person known to have ended
    whose row shows neither date now (a death recorded in error, withdrawn). Only the rows with
    an end, and the known people's, are read."""
    end = pl.min_horizontal(month_index_expr("death_date"), month_index_expr("hukou_out_date")).cast(pl.Int32)
    start = pl.max_horizontal(month_index_expr("birth_date") + min_age * 12, month_index_expr("hukou_since")).cast(
        pl.Int32)
    none = pl.col("death_date").is_null() & pl.col("hukou_out_date").is_null()
    seen = clean.filter(~none).select("pkey", "_k", start_mi=start, end_mi=end)
    seen = seen.filter(pl.Series(at_stake[seen["pkey"].to_numpy()])).drop("pkey")
    # those known whose row tonight shows no end (or who have none: absent, quarantined)
    unseen = known.join(seen, on="_k", how="anti")["_k"]
    withdrawn = clean.filter(pl.col("_k").is_in(unseen.implode()) & none).select(
        "_k", start_mi=pl.lit(None, pl.Int32), end_mi=pl.lit(None, pl.Int32))
    changed = seen.join(known, on=["_k", "start_mi", "end_mi"], how="anti")
    return pl.concat([changed, withdrawn]).select(person_key="_k", start_mi="start_mi", end_mi="end_mi").sort(
        "person_key")


def quarantined_keys(quarantine: pl.DataFrame) -> pl.DataFrame:
    """_k and `known` (a district of SPEC §7) of each quarantined row with an ID that reads as one."""
    return (quarantine.select(pl.col("person_id").alias("p"), "district_code")
            .filter(pl.col("p").is_not_null())
            .select(idcard.order_key_expr(idcard.normalized_id_expr("p")).alias("_k"),
                    known=pl.col("district_code").is_in(DISTRICT_CODES))
            .drop_nulls("_k"))


def settled_by_end(unmatched: pl.DataFrame, known: pl.DataFrame, rules: Rules, blocked: pl.DataFrame,
                   quarantined: pl.Series) -> pl.DataFrame:
    """The held runs of people in no clean row of the extract (`unmatched`: holdings rows with a
    null pkey, a few), without the months the last closed record the ledger saw for them entitled
    (`known`, person_ends: from start_mi to end_mi, the end month itself where `exit_month_paid`).
    A registry drops a closed record in time (the dead, a year on): absent then, the person is
    reckoned by that row (SPEC §1.2, §1.3), and only held months outside it are recovered or
    listed; recovering every held month as NOT_IN_EXTRACT asked a family for the months before a
    death (audit 31A). Left whole: people under a hold in force (`blocked`, Ledger.blocked: frozen)
    or with a quarantined row (`quarantined`, keys: neither paid nor recovered, and counted as
    such); a rejection in force ends what is settled the month before it (its months are not due
    whatever the row said: audit 31C; the months before it are: audit 31D). Someone whose last row
    showed no end (a corrected birth date gives a new ID) keeps every month, to be recovered as
    before. A person left with no month is not absent: nothing of theirs is at stake."""
    decided = keyed(blocked, "decisions", strict=False)
    rejected = decided.filter((pl.col("action") == "REJECT") & pl.col("from_mi").is_not_null()).select("_k", "from_mi")
    leave = pl.concat([decided.join(rejected, on="_k", how="anti")["_k"], quarantined])
    ended = (known.join(unmatched.select("_k").unique(), on="_k", how="semi")
             .filter(~pl.col("_k").is_in(leave.implode())))
    if ended.height == 0:
        return unmatched
    # the last month each was entitled to: the end month itself, unless a version not paying it
    # is in force then (a month no version covers pays nothing either)
    # (asked of each distinct month, a few dozen, not of each person)
    months = ended["end_mi"].unique().to_list()
    not_paid = [0 if rules.covered_since(m) is not None and rules.exit_month_paid(m) else 1 for m in months]
    last = ended.with_columns(pl.col("end_mi") - pl.col("end_mi").replace_strict(months, not_paid,
                                                                                 return_dtype=pl.Int32))
    if rejected.height:
        last = (last.join(rejected.group_by("_k").agg(pl.col("from_mi").min()), on="_k", how="left")
                .with_columns(end_mi=pl.min_horizontal("end_mi", pl.col("from_mi") - 1).cast(pl.Int32)))
    lo = pl.col("_k").replace_strict(last["_k"], last["start_mi"], default=None, return_dtype=pl.Int32)
    hi = pl.col("_k").replace_strict(last["_k"], last["end_mi"], default=None, return_dtype=pl.Int32)
    runs = unmatched.with_columns(_lo=lo, _hi=hi)
    settled = pl.col("_lo").is_not_null() & (pl.col("_lo") <= pl.col("_hi"))
    # each run less [lo, hi]: the part before it and the part after it, where there is one
    before = runs.filter(settled).with_columns(to_mi=pl.min_horizontal("to_mi", pl.col("_lo") - 1))
    after = runs.filter(settled).with_columns(from_mi=pl.max_horizontal("from_mi", pl.col("_hi") + 1))
    return (pl.concat([runs.filter(~settled), before, after])
            .filter(pl.col("from_mi") <= pl.col("to_mi"))
            .select(unmatched.columns).cast(unmatched.schema))  # type: ignore[arg-type]


def quarantined_districts(stopped: pl.DataFrame, quarantine: pl.DataFrame,
                          placeless: pl.DataFrame | None = None) -> pl.DataFrame:
    """_k, district_code of the people stopped (`stopped`: _k) because their row is quarantined,
    where that row names one of SPEC §7's districts: the change report listed them all under
    `unknown`, where the district that must mend the row never looked (audit 19A). Where no row of
    theirs names one (the district is itself what is broken), the district they were last paid in
    (`placeless`, from absent_people; audit 26B). An ID quarantined in rows of two districts is
    listed in both. A handful of rows: the quarantine's IDs are keyed, not the extract's."""
    named = (quarantine.select(idcard.order_key_expr(idcard.normalized_id_expr("person_id")).alias("_k"),
                               "district_code")
             .join(stopped.select("_k"), on="_k", how="semi")
             .filter(pl.col("district_code").is_in(DISTRICT_CODES))
             # an ID quarantined in two districts (DUPLICATE_ID): in each, the one that paid them
             # among them (audit 19C: listed only in its first row's, which may not be)
             .unique(["_k", "district_code"], keep="first", maintain_order=True))
    if placeless is None or placeless.height == 0:
        return named
    last_paid = placeless.join(stopped.select("_k"), on="_k", how="semi").join(named, on="_k", how="anti")
    return pl.concat([named, last_paid.select(named.columns)])


def decided_not_in_extract(absent: pl.DataFrame, blocked: pl.DataFrame, holdings: pl.DataFrame,
                           action: str = "HOLD") -> pl.DataFrame:
    """People under a review decision (五; `action` HOLD or REJECT) who are in no row of the
    extract: _k, person_id, district_code, fen (all the ledger holds for them). A handful of rows.

    HOLD: a hold freezes their months, so what they were paid is not recovered (NOT_IN_EXTRACT)
    while it lasts; an audit held someone whose birth date was then corrected, and the new ID was
    paid the same months while the old one kept them, with nothing listed. The engine cannot tell
    that the two IDs are one person; the district can, so they are listed on every run until it
    releases the hold (the next run recovers the months) or rejects the person.
    REJECT: the months the old ID holds are recovered as NOT_IN_EXTRACT, but the new ID is paid
    as new, the rejected months too (audit 26I): listed until that recovery is published, on the
    runs that pay the new ID, so the district can reject it as well."""
    empty = pl.DataFrame(schema={"_k": pl.Int64, "person_id": pl.String, "district_code": pl.String,
                                 "fen": pl.Int64})
    decided = blocked.filter(pl.col("action") == action)
    if decided.height == 0 or absent.height == 0:
        return empty
    theirs = absent.join(keyed(decided, "decisions", strict=False).select("_k").unique(), on="_k", how="semi")
    held = (
        holdings.join(theirs.select("_k"), on="_k", how="semi").filter(pl.col("fen") > 0)
        .group_by("_k").agg((pl.col("fen") * (pl.col("to_mi") - pl.col("from_mi") + 1)).sum().alias("fen"))
    )
    return theirs.join(held, on="_k").select(empty.columns).cast(empty.schema).sort("_k")  # type: ignore[arg-type]


REACH_SCHEMA = {"pkey": pl.UInt32, "_k": pl.Int64, "from_mi": pl.Int32, "to_mi": pl.Int32}


def released_reach(released: pl.DataFrame, blocked: pl.DataFrame, window: Window, as_of: dt.date, rules: Rules,
                   clean: pl.DataFrame, collected: pl.DataFrame | None = None,
                   returned: pl.DataFrame | None = None) -> pl.DataFrame:
    """People whose due months reach further back than the run's window (REACH_SCHEMA: their
    clean row, ID key and runs of those months), for the months a released review decision kept
    them waiting (allowance/reach.py: the clock it stopped), the months of a recovery collected
    while it stood (`collected`: Ledger.collected_while_decided), and the months of a payment the
    bank returned (`returned`: Ledger.returned_months; SPEC §8: a FAILED line is re-issued, and the
    window, which limits what is paid late, does not expire a month paid on time that the bank
    failed to deliver: audit 31A; nor does it leave a retry the bank paid after the re-issue
    unrecovered: audit 31C). Not for anyone under a hold now (their months
    are frozen), nor for people absent from the extract (owed nothing); someone under a rejection
    keeps it for the months the rejection does not cover. A handful of rows, if any."""
    months = {"_k": pl.Int64, "month_idx": pl.Int32}
    back = pl.concat([pl.DataFrame(schema=months) if f is None else f.select(list(months)).cast(months)
                      for f in (collected, returned)])
    if window.empty or (released.height == 0 and back.height == 0):
        return pl.DataFrame(schema=REACH_SCHEMA)
    covered = rules.covered_since(window.first - 1)
    if covered is None:
        return pl.DataFrame(schema=REACH_SCHEMA)
    held = held_keys(blocked)["_k"]
    # (by ID key; only the few reached are matched to the extract's rows)
    clock = (reach_by_key(keyed(released, "decisions", strict=False), held, window.first, month_index(as_of), covered)
             if released.height else pl.DataFrame(schema=REACH_BY_KEY))
    reached = reach_ranges(clock, back.filter(~pl.col("_k").is_in(held.implode())), window.first, covered)
    if reached.height == 0:
        return pl.DataFrame(schema=REACH_SCHEMA)
    return (clean.select("pkey", "_k").join(reached, on="_k")
            .select(list(REACH_SCHEMA)).cast(REACH_SCHEMA))  # type: ignore[arg-type]


def held_collected(collected: pl.DataFrame, blocked: pl.DataFrame, clean: pl.DataFrame) -> pl.DataFrame:
    """REACH_SCHEMA rows (a month each) of `collected` (Ledger.collected_while_decided) for people
    under a hold now: due when it is released, so not expired while it stands (audit 29A: a
    second hold, on the draft paying them back, had them reported expired meanwhile)."""
    if collected.height == 0:
        return pl.DataFrame(schema=REACH_SCHEMA)
    return (clean.select("pkey", "_k").join(collected.join(held_keys(blocked), on="_k", how="semi"), on="_k")
            .select("pkey", "_k", from_mi="month_idx", to_mi="month_idx").cast(REACH_SCHEMA))  # type: ignore[arg-type]


def reached_pieces(clean: pl.DataFrame, reach: pl.DataFrame, rules: Rules, window: Window,
                   held: pl.LazyFrame, blocked: pl.DataFrame) -> pl.DataFrame:
    """The differences of `reach`'s people (released_reach) in their months before the window,
    as diff_pieces gives them: entitlement minus ledger in each one's own runs of months."""
    w = dataclasses.replace(window, first=int(reach["from_mi"].min()), last=window.first - 1)
    own = reach.lazy().select("pkey", _from="from_mi", _to="to_mi")

    def theirs(runs: pl.LazyFrame) -> pl.LazyFrame:  # each run cut to each of the person's runs
        return (runs.join(own, on="pkey").with_columns(from_mi=pl.max_horizontal("from_mi", "_from"),
                                                       to_mi=pl.min_horizontal("to_mi", "_to"))
                .filter(pl.col("from_mi") <= pl.col("to_mi")).drop("_from", "_to"))

    people = clean.join(reach.select("pkey").unique(), on="pkey", how="semi")
    ent = theirs(entitlement_segments(people.lazy(), rules, w.first, w.last)).collect()
    mine = theirs(clip(held.select("pkey", "from_mi", "to_mi", "fen"), w.first, w.last))
    return diff_pieces(ent, rules, w, mine, blocked, reach.select("pkey", "_k").unique())  # a rejection's months out


def before_reach(runs: pl.LazyFrame, reach: pl.DataFrame | None) -> pl.LazyFrame:
    """`runs` (pkey, from_mi, to_mi, …) without the months released_reach brought into the due
    months of its people: those are paid or recovered by lines, not expired or listed. Only the
    reached people's runs are cut, month by month (a handful of people)."""
    if reach is None or reach.height == 0:
        return runs
    who = reach.lazy().select("pkey").unique()
    theirs = (explode_months(runs.join(who, on="pkey", how="semi").with_row_index("_run"))
              .join(explode_months(reach.lazy().select("pkey", "from_mi", "to_mi")).select("pkey", "month_idx"),
                    on=["pkey", "month_idx"], how="anti"))
    rest = months_as_runs(theirs, "_run")  # what is left of each run, with its other columns
    columns = runs.collect_schema()
    return pl.concat([runs.join(who, on="pkey", how="anti"),
                      rest.sort("_run", "from_mi").select(list(columns)).cast(dict(columns))])


@dataclass
class Scope:
    """What a draft reads of the ledger before the extract: its window and the holdings, and so
    which clean rows can produce a line at all (`keep`)."""

    window: Window
    holdings: pl.DataFrame  # _k (the ID's exact int64 key), from_mi, to_mi, fen
    born_before: dt.date  # old enough for the lowest band by the window's end ⇔ born before this
    young_held: pl.Series  # ledger keys of people born on or after it (usually none)

    def take_holdings(self) -> pl.DataFrame:
        """Hand the holdings over and keep none here (like Validated.take_clean): the draft lets
        them go once it has read them, before its lines exist (0.12 GB at four quarters of 15.35M)."""
        holdings, self.holdings = self.holdings, self.holdings.clear()
        return holdings

    def keep(self, key: str = "id_key") -> pl.Expr:
        """Old enough by the window's end, or held by the ledger: the rest of the registry (two
        thirds of it) can produce no line. A clean row's birth date is the one inside its ID
        (BIRTH_MISMATCH), so the ledger people too young for the first test are known from
        their keys alone; usually there are none, and 15 million rows are not looked up in a
        set of 5 million."""
        old_enough = pl.col("birth_date") < self.born_before
        if self.young_held.len() == 0:
            return old_enough
        return old_enough | pl.col(key).is_in(self.young_held.implode())


def paid_in_month(kind: str, as_of: dt.date, window: Window) -> int:
    """The month a run pays in (四): a quarter's first month when it is drafted before it begins
    (按季度预拨), else the as-of date's. The channels in force are that month's, and so are the age
    AGE_IMPLAUSIBLE judges (runs.age_judged_on; audit 19G) and the retroactive window (window_for)."""
    return month_index(as_of) if window.empty else _paid_in(kind, month_index(as_of), window.current_from)


def _paid_in(kind: str, as_of_mi: int, current_from: int) -> int:
    """paid_in_month, from the window's parts (window_for asks it before the window is made)."""
    return max(as_of_mi, current_from) if kind == "quarterly" else as_of_mi


def draft_scope(kind: str, quarter: tuple[int, int] | None, as_of: dt.date, ledger: Ledger, rules: Rules) -> Scope:
    """The window of a run and the ledger's holdings, read before the extract is."""
    window = window_for(kind, as_of, ledger, rules, quarter)
    holdings = ledger.holdings()
    last = window.last if not window.empty else month_index(as_of)
    born_before = month_start(last - rules.min_age() * 12 + 1)
    # The few young keys are made unique, not the 5 million (0.15 s).
    return Scope(window, holdings, born_before, born_on_or_after(holdings["_k"], born_before).unique())


def matched(left: pl.DataFrame, right: pl.DataFrame, on: str, value: str) -> pl.Series:
    """`right[value]` for each row of `left`, by `on` (unique in `right`); null where none matches.

    What a left join gives as that column, without making the join keep `left`'s order: an
    unordered join on both threads, then each match written at its row of `left`. Matching the
    5 million held runs to 4.7 million clean people took 0.45-1.0 s as an ordered left join,
    0.25-0.3 s this way. A key repeated in `right` would match a row twice: refused, as a bug.
    """
    if left.height == 0:  # a fresh ledger: no join (it would still hash the 4.7 million people)
        return pl.Series(value, [], dtype=right.schema[value])
    hits = (
        left.lazy().select(on).with_row_index("_row")
        .join(right.lazy().select(on, value), on=on, how="inner")
        .select("_row", value).collect()
    )
    rows = hits["_row"].to_numpy()
    once = np.zeros(left.height, dtype=np.bool_)
    once[rows] = True
    if int(once.sum()) != hits.height:
        raise ValueError(f"matched: a value of {on!r} is repeated on the right")
    return pl.repeat(None, left.height, dtype=right.schema[value], eager=True).alias(value).scatter(
        hits["_row"], hits[value])


def born_on_or_after(keys: pl.Series, day: dt.date) -> pl.Series:
    """The ID keys (idcard's int64 of the 18 characters) whose birth date digits are `day` or later.

    key // 11 is the 17-digit body: 6 digits of area, 8 of birth date, 3 of sequence.
    """
    return keys.filter((keys // 11 // 1000 % 100_000_000) >= int(f"{day:%Y%m%d}"))


def build_draft(
    kind: str,
    quarter: tuple[int, int] | None,
    as_of: dt.date,
    validated: Validated,
    ledger: Ledger,
    rules: Rules,
    scope: Scope | None = None,
) -> Draft:
    """Compute a draft batch; the ledger is only read.

    People are matched across the extract and the ledger on `_k`, idcard's exact int64 key of
    the 18-character ID (joins on integers, not on 18-byte text). `scope` is draft_scope's
    answer when the caller already asked it (to validate only the rows it keeps).
    """
    lap = Laps()
    scope = scope or draft_scope(kind, quarter, as_of, ledger, rules)
    window, holdings = scope.window, scope.take_holdings()
    base_seq = ledger.ledger_state_seq()  # what staleness is judged from (changed_since)
    batch_id = _batch_id(kind, window, as_of, validated.sha256, ledger.ledger_state(), rules)
    # Narrowed here too: validation may not have been given this scope, and when it was, the
    # filter costs what compacting its one-chunk-per-block rows would (measured: same time, and
    # about 0.25 GB less peak than leaving them in chunks).
    clean = validated.take_clean().filter(scope.keep("id_key")).rename({"id_key": "_k"}).with_row_index("pkey")
    # 四: the version in force when the payment is made names the channels it goes through (a
    # back-paid month too: it is paid now): a quarter's in its first month (四 按季度预拨, drafted
    # the month before at the earliest), or on its as-of day when later; a night's on its day. A
    # channel another version names is no card yet here: the person is listed for follow-up (at a
    # quarter, counted among the stops), and paid with arrears once a channel in force is known
    # (audits: every version's channels were paid through at once; a quarter drafted before its
    # first month took the month before's). A month no version covers is an error (SPEC §1.4).
    # Never with the rules shipped from 2024-05: the version in force names both channels.
    paid_in = paid_in_month(kind, as_of, window)
    if not window.empty and (accepted := rules.channels(paid_in)) != rules.channels():
        gone = ~pl.col("channel").is_in(accepted)
        clean = clean.with_columns(pl.when(gone).then(None).otherwise(pl.col(c)).alias(c)
                                   for c in ("channel", "card_no"))
    # Each held run with its person's clean row (pkey; null for none): one join of the 5 million
    # runs, which finding the absent, the differences and the stops all read (a join each took
    # 0.2-0.3 s). Clean ID keys are unique (DUPLICATE_ID), so no run is repeated.
    held_rows = holdings.with_columns(matched(holdings, clean, "_k", "pkey"))
    unmatched = pl.col("pkey").is_null()
    # The closed records the ledger last saw (person_ends): the months each entitled are settled
    # for the people in no clean row (absent: only their held months outside them are recovered
    # or listed); what tonight's rows change of them is kept with the draft (ends_seen, below).
    known_ends = ledger.person_ends()
    blocked = ledger.blocked()  # active review holds and rejections (五), asked once
    not_clean = settled_by_end(held_rows.filter(unmatched), known_ends, rules, blocked,
                               quarantined_keys(validated.quarantine)["_k"])
    absent, held_quarantined, placeless = absent_people(not_clean, validated.quarantine, ledger)
    absent = absent.with_row_index("pkey", offset=clean.height)
    ids = pl.concat([clean.select("pkey", "_k"), absent.select("pkey", "_k")])
    # The runs of everyone in `ids`: the clean people's, and the absent people's (a few rows);
    # lazy, so diff_pieces reads them straight into its window (no 5-million-row copy alive).
    absent_held = not_clean.drop("pkey").join(absent.select("_k", "pkey"), on="_k").select(held_rows.columns)
    held = pl.concat([held_rows.lazy().filter(~unmatched), absent_held.lazy()])
    lap("read_holdings")

    released = ledger.released()  # released decisions: the clock they stopped, the recoveries they froze
    collected = ledger.collected_while_decided(released)
    reach = released_reach(released, blocked, window, as_of, rules, clean, collected,
                           ledger.returned_months(window.first) if not window.empty else None)
    held_absent = decided_not_in_extract(absent, blocked, holdings)
    rejected_absent = decided_not_in_extract(absent, blocked, holdings, "REJECT")
    piece_schema = {"pkey": pl.UInt32, "from_mi": pl.Int32, "to_mi": pl.Int32, "ent_fen": pl.Int64,
                    "held_fen": pl.Int64, "diff_fen": pl.Int64}
    entitled: pl.DataFrame | None = None
    if window.empty:
        pieces = pl.DataFrame(schema=piece_schema)
        versions: list[str] = []
        months = range(0)
    else:
        months = range(window.first, window.last + 1)
        versions = sorted({rules.at(m).id for m in months})
        # Computed once: the differences and the stop count (its check month is in the window).
        entitled = entitlement_segments(clean.lazy(), rules, window.first, window.last).collect()
        pieces = diff_pieces(entitled, rules, window, held, blocked, ids)
        if reach.height:  # and the months a released decision kept them waiting (四, 五)
            pieces = pl.concat([pieces, reached_pieces(clean, reach, rules, window, held, blocked)])
        # A clean row whose person is over MAX_AGE_ALIVE in a month of the window (SPEC §1's month
        # age: from the month of their 121st birthday) is paid only what a quarter that began while
        # they were MAX_AGE_ALIVE or younger would have paid (the README: such a quarter stays
        # paid): its positive differences end with that quarter. Over it in the as-of month, it is
        # a row the age rule let through for its recovery (a death or move out at MAX_AGE_ALIVE + 1),
        # and later months would be back pay at a band the row cannot give (audit 19E: 12 months of
        # arrears drafted for months refused while the person was alive, the night the death came);
        # dropping every positive difference (c8cfb76) also dropped months due at 120, a re-issue
        # after a failed payment and the cancellation of a recovery (audit 19F). Under it in the
        # as-of month, a night's window reaching into a quarter published before it began (drafted
        # early) paid that quarter to someone it had quarantined, 121 from its first month (audit
        # 20C: 180 000 fen). A handful of rows, if any: the join is skipped when there are none.
        # (born before the first day of the month that is 121 years before the window's last month:
        # a date bound, 0.7 ms a million rows, where a month index for every row took 18: audit 20D)
        too_old = clean.filter(pl.col("birth_date") < month_start(window.last - (MAX_AGE_ALIVE + 1) * 12 + 1)).select(
            "pkey", _last=month_index_expr("birth_date") + (MAX_AGE_ALIVE + 1) * 12 - 1)
        if too_old.height:
            ok_to = (pl.col("_last") - pl.col("_last") % 3 + 2).cast(pl.Int32)  # that quarter's last month
            pieces = (pieces.join(too_old.select("pkey", _ok_to=ok_to), on="pkey", how="left", maintain_order="left")
                      .with_columns(to_mi=pl.when((pl.col("diff_fen") > 0) & pl.col("_ok_to").is_not_null())
                                    .then(pl.min_horizontal("to_mi", "_ok_to")).otherwise("to_mi"))
                      .filter(pl.col("from_mi") <= pl.col("to_mi")).drop("_ok_to"))
    # The lines' months: the window's, and before it those of people released_reach reaches for.
    lw = window
    if reach.height and pieces.height and (reached := int(pieces["from_mi"].min())) < window.first:
        lw = dataclasses.replace(window, first=reached)
        months = range(lw.first, lw.last + 1)
        versions = sorted({rules.at(m).id for m in months})
    # Never paid twice (SPEC §4): months someone is entitled to again while their recovery is
    # still owed (missing from one night's extract, a death recorded in error) are not paid again;
    # that much of the recovery is cancelled instead, when this batch is published.
    owed = ledger.owed_recoveries()
    pieces, cancels = cancel_owed_recoveries(pieces, owed, ids)
    lap("diff_pieces")
    # Done here, while the runs they read are at hand: the lines below are built without the
    # window's entitlement and the held runs alive (about 0.3 GB less at the draft's peak).
    stops_frame, stops = stopped_people(clean, rules, window, held_rows, blocked, entitled, absent["_k"])
    # Older months than the window are never paid, but a recovery still owed for them is
    # cancelled where the person is entitled to them again (四: the window limits payment, and a
    # cancellation pays nothing); what is left is reported as expired.
    before = cancel_owed_before_window(clean, rules, window, ledger.opening_month, holdings, blocked, owed, reach)
    expired, overpaid = outside_window(clean, absent, rules, window, ledger.opening_month, holdings, before, blocked,
                                       pl.concat([reach, held_collected(collected, blocked, clean)]), absent_held)
    if before.height:
        cancels = pl.concat([cancels, before]).sort("line_id", "from_mi")
    # the ends of the people at stake (held, or with a difference) that tonight's rows change
    at_stake = np.zeros(clean.height, dtype=np.bool_)
    at_stake[held_rows["pkey"].drop_nulls().to_numpy()] = True
    at_stake[pieces["pkey"].filter(pieces["pkey"] < clean.height).to_numpy()] = True
    ends = ends_seen(clean, known_ends, at_stake, rules.min_age())
    del entitled, held, held_rows, not_clean, absent_held, at_stake
    lap("stops_expired")

    # Only the people with a difference can have a line (all of them at a quarter, a handful on
    # most nights); what the ledger says of them is looked up for them alone. ids' row is pkey.
    differing = pieces["pkey"].unique().sort()
    theirs = ids.select(pl.all().gather(differing))
    # Each person's amount in their last positive run: runs ordered by (key, last month), the
    # last of each key kept (a group-by sorting inside every group took 3×). On a night with few
    # differences their runs are picked first (a semi join, the same rows) instead of sorting 4.6M.
    held_paid = holdings.filter(pl.col("fen") > 0).select("_k", "to_mi", "fen")
    if theirs.height < held_paid.height // 4:
        held_paid = held_paid.join(theirs.select("_k"), on="_k", how="semi")
    paid = by_key_then_month(held_paid, "_k", "to_mi")
    last_paid = (
        paid.filter(pl.col("_k") != pl.col("_k").shift(-1).fill_null(-1))
        .join(theirs, on="_k")
        .select("pkey", pl.col("fen").alias("last_paid_fen"))
    )
    # The ledger's runs are done with: at a later quarter these three held 0.3 GB through the
    # lines' texts, where its draft peaks.
    del holdings, held_paid, paid
    reissued = (
        keyed(ledger.reversals(), "reversals").join(ids, on="_k").select("pkey", pl.col("from_mi").alias("r_from"),
                                                             pl.col("to_mi").alias("r_to"))
    )
    people = pl.concat(
        [
            clean.select("pkey", "_k", "person_id", "name", "district_code", "channel", "card_no", "death_date",
                         "hukou_out_date", absent=pl.lit(False)),
            absent.select("pkey", "_k", "person_id", "name", "district_code", channel=pl.lit(None, pl.String),
                          card_no=pl.lit(None, pl.String), death_date=pl.lit(None, pl.Date),
                          hukou_out_date=pl.lit(None, pl.Date), absent=pl.lit(True)),
        ]
    )
    del clean
    # Who was last paid to another channel or card, asked of the ledger here, for everyone with a
    # difference and a channel (a superset of the payment lines' people: the change report keeps
    # only those with a payment line): a join of a quarter's 4.4M payees on their key, comparing
    # hashes. Asked here rather than once the lines are built, it is over (and DuckDB has let its
    # memory go, see ledger._connect) before the draft's largest frames exist: compared as texts,
    # it took 0.5 GB and a later quarter's draft peaked during it at 3.9-4.0 GiB.
    # The same join names who would be paid to a card new to them that is another person's last
    # paid card (`card_taken`; CARD_SHARED in the change report).
    switched, card_taken = ledger.channel_changes(
        people.select(pl.col("_k", "channel", "card_no").gather(differing)).filter(pl.col("channel").is_not_null()))
    # and the district of each other holder tonight (a handful): their clean row's, or for someone
    # absent from the extract but still held the one the ledger last paid them in, or their
    # quarantined row's (audits 19D, 19E: listed with none). The people are narrowed to those few
    # first: a join of the whole frame took 0.3-0.6 s and 250 MB at 5M people (audit 19E).
    if card_taken.height:
        holders = card_taken.select(pl.col("other_k").unique())
        where = pl.concat([
            people.filter(pl.col("_k").is_in(holders["other_k"].implode())).select("_k", "district_code"),
            quarantined_districts(holders.rename({"other_k": "_k"}), validated.quarantine, placeless)])
        card_taken = card_taken.join(where.unique("_k", keep="first", maintain_order=True).select(
            pl.col("_k").alias("other_k"), pl.col("district_code").alias("other_district")), on="other_k", how="left")
    else:
        card_taken = card_taken.with_columns(other_district=pl.lit(None, pl.String))
    # Each rules version of the window as one bit: a line's versions are the OR of its pieces'.
    vbit = {vid: 1 << i for i, vid in enumerate(sorted({rules.at(m).id for m in months}))}
    masks = {m: "+".join(v for v, bit in vbit.items() if m & bit) for m in range(1, 1 << len(vbit))}
    version_of = pl.DataFrame(
        {"from_mi": list(months),
         "vbit": [vbit[rules.at(m).id] for m in months],
         "num": [rules.at(m).funding.municipal for m in months],
         "den": [rules.at(m).funding.municipal + rules.at(m).funding.district for m in months]},
        schema={"from_mi": pl.Int32, "vbit": pl.Int64, "num": pl.Int64, "den": pl.Int64},
    )
    # Everything up to the final order is integers keyed by pkey, which is also the row of
    # `people`: names, IDs and cards are gathered once, in line order, at the end.
    # Ranks only for the people who have a difference (all of them at a quarter, a handful on
    # most nights), each with its place in line order (district, channel, ID), so that pieces
    # sort on one int64. No text is carried past here: a piece needs only whether its person has
    # a channel (no channel: a no-card entry, not a line).
    ranks = people.select(pl.col("pkey", "channel", "district_code", "_k").gather(differing)).select(
        "pkey", pl.col("channel").is_not_null().alias("has_channel"), _o1=district_rank("district_code"),
        _o2=channel_rank("channel"), _o3=pl.col("_k"),
    )
    by_place = place_order(ranks["_o1"] * 16 + ranks["_o2"], ranks["_o3"])
    place = np.empty(len(by_place), dtype=np.int64)
    place[by_place] = np.arange(len(by_place), dtype=np.int64)
    ranks = ranks.with_columns(_place=place)
    span = max(lw.last - lw.first + 1, 1)
    n = pl.col("to_mi") - pl.col("from_mi") + 1
    # Each piece's person and month looked up by position, not joined: `ranks` is in the order of
    # `differing` (every piece's person is in it), `version_of` in the lines' months (`lw`: the
    # window's, and any a released decision's reach adds before it; every piece starts in them).
    # Two joins of 4.4 million pieces took 0.3-0.4 s.
    at_rank = np.empty(people.height, dtype=np.int64)
    at_rank[differing.to_numpy()] = np.arange(differing.len(), dtype=np.int64)
    rank_row = pl.Series(at_rank[pieces["pkey"].to_numpy()])
    month_row = pieces["from_mi"].cast(pl.Int64) - lw.first

    d = (
        pieces.with_columns(version_of.drop("from_mi").select(pl.all().gather(month_row)))
        .with_columns(ranks.drop("pkey").select(pl.all().gather(rank_row)))
        .lazy()
        .with_columns(
            # a recovery line's piece: anything not paid (the line type PAYMENT or RECOVERY)
            rec=~(pl.col("diff_fen") > 0).fill_null(False),
            n=n.cast(pl.Int64),
            # 七(二): a piece moves a month from what is held to what is due (money.district_moved)
            district_part=district_moved(pl.col("ent_fen"), pl.col("held_fen")) * n,
        )
        .drop("num", "den", "_o2")
        .collect()
    )
    if reissued.height:
        hit = (
            d.select("pkey", "from_mi", "to_mi").join(reissued, on="pkey")
            .filter((pl.col("r_from") <= pl.col("to_mi")) & (pl.col("r_to") >= pl.col("from_mi")))
            .select("pkey", "from_mi").unique().with_columns(reversed=pl.lit(True))
        )
        d = d.join(hit, on=["pkey", "from_mi"], how="left").with_columns(pl.col("reversed").fill_null(False))
    else:
        d = d.with_columns(reversed=pl.lit(False))

    lap("attach_people")
    del pieces, ranks, by_place, ids, at_rank, rank_row, month_row
    no_card_pieces = d.filter(~pl.col("rec") & ~pl.col("has_channel"))
    # Lines in their final order (line type, district, channel, person: the text's order, on
    # integers), pieces by month within a line. A line is then a run of consecutive pieces,
    # numbered by counting where runs start; no hash grouping and no join back to the lines.
    # Only narrow integer columns are sorted (a sort moves every column it carries).
    unsorted = (
        d.lazy()
        .filter(pl.col("rec") | pl.col("has_channel"))
        .select("pkey", "rec", "_o1", "_o3", "from_mi", "to_mi",
                "n", "diff_fen", "ent_fen", "held_fen", "district_part", "reversed", "vbit",
                # line type, then the person's place, then the month within the window
                _k=pl.col("rec").cast(pl.Int64) * (len(place) * span)
                + pl.col("_place") * span + (pl.col("from_mi") - lw.first))
        .collect()
    )
    del d  # the pieces above carry everything still needed from it
    # Sorted five columns at a time, each group let go as soon as its sorted copy exists: a sort
    # of the whole frame held it, its sorted copy and the sort's own buffers at once (0.9 GB over
    # the draft at a 15.35M quarter, its peak). A group is made one chunk before its gather (a
    # gather over the 88 chunks the pieces come in took 2.3 s, against 0.65 s); each sorted
    # column is then one chunk too, which the line totals' kernel reads without a copy.
    order = unsorted["_k"].rechunk().arg_sort()
    by_line: dict[str, pl.Series] = {}
    names = unsorted.columns
    for at in range(0, len(names), 5):
        group = names[at:at + 5]
        by_line.update(unsorted.select(group).rechunk().gather(order).to_dict())
        unsorted = unsorted.drop(group)
    del order, unsorted
    line_pieces = pl.DataFrame(by_line).with_columns(
        seq=((pl.col("pkey") != pl.col("pkey").shift(1)) | (pl.col("rec") != pl.col("rec").shift(1)))
        .fill_null(True).cum_sum().cast(pl.Int64)
    )
    del by_line
    # NEW = never had a published payment line (payees), even if everything paid was recovered.
    ever_paid = ledger.ever_paid(theirs.select("pkey", "_k")).select("pkey")
    death_mi = month_index_expr("death_date")
    out_mi = month_index_expr("hukou_out_date")
    exit_paid = pl.lit(exit_paid_by_month(rules, lw.first, lw.last))

    def stopped_by(exit_mi: pl.Expr) -> pl.Expr:
        """The recovery starts at or after the first month an exit (death, moving out) in `exit_mi`
        leaves unpaid: the next, or that month itself where the version in force then does not pay
        it (`exit_month_paid`; audit 26A: deaths under such a version were recovered as NOT_ENTITLED,
        the change report saying STOP_DEATH)."""
        inside = (exit_mi >= lw.first) & (exit_mi <= lw.last)
        unpaid = pl.when(inside).then(~exit_paid.gather((exit_mi - lw.first).clip(0, lw.last - lw.first)))
        return exit_mi.is_not_null() & (pl.col("first_stop_mi") >= exit_mi + 1 - unpaid.fill_null(False).cast(pl.Int32))

    def cause_is(code: str) -> pl.Expr:
        return pl.lit(code, CAUSES)

    cause = (
        pl.when(pl.col("line_type") != "RECOVERY").then(pl.lit(None, CAUSES))
        .when(pl.col("absent")).then(cause_is("NOT_IN_EXTRACT"))
        .when(stopped_by(death_mi)).then(cause_is("DEATH"))
        .when(stopped_by(out_mi)).then(cause_is("MIGRATION"))
        # Still entitled in those months, for less than was paid: the same ID has the same birth
        # date (SPEC §3 BIRTH_MISMATCH; a corrected date comes as a new ID, NOT_IN_EXTRACT), so
        # what lowered the amount is the rules table, corrected after the payment.
        .when(pl.col("still_entitled")).then(cause_is("AMOUNT_CORRECTION"))
        .otherwise(cause_is("NOT_ENTITLED"))
    )
    # pkey is the row of `people`: what the ledger knows of each person is a gather, not a join.
    n_people = people.height
    last_paid_fen = pl.repeat(None, n_people, dtype=pl.Int64, eager=True).scatter(last_paid["pkey"],
                                                                                  last_paid["last_paid_fen"])
    ever_paid_of = pl.repeat(False, n_people, eager=True).scatter(ever_paid["pkey"], True)
    line_rows = per_line(line_pieces, window.current_from)
    line_pieces = line_pieces.select("seq", "from_mi", "to_mi", "diff_fen")  # all batch_pieces needs of them
    periods = line_periods(line_rows, line_pieces)
    grouped = (
        line_rows
        .lazy()
        .with_columns(
            line_type=pl.when(pl.col("rec")).then(pl.lit("RECOVERY", LINE_TYPES))
            .otherwise(pl.lit("PAYMENT", LINE_TYPES)),
            absent=pl.lit(people["absent"]).gather(pl.col("pkey")),
            death_date=pl.lit(people["death_date"]).gather(pl.col("pkey")),
            hukou_out_date=pl.lit(people["hukou_out_date"]).gather(pl.col("pkey")),
            last_paid_fen=pl.lit(last_paid_fen).gather(pl.col("pkey")),
            ever_paid=pl.lit(ever_paid_of).gather(pl.col("pkey")),
        )
        .with_columns(amount_changed=amount_changed(), still_entitled=pl.col("ent_min") > 0)
        .select(
            "seq", "pkey", "_o1", "_o3", "line_type", "from_mi", "to_mi", "months", "amount_fen", "district_fen",
            line_reason().alias("reason"), cause.alias("cause"),
            pl.col("vmask").replace_strict(masks, return_dtype=pl.Enum(sorted(masks.values()))).alias("rules_version"),
        )
        .collect()
    )
    del line_rows
    lap("group_lines")
    owed = no_card_pieces.group_by("pkey").agg(
        pl.col("from_mi").min(),
        pl.col("to_mi").max(),
        pl.col("n").sum().cast(pl.Int32).alias("months"),
        (pl.col("diff_fen") * pl.col("n")).sum().alias("amount_fen"),
    )
    no_card = (
        pl.concat([owed, people.select(pl.col("person_id", "name", "district_code").gather(owed["pkey"]))],
                  how="horizontal")
        .sort("district_code", "person_id")
        .select(
            pl.lit(batch_id).alias("batch_id"), "person_id", "name", "district_code",
            month_date_expr("from_mi").alias("period_from"), month_date_expr("to_mi").alias("period_to"),
            "months", "amount_fen",
        )
    )
    # The two hashes payees keep (ledger.line_hashes), over the texts of the people with a line in
    # their own order, then gathered into line order as integers: hashing the lines' gathered texts
    # read every text at a random place in memory (1.0-1.3 s at 15.35M against 0.3 s).
    has_line = pl.repeat(False, people.height, eager=True).scatter(grouped["pkey"], True)
    row_of = (has_line.cast(pl.UInt32).cum_sum() - 1).gather(grouped["pkey"])
    with_line = people.select(PAID_WITH).filter(has_line)
    hashes = {k: h.gather(row_of) for k, h in line_hashes(with_line).items()}
    # and the card number alone, for card_shared (hashed in line order it took 0.45 s of a later
    # quarter's 15.35M draft, in memory order 0.05 s)
    card_key = hash_columns([with_line["card_no"]]).gather(row_of)
    del has_line, row_of, with_line
    # Each text column gathered into line order, then let go of (only the districts are read later).
    text = []
    for c in ("person_id", "name", "district_code", "channel", "card_no"):
        text.append(people[c].gather(grouped["pkey"]))
        if c != "district_code":
            people = people.drop(c)
    lines = (
        pl.concat([grouped, pl.DataFrame(text)], how="horizontal")
        .with_columns(
            batch_id=pl.lit(batch_id),
            line_id=numbered(batch_id + "-", grouped["seq"], LINE_NO_DIGITS),
            period_from=month_date_in("from_mi", lw.first, lw.last),
            period_to=month_date_in("to_mi", lw.first, lw.last),
            municipal_fen=pl.col("amount_fen") - pl.col("district_fen"),
            person_key=pl.col("_o3"),
            periods=periods,
            **hashes,
        )
        .select(*LINE_COLUMNS, "paid_with", "card_with", "person_key")
    )
    del text, hashes, periods
    # Of the people, the change report needs only the stopped ones' districts: the rest (0.17 GB at
    # a 15.35M quarter) is let go before the pieces, the checks and the report, where drafts peak.
    stopped_districts = people.select("_k", "district_code").join(stops_frame.select("_k"), on="_k", how="semi")
    del people
    stopped_districts = pl.concat([stopped_districts, quarantined_districts(
        stops_frame.join(stopped_districts, on="_k", how="anti"), validated.quarantine, placeless)])
    # A person quarantined in two districts is listed in each, and counted once (audit 19E): the
    # listings beyond the first, and their monthly amounts, come off the summary's counts.
    again = (stopped_districts.filter(pl.col("_k").is_duplicated()).join(stops_frame.select("_k", "last_fen"), on="_k")
             .filter(pl.col("_k").is_first_distinct().not_()))
    listed_again = {"people": again.height, "fen": int(again["last_fen"].sum())}
    # What the checks, the change report and the totals below still read of the lines' integers
    # (narrowed before the pieces are built: the draft peaks there).
    grouped = grouped.select("line_type", "amount_fen", "reason", "_o1", "_o3")
    at_line = pl.col("seq") - 1  # the piece's line, as a row of `lines` (pieces are in line order)
    batch_pieces = line_pieces.select(
        # a gather shares the lines' text (writing the ids again held 110 MB more at the draft's peak)
        pl.lit(batch_id).alias("batch_id"), pl.lit(lines["line_id"]).gather(at_line).alias("line_id"),
        pl.lit(lines["person_id"]).gather(at_line).alias("person_id"),
        "from_mi", "to_mi", pl.col("diff_fen").alias("fen"), pl.lit(lines["person_key"]).gather(at_line),
    )
    # the pieces of months a published batch had covered (paid_again; none at a fresh quarter)
    covered = ledger.last_covered()
    back_pieces = line_pieces.filter(pl.col("from_mi") <= (covered if covered is not None else -1)).select(
        "seq", "from_mi", to_mi=pl.min_horizontal("to_mi", pl.lit(covered if covered is not None else -1)))
    del line_pieces, theirs
    lap("line_ids_pieces")
    quarantine = validated.quarantine.select(pl.lit(batch_id).alias("batch_id"), pl.all())
    check_lines(lines, grouped["_o3"])
    lap("no_card_checks")

    shared, card_holders = card_shared(lines, card_key, card_taken)
    del card_key
    changes = change_report(lines.with_columns(grouped["_o1"], grouped["_o3"]), stops_frame, stopped_districts,
                            switched, batch_id, overpaid, held_absent, shared,
                            *paid_again(lines, back_pieces, ledger, cancels), rejected_absent=rejected_absent)
    lap("changes")

    # The totals are counted lazily (polars' streaming engine, a block of rows at a time): eager
    # group-bys over 4.4 million texts put 50 MB on a later quarter's peak, which is here.
    totals = {t: (int(c), int(f)) for t, c, f in grouped.lazy().group_by("line_type").agg(
        pl.len(), pl.col("amount_fen").sum()).collect().iter_rows()}
    pay_n, pay_fen = totals.get("PAYMENT", (0, 0))
    rec_n, rec_fen = totals.get("RECOVERY", (0, 0))
    summary = {
        "window": {"first": fmt(window.first), "last": fmt(window.last)} if not window.empty else None,
        "registry": validated.summary(),
        "rules_sha256": rules.sha256(),
        "payments": {"lines": pay_n, "amount_fen": pay_fen},
        "recoveries": {"lines": rec_n, "amount_fen": rec_fen},
        "no_card": {"people": no_card.height, "amount_fen": int(no_card["amount_fen"].sum())},
        "by_reason": {r: int(c) for r, c in
                      grouped.lazy().group_by("reason").len().sort("reason").collect().iter_rows()},
        # Held by the ledger but not in the clean extract: neither paid nor recovered tonight.
        "ledger_people_quarantined": held_quarantined,
        "ledger_people_absent_from_extract": absent.height,
        "recoveries_cancelled": {
            "lines": cancels["line_id"].n_unique(), "people": cancels["person_key"].n_unique(),
            "fen": int((cancels["fen"] * (cancels["to_mi"] - cancels["from_mi"] + 1)).sum())},
        # 四 追溯期: months still owed but older than the retroactive window are not paid.
        "expired": expired,
        # ... and months paid beyond entitlement that are older still: not recovered by a line,
        # listed in the change report (OVERPAID_BEFORE_WINDOW) for the district.
        "overpaid_before_window": {"people": overpaid.height, "months": int(overpaid["months"].sum()),
                                   "fen": int(overpaid["fen"].sum())},
        "stops": stops,
        "changes": {k: {"people": int(p) - (listed_again["people"] if k == "STOP_QUARANTINED" else 0),
                        "fen": int(f) - (listed_again["fen"] if k == "STOP_QUARANTINED" else 0)} for k, p, f in
                    changes.lazy().group_by("change").agg(pl.len(), pl.col("fen").sum()).sort("change").collect()
                    .iter_rows()},
    }
    batch = {
        "batch_id": batch_id,
        "kind": kind,
        "quarter": window.quarter,
        "as_of": as_of,
        "first_month": None if window.empty else window.first,
        "last_month": None if window.empty else window.last,
        "status": "draft",
        "base_seq": base_seq,
        "registry_sha256": validated.sha256,
        "rules_versions": "+".join(versions),
        "created_at": dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0),
        "lines": pay_n,
        "amount_fen": pay_fen,
        "recovery_fen": rec_fen,
        "summary": json.dumps(summary, ensure_ascii=False),
    }
    lap("summary")
    lap.done("draft_stages", batch_id=batch_id)
    return Draft(batch, lines, batch_pieces, no_card, quarantine, changes, stops, cancels, card_holders, ends)


def place_order(group: pl.Series, key: pl.Series) -> np.ndarray:
    """The row order by (group, key), where `group` is a small non-negative integer (district and
    channel ranks, below 2^15) and `key` an int64: the key sorted once, then a stable sort of the
    small group values in that order (numpy's radix sort for 16-bit integers). A two-column sort
    of 4.4 million rows took 0.8 s; this about 0.4 s."""
    if group.len() and not 0 <= group.min() <= group.max() < 1 << 15:  # type: ignore[operator]
        raise ValueError("place_order: group values must be in 0 .. 2^15 - 1")
    by_key = key.arg_sort().to_numpy()
    small = group.to_numpy().astype(np.int16)[by_key]
    return by_key[np.argsort(small, kind="stable")]


# The pieces' columns `_kernels.line_totals` reads, in its order, with the types it is built for.
PER_LINE_INPUTS = {
    "seq": pl.Int64, "from_mi": pl.Int32, "to_mi": pl.Int32, "n": pl.Int64, "diff_fen": pl.Int64,
    "district_part": pl.Int64, "reversed": pl.Boolean, "held_fen": pl.Int64, "ent_fen": pl.Int64, "vbit": pl.Int64,
    "pkey": pl.UInt32, "rec": pl.Boolean, "_o1": pl.Int32, "_o3": pl.Int64,
}
PER_LINE_OUTPUTS = [
    ("seq", pl.Int64), ("pkey", pl.UInt32), ("rec", pl.Boolean), ("_o1", pl.Int32), ("_o3", pl.Int64),
    ("from_mi", pl.Int32), ("to_mi", pl.Int32), ("months", pl.Int64), ("amount_fen", pl.Int64),
    ("district_fen", pl.Int64), ("any_reversed", pl.Boolean), ("any_topup", pl.Boolean), ("any_arrears", pl.Boolean),
    ("ent_min", pl.Int64), ("ent_max", pl.Int64), ("vmask", pl.Int64), ("first_stop_mi", pl.Int32),
]


def per_line(line_pieces: pl.DataFrame, current_from: int) -> pl.DataFrame:
    """One row per line (`seq`, in order) from its pieces, which come in line order.

    One compiled pass over the pieces (`_kernels.line_totals`): in a 15.35M draft 0.5-0.65 s
    against the group-by's 0.7 s, most of it handing 96 chunks over and writing fresh memory
    (0.35 s on a warm heap). `per_line_grouped` is the same as a polars group-by: used when the
    columns are not what the kernel takes (other types, nulls, `seq` out of order, a negative
    month, which the kernel's "no stop month" -1 could not be told from), and by the tests as
    the definition the kernel must meet.
    """
    frame = line_pieces.select(list(PER_LINE_INPUTS))
    if (frame.height == 0 or dict(frame.schema) != PER_LINE_INPUTS
            or frame.null_count().row(0) != (0,) * len(PER_LINE_INPUTS) or not frame["seq"].is_sorted()
            or frame["from_mi"].min() < 0):  # type: ignore[operator]
        return per_line_grouped(line_pieces, current_from)
    from allowance._kernels import line_totals  # numba, loaded by validation already

    rows = frame.height
    as_numpy = {pl.Int64: np.int64, pl.Int32: np.int32, pl.UInt32: np.uint32, pl.Boolean: np.bool_}
    out = {name: np.empty(rows, dtype=as_numpy[dtype]) for name, dtype in PER_LINE_OUTPUTS}
    lines = line_totals(*[frame[c].to_numpy() for c in PER_LINE_INPUTS], current_from, *out.values())
    return pl.DataFrame({name: out[name][:lines] for name, _ in PER_LINE_OUTPUTS}).with_columns(
        pl.col("months").cast(pl.Int32),
        pl.when(pl.col("first_stop_mi") >= 0).then(pl.col("first_stop_mi")).alias("first_stop_mi"),
    )


def per_line_grouped(line_pieces: pl.DataFrame, current_from: int) -> pl.DataFrame:
    """per_line as a polars group-by over `seq` (its definition)."""
    c = pl.col
    return (
        line_pieces.lazy()
        .with_columns(c("seq").set_sorted())
        .group_by("seq", maintain_order=True)
        .agg(
            c("pkey").first(),
            c("rec").first(),
            c("_o1").first(),
            c("_o3").first(),
            c("from_mi").min(),
            c("to_mi").max(),
            c("n").sum().cast(pl.Int32).alias("months"),
            (c("diff_fen") * c("n")).sum().alias("amount_fen"),
            c("district_part").sum().alias("district_fen"),
            c("reversed").any().alias("any_reversed"),
            ((c("held_fen") > 0) & (c("diff_fen") > 0)).any().alias("any_topup"),
            (c("from_mi") < current_from).any().alias("any_arrears"),
            c("ent_fen").min().alias("ent_min"),
            c("ent_fen").max().alias("ent_max"),
            c("vbit").bitwise_or().alias("vmask"),
            c("from_mi").filter(c("ent_fen") == 0).min().alias("first_stop_mi"),
        )
        .collect()
    )


OVERPAID_SCHEMA = {"_k": pl.Int64, "person_id": pl.String, "district_code": pl.String, "months": pl.Int64,
                   "fen": pl.Int64}


def outside_window(
    clean: pl.DataFrame, absent: pl.DataFrame, rules: Rules, window: Window, opening: int, holdings: pl.DataFrame,
    cancelled: pl.DataFrame, blocked: pl.DataFrame | None = None, reach: pl.DataFrame | None = None,
    absent_held: pl.DataFrame | None = None,
) -> tuple[dict[str, int], pl.DataFrame]:
    """What is owed either way before the retroactive window (四 追溯期), from the opening month.

    - Months owed to people (`expired`: people, months, fen): reported, never paid. `cancelled`
      (CANCEL_SCHEMA) is what cancel_owed_before_window takes off recoveries still owed for
      those months: settled, not expired.
    - Months paid beyond entitlement (OVERPAID_SCHEMA, a row per person: months, fen): a death,
      a move out or a disappearance that reached the extract only after the months it ended
      had left the window. SPEC §4's due months start at the window, so no recovery line asks
      for them, but they are never forgotten silently either (§4: "never netted silently"):
      every run reports them (`overpaid_before_window`) and its change report lists each
      person in their district (OVERPAID_BEFORE_WINDOW), for the district to pursue. `absent`
      are the people the ledger holds who are in no row of the extract: every month held for
      them is overpaid. People whose row is quarantined are in neither (facts unknown), and
      people under an active review HOLD (`blocked`) are not listed: a hold freezes their
      months, nothing paid and nothing recovered, until it is lifted. Months a decision in force
      covers are not expired either: a rejection's are not owed (not entitled), a hold's are paid
      on its release. `reach` (released_reach): months a released decision brought into a
      person's due months are not old. `absent_held`: the absent people's held runs (pkey, from_mi,
      to_mi, fen) where they are not all of `holdings`' (settled_by_end: not the months a closed
      record they were last seen with entitled).
    """
    old = before_window(window, opening, rules)
    if window.empty or old.empty:
        return {"people": 0, "months": 0, "fen": 0}, pl.DataFrame(schema=OVERPAID_SCHEMA)
    who = pl.concat([clean.select("pkey", "_k", "person_id", "district_code"),
                     absent.select("pkey", "_k", "person_id", "district_code")])
    # the absent have none; months released_reach brought into the due months are not old
    ent = before_reach(entitlement_segments(clean.lazy(), rules, old.first, old.last), reach)
    if blocked is not None and (decided := keyed(blocked, "decisions", strict=False)).height:
        # nor are months a hold or rejection in force covers (五): a rejection's are not owed (audit
        # 28A: one covering a released person's early month reported it expired once the window
        # passed it), a hold's are paid when it is released, its clock stopped (audit 28B: reported
        # expired meanwhile); neither is lost money
        ent = without_blocked(ent, decided.join(clean.select("pkey", "_k"), on="_k")
                              .select("pkey", "from_mi", "to_mi").lazy())
    runs = ["pkey", "from_mi", "to_mi", "fen"]
    theirs = (holdings.lazy().join(who.lazy().select("pkey", "_k"), on="_k").select(runs) if absent_held is None
              else pl.concat([holdings.lazy().join(clean.lazy().select("pkey", "_k"), on="_k").select(runs),
                              absent_held.lazy().select(runs)]))
    held = before_reach(clip(theirs, old.first, old.last), reach)
    diff = sweep_diff(ent, held, key="pkey").filter(pl.col("diff_fen") != 0).collect()
    owed = diff.filter(pl.col("diff_fen") > 0)
    if cancelled.height:
        owed = less_cancelled(owed, cancelled.join(clean.select("pkey", person_key="_k"), on="person_key")
                              .select("pkey", month_idx="from_mi", fen="fen"))
    n = pl.col("to_mi") - pl.col("from_mi") + 1
    owed = owed.select("pkey", n=n, fen=pl.col("diff_fen") * n)
    expired = {"people": owed["pkey"].n_unique(), "months": int(owed["n"].sum()), "fen": int(owed["fen"].sum())}
    overpaid = (
        diff.filter(pl.col("diff_fen") < 0)
        .group_by("pkey").agg(n.sum().cast(pl.Int64).alias("months"), (-pl.col("diff_fen") * n).sum().alias("fen"))
        .join(who, on="pkey").sort("district_code", "_k")
        .select(list(OVERPAID_SCHEMA))
    )
    if blocked is not None and blocked.height:
        overpaid = overpaid.join(held_keys(blocked), on="_k", how="anti")
    return expired, overpaid


def stopped_people(
    clean: pl.DataFrame, rules: Rules, window: Window, held_rows: pl.DataFrame, blocked: pl.DataFrame,
    entitled: pl.DataFrame | None = None, absent: pl.Series | None = None,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Who was being paid and would no longer be (the circuit breaker's count, issue 4).

    Recipients: people the ledger pays for the reference month — the month before the quarter
    (quarterly run) or the last pre-disbursed month (supplement). Stopped: recipients not
    entitled in the check month (the quarter's first month, or that last month), including
    those missing from the clean extract. `held_rows` is the holdings with each person's row of
    `clean` (pkey), null for people without one. Returns person rows (_k, person_id, cause, last_fen).
    `entitled`, the window's entitlement segments when already computed, is reused if it
    covers the check month (the segments of one month are those of any window, cut to it).
    `absent`: the keys of the people in no row of the extract (absent_people); a recipient
    without a clean row who is not among them has a quarantined row (cause QUARANTINED: an audit
    found them reported NOT_IN_EXTRACT, though their row was there, to be mended). Without it,
    every one without a clean row is NOT_IN_EXTRACT. A recipient the extract entitles whom a
    district's HOLD or REJECT in force in the check month stops is HELD or REJECTED; one the
    extract stops too (a death, a move, a missing row) has its cause. The counts are recipients,
    by_review (recipients under a decision in force, whatever stops them) and stopped (the
    others the extract stops: what the breaker judges, against recipients - by_review).
    """
    empty = pl.DataFrame(schema={"_k": pl.Int64, "person_id": pl.String, "cause": pl.String, "last_fen": pl.Int64})
    if window.empty:
        return empty, {"recipients": 0, "stopped": 0, "by_review": 0}
    ref = window.current_from - 1 if window.kind == "quarterly" else window.last
    check = window.current_from if window.kind == "quarterly" else window.last
    recipients = held_rows.filter((pl.col("from_mi") <= ref) & (pl.col("to_mi") >= ref) & (pl.col("fen") > 0)).select(
        "_k", "pkey", pl.col("fen").alias("last_fen")
    )
    if recipients.height == 0:
        return empty, {"recipients": 0, "stopped": 0, "by_review": 0}
    if entitled is not None and window.first <= check <= window.last:
        ent = entitled.lazy().filter((pl.col("from_mi") <= check) & (pl.col("to_mi") >= check)).with_columns(
            from_mi=pl.lit(check, pl.Int32), to_mi=pl.lit(check, pl.Int32))
    else:
        ent = entitlement_segments(clean.lazy(), rules, check, check)
    unblocked = ent  # the check month's entitlement as the extract gives it, no decision taken
    if blocked.height:
        ent = without_blocked(ent, keyed(blocked, "decisions", strict=False).lazy()
                              .join(clean.lazy().select("pkey", "_k"), on="_k").select("pkey", "from_mi", "to_mi"))
    # pkey is the row of `clean`: who is still entitled is a flag by row, looked up by a gather
    # (not a join of 4.4 million recipients); a recipient without a clean row is not entitled.
    alive = np.zeros(clean.height, dtype=np.bool_)
    alive[ent.select("pkey").collect()["pkey"].to_numpy()] = True
    # Entitled but with no channel to be paid through (the extract's card gone, or a channel the
    # version in force does not name): at a quarter their payments stop too, to the no-card list.
    # An audit had a whole channel go so, 60 % of the recipients, with no stop counted and nothing
    # in the change report. A night stops nothing of theirs (the quarter's months stay paid), so
    # it does not count them, night after night, until the quarter does.
    carded = (np.asarray(clean["channel"].is_not_null().to_numpy(), dtype=np.bool_) if window.kind == "quarterly"
              else np.ones(clean.height, dtype=np.bool_))
    entitled = pl.Series(alive).gather(recipients["pkey"]).fill_null(False)
    paid_on = entitled & pl.Series(carded).gather(recipients["pkey"]).fill_null(False)
    gone = recipients.with_columns(entitled=entitled).filter(~paid_on)  # a handful
    # Stopped by a district's decision in force in the check month (五 资格审定) alone, the extract
    # entitling them: HELD or REJECTED, not the extract's doing, so not counted by the breaker
    # (audit 27B: holds of 2.2 % of the recipients refused every night as a broken extract, listed
    # as STOP_OTHER). One the extract stops too (a death, a move, a row gone) is stopped by it, and
    # counted: the district is told of the death, and a broken extract is one whoever it hits
    # (audit 27D). A handful of rows.
    decided = (keyed(blocked, "decisions", strict=False)
               .filter((pl.col("from_mi") <= check) & (pl.col("to_mi").is_null() | (pl.col("to_mi") >= check)))
               .group_by("_k").agg(pl.col("action").first().alias("decided"))
               if blocked.height else pl.DataFrame(schema={"_k": pl.Int64, "decided": pl.String}))
    # The breaker judges the recipients no decision is in force for (audit 27E: the held the extract
    # stops had stayed in its base, the others left it); `under` counts the rest, by_review.
    gone = gone.join(decided, on="_k", how="left").with_columns(under=pl.col("decided").is_not_null())
    if blocked.height:
        theirs = gone.filter(pl.col("decided").is_not_null())["pkey"].drop_nulls()
        free = unblocked.filter(pl.col("pkey").is_in(theirs.implode())).select("pkey").collect()["pkey"]
        # entitled but for the decision: HELD or REJECTED, with a card or not (audit 27F: listed
        # STOP_NO_CARD, they were not on the no-card list, their months being frozen or rejected)
        gone = gone.with_columns(pl.when(pl.col("pkey").is_in(free.implode())).then("decided").alias("decided"))
    at = gone["pkey"]
    stopped = (
        gone.with_columns(clean["death_date"].gather(at), clean["hukou_out_date"].gather(at))
        .with_columns(
            cause=pl.when(pl.col("decided") == "HOLD").then(pl.lit("HELD"))
            .when(pl.col("decided") == "REJECT").then(pl.lit("REJECTED"))
            .when(pl.col("entitled")).then(pl.lit("NO_CARD"))
            .when(pl.col("death_date").is_not_null()).then(pl.lit("DEATH"))
            .when(pl.col("hukou_out_date").is_not_null()).then(pl.lit("MIGRATION"))
            .when(pl.col("pkey").is_null() & (pl.col("_k").is_in(absent.implode()) if absent is not None
                                              else pl.lit(True))).then(pl.lit("NOT_IN_EXTRACT"))
            .when(pl.col("pkey").is_null()).then(pl.lit("QUARANTINED"))
            .otherwise(pl.lit("OTHER"))
        )
        .select("_k", idcard.id_from_key_expr("_k").alias("person_id"), "cause", "last_fen", "under")
    )
    by_review = int(stopped["under"].sum())
    return stopped.drop("under"), {"recipients": recipients.height, "stopped": stopped.height - by_review,
                                   "by_review": by_review}


def card_shared(lines: pl.DataFrame, card_key: pl.Series, taken: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The payment lines to a card number that another person is paid to: in this batch (the same
    number on another person's payment line, whatever channel either names: a batch pays a person
    once, check_lines), or, where the card is new to its person, the number the ledger last paid
    someone else to (`taken`: _k, other_k, other_district; Ledger.channel_changes). A card is one person's (a
    社保卡 or a 敬老卡, each a bank account of its own): a number under two IDs sends one person's
    allowance to another's account, or is a registry error. SPEC §1 still entitles both, so they
    are paid, and listed for the district to check and to hold (五 资格审定). `card_key`: each
    line's card number hashed alone (hash_columns), in line order.

    Returns the change report's CARD_SHARED rows (district_code, person_id, fen: the line's
    amount, _k) and every holder of each such card (card_no, person_id, district_code, seen:
    `batch` for a line of this batch, `ledger` for the person the ledger last paid to it, with the
    district of their row tonight, or the ledger's if absent from the extract: `taken`'s
    other_district), ordered by card and ID, for `card_shared.parquet`."""
    # Rows, then the few columns of the few rows listed: filtering the lines whole would copy a
    # quarter's 4.4M lines where the draft peaks. The number alone is compared (card_with hashes
    # the channel too, and a number under two channel labels is the same account: audit 19B).
    pay = (lines["line_type"] == "PAYMENT").arg_true()
    in_batch = idcard.duplicated(card_key.gather(pay))
    at = pay.filter(in_batch | lines["person_key"].gather(pay).is_in(taken["_k"].implode()))
    listed = lines.select(pl.col("district_code", "person_id", "card_no").gather(at),
                          fen=pl.col("amount_fen").gather(at), _k=pl.col("person_key").gather(at))
    holders = pl.concat([
        listed.select("card_no", "person_id", "district_code", seen=pl.lit("batch")),
        taken.join(listed.select("_k", "card_no"), on="_k").select(
            "card_no", person_id=idcard.id_from_key_expr("other_k"), district_code="other_district",
            seen=pl.lit("ledger")),
    ]).unique(["card_no", "person_id"], keep="first").sort("card_no", "person_id")
    return listed.drop("card_no"), holders


def paid_again(lines: pl.DataFrame, back_pieces: pl.DataFrame, ledger: Ledger,
               cancels: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """People a draft pays or stops recovering from again after a stop, for their district to
    check before it approves (五 资格审定). Audit 25B: a death date gone from one night's extract
    paid a person dead since February 18 months of arrears, cancelled the recovery of the month
    after the death, and the change report said "no changes". SPEC §1 entitles whoever the
    extract says is alive; the district is the one who can tell a death withdrawn by mistake.
    (RESUMED, RECOVERY_CANCELLED), each district_code, person_id, fen, _k:
    - RESUMED: a payment line (not NEW) that pays a month a published batch had covered and the
      ledger does not hold for the person, other than a month the bank returned: a run went
      past that month without paying them (a death or move-out withdrawn, back in the extract or
      out of quarantine, a hold released, a card again, a hukou date corrected). Month by month,
      from `back_pieces` (seq: the line's row + 1, from_mi, to_mi: the draft's pieces up to the
      last month covered): a re-issue's line pays such months too (audit 25C: a dead person's
      failed payment, re-issued with the months after the death once it was withdrawn, was a
      REISSUE line, and listed nothing). fen: the line's amount.
    - RECOVERY_CANCELLED: a recovery still owed that this draft cancels, the person being
      entitled again to its months. fen: what it no longer claims."""
    schema = {"district_code": pl.String, "person_id": pl.String, "fen": pl.Int64, "_k": pl.Int64}
    keyed = back_pieces.with_columns(
        pl.lit(lines["line_type"]).gather(pl.col("seq") - 1).alias("line_type"),
        pl.lit(lines["reason"]).cast(pl.String).gather(pl.col("seq") - 1).alias("reason"),
        pl.lit(lines["person_key"]).gather(pl.col("seq") - 1).alias("_k"),
    ).filter((pl.col("line_type") == "PAYMENT") & (pl.col("reason") != "NEW"))
    months = explode_months(keyed.lazy()).select("seq", "_k", mi="month_idx").collect()
    rows = ledger.not_held_after_cover(months)["seq"].unique().sort() - 1
    resumed = lines.select(pl.col("district_code", "person_id").gather(rows), pl.col("amount_fen").gather(rows)
                           .alias("fen"), pl.col("person_key").gather(rows).alias("_k")).cast(schema)  # type: ignore[arg-type]
    cancelled = (cancels.group_by("person_key", "district_code")
                 .agg((pl.col("fen") * (pl.col("to_mi") - pl.col("from_mi") + 1)).sum().alias("fen"))
                 .select("district_code", person_id=idcard.id_from_key_expr("person_key"), fen="fen",
                         _k="person_key").cast(schema))  # type: ignore[arg-type]
    return resumed.sort("_k"), cancelled.sort("_k")


def change_report(
    lines: pl.DataFrame, stops: pl.DataFrame, people: pl.DataFrame, switched: pl.DataFrame, batch_id: str,
    overpaid: pl.DataFrame | None = None, held_absent: pl.DataFrame | None = None,
    card_shared: pl.DataFrame | None = None, resumed: pl.DataFrame | None = None,
    recovery_cancelled: pl.DataFrame | None = None, rejected_absent: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """What changed, person by person: new entrants, stops (death, migration, …), band and channel
    changes, and who was overpaid for months older than the retroactive window (`overpaid`,
    outside_window's OVERPAID_SCHEMA: a standing list, on every run, since no line recovers it).

    Columns: batch_id, district_code, change, person_id, fen (the line's amount; for a stop,
    the monthly amount that stops; for an overpayment before the window, all of it). Ordered
    by district, change, person; `lines` may carry the integer ranks `_o1` (district) and `_o3`
    (ID key) so they are not derived from text again.
    `switched` (Ledger.channel_changes): _k of the people last paid to another channel or card
    than they have now (a payment line's channel and card are its person's).
    `held_absent`, `rejected_absent` (decided_not_in_extract): people under a hold, or rejected,
    who are in no row of the extract, listed as HELD_NOT_IN_EXTRACT, REJECTED_NOT_IN_EXTRACT with
    all the ledger holds for them.
    `card_shared` (card_shared): people paid to a card another person is paid to, CARD_SHARED.
    `resumed`, `recovery_cancelled` (paid_again): people paid, or no longer recovered from, again
    after a stop: RESUMED, RECOVERY_CANCELLED.
    """
    o1 = pl.col("_o1") if "_o1" in lines.columns else district_rank("district_code")
    o3 = pl.col("_o3") if "_o3" in lines.columns else idcard.order_key_expr("person_id")
    codes = sorted(CHANGE_CODES)
    # On the integer key: a handful of stops against 5 million people.
    stopped = (
        stops.lazy().join(people.lazy().select("_k", "district_code"), on="_k", how="left")
        .select(pl.col("district_code").fill_null("unknown"), (pl.lit("STOP_") + pl.col("cause")).alias("change"),
                "person_id", pl.col("last_fen").alias("fen"), pl.col("_k").alias("_o3"))
        .collect()
    )
    for listed, code in ((overpaid, "OVERPAID_BEFORE_WINDOW"), (held_absent, "HELD_NOT_IN_EXTRACT"),
                         (rejected_absent, "REJECTED_NOT_IN_EXTRACT"), (card_shared, "CARD_SHARED"),
                         (resumed, "RESUMED"), (recovery_cancelled, "RECOVERY_CANCELLED")):
        if listed is not None and listed.height:
            stopped = pl.concat([stopped, listed.select(
                "district_code", change=pl.lit(code), person_id="person_id", fen="fen", _o3="_k")],
                how="vertical_relaxed")
    # Each change as a number, which is also its rank in the order: the codes in their text's order,
    # then any stop cause outside them (none is expected).
    texts = codes + stopped.filter(~pl.col("change").is_in(codes))["change"].unique().sort().to_list()
    # The report's rows as integers: the row they take their texts from (a line's row, or after
    # the lines a stop's) and the ranks of its order (district, change, ID key). The texts are
    # gathered once, in the report's order, from the lines themselves: a report built of texts
    # came in 44 chunks a column, and gathering 4.4 million rows across them took 0.5-0.8 s.
    pay = lines.lazy().with_row_index("_row").filter(pl.col("line_type") == "PAYMENT").select(
        "_row", "reason", o1.alias("_o1"), o3.alias("_o3"))
    cols = ["_row", "_o1", "_o2", "_o3"]

    def change(code: str) -> dict[str, pl.Expr]:  # its number, a constant
        return {"_o2": pl.lit(texts.index(code), pl.Int32)}

    rows = pl.concat([
        pay.filter(pl.col("reason") == "NEW").with_columns(**change("NEW_ENTRANT")).select(cols),
        pay.filter(pl.col("reason") == "BAND_CHANGE").with_columns(**change("BAND_CHANGE")).select(cols),
        pay.join(switched.lazy(), left_on="_o3", right_on="_k", how="semi")
        .with_columns(**change("CHANNEL_CHANGE")).select(cols),
        stopped.lazy().with_row_index("_row", offset=lines.height).select(
            "_row", _o1=district_rank("district_code"),
            _o2=pl.col("change").replace_strict({t: i for i, t in enumerate(texts)}, return_dtype=pl.Int32),
            _o3=pl.col("_o3")),
    ]).collect()
    # By district, change, person: the two small ranks as one, then place_order's two cheap sorts
    # (at a first quarter all 4.4 million lines are new entrants).
    order = place_order(rows["_o1"] * len(texts) + rows["_o2"], rows["_o3"])
    at = rows.select(pl.col("_row", "_o2").gather(order))
    source = pl.concat([lines.select("district_code", "person_id", pl.col("amount_fen").alias("fen")),
                        stopped.select("district_code", "person_id", "fen")])
    # The batch id as a literal: polars keeps it as one value, not 4.4 million copies (0.14 GB).
    return source.select(
        pl.lit(batch_id).alias("batch_id"),
        pl.col("district_code").gather(at["_row"]),
        pl.Series("change", texts, dtype=pl.String).gather(at["_o2"]),
        pl.col("person_id").gather(at["_row"]),
        pl.col("fen").cast(pl.Int64).gather(at["_row"]),
    )


CHANGE_CODES = ("NEW_ENTRANT", "BAND_CHANGE", "CHANNEL_CHANGE", "STOP_DEATH", "STOP_MIGRATION",
                "STOP_NOT_IN_EXTRACT", "STOP_QUARANTINED", "STOP_NO_CARD", "STOP_HELD", "STOP_REJECTED", "STOP_OTHER",
                "OVERPAID_BEFORE_WINDOW",
                "HELD_NOT_IN_EXTRACT", "REJECTED_NOT_IN_EXTRACT", "CARD_SHARED", "RESUMED", "RECOVERY_CANCELLED")


def district_rank(col: str) -> pl.Expr:
    """Districts in code order (the order of their text), anything else after them."""
    return pl.col(col).replace_strict({c: i for i, c in enumerate(sorted(DISTRICT_CODES))},
                                      default=len(DISTRICT_CODES), return_dtype=pl.Int32)


def channel_rank(col: str) -> pl.Expr:
    """Channels in the order of their text, no channel last."""
    return pl.col(col).replace_strict({c: i for i, c in enumerate(sorted(CHANNELS))}, default=len(CHANNELS),
                                      return_dtype=pl.Int32).fill_null(len(CHANNELS) + 1)


def check_lines(lines: pl.DataFrame, id_keys: pl.Series | None = None) -> None:
    """STYLE 10: checks on outputs before anything is stored or published.

    One pass of counts over the lines (no filtered copies of a 4-million-line frame); the
    first offending line id is looked up only when a check fails.
    """
    pay = pl.col("line_type") == "PAYMENT"
    rec = pl.col("line_type") == "RECOVERY"
    checks = {
        "payment line(s) not positive": pay & (pl.col("amount_fen") <= 0),
        "recovery line(s) not negative": rec & (pl.col("amount_fen") >= 0),
        "line(s) whose shares do not sum to the amount":
            pl.col("municipal_fen") + pl.col("district_fen") != pl.col("amount_fen"),
        "payment line(s) without a card": pay & (pl.col("channel").is_null() | pl.col("card_no").is_null()),
    }
    if "periods" in lines.columns:  # lines drafted before it have none (outputs.PAYMENT_COLUMNS)
        # Months from one first of a month to another, from the days between them in integers: the
        # nearest whole number of average months (30.436875 days), exact for every pair of month
        # starts 1900-2200 up to 50 years apart (checked exhaustively); calendar years and months of
        # 2 × 4.4M dates had cost a publication 0.2 s.
        days = pl.col("period_to").cast(pl.Int64) - pl.col("period_from").cast(pl.Int64)
        every = pl.col("months") == (days * 1_000_000 + 15_218_437) // 30_436_875 + 1
        checks["line(s) whose `periods` does not say that they skip months of their period"] = (
            every == pl.col("periods").is_not_null())
    counts = lines.select(**{k: e.fill_null(False).sum() for k, e in checks.items()}).row(0, named=True)
    problems: list[str] = []
    for what, count in counts.items():
        if count:
            first = lines.filter(checks[what].fill_null(False))["line_id"][0]
            problems.append(f"{count} {what}, e.g. {first}")
    if "periods" in lines.columns and (wrong := periods_not_months(lines)):
        problems.append(f"{len(wrong)} line(s) whose `periods` does not name its months, e.g. {wrong[0]}")
    if id_keys is not None:  # the draft's own exact keys
        dup = int(idcard.duplicated(lines.select(pl.lit(id_keys).filter(pay)).to_series()).sum())
    else:  # a publication judges the IDs' text as stored, independently of the stored keys
        dup = repeated_rows(lines.select(pl.col("person_id").filter(pay)).to_series())
    if dup:
        problems.append(f"{dup} payment line(s) of a person paid twice in one batch")
    if problems:
        raise RefusedError("output checks failed: " + "; ".join(problems))


def periods_not_months(lines: pl.DataFrame) -> list[str]:
    """The line ids whose `periods` text is not runs of months (`YYYY-MM` or `YYYY-MM..YYYY-MM`, in
    order, apart, at least two) from period_from to period_to adding up to `months` (audit 20D: the
    checks read only whether it was empty). The few lines that have one are read."""
    said = lines.filter(pl.col("periods").is_not_null()).select("line_id", "periods", "months", "period_from",
                                                                 "period_to")
    if said.height == 0:
        return []
    month = r"[0-9]{4}-(?:0[1-9]|1[0-2])"  # ASCII digits, a month 01-12 (audit 20E: 2025-14, 2025-00, ２０２５)
    runs = (said.with_columns(run=pl.col("periods").str.split(",")).explode("run")
            .with_columns(ok=pl.col("run").str.contains(rf"^{month}(\.\.{month})?$"),
                          a=pl.col("run").str.slice(0, 7), b=pl.col("run").str.slice(-7, 7))
            .with_columns(month_index_expr((pl.col(c) + "-01").str.to_date("%Y-%m-%d", strict=False)).alias(c)
                          for c in ("a", "b"))
            .with_columns(apart=(pl.col("a") > pl.col("b").shift(1).over("line_id") + 1).fill_null(True)))
    judged = runs.group_by("line_id", maintain_order=True).agg(
        good=(pl.col("ok") & (pl.col("a") <= pl.col("b")) & pl.col("apart")).fill_null(False).all()
        & (pl.len() > 1)
        & ((pl.col("b") - pl.col("a") + 1).sum() == pl.col("months").first())
        & (pl.col("a").first() == month_index_expr("period_from").first())
        & (pl.col("b").last() == month_index_expr("period_to").first()))
    return judged.filter(~pl.col("good").fill_null(False))["line_id"].to_list()


def repeated_rows(texts: pl.Series) -> int:
    """How many non-null rows of `texts` hold a text that occurs on another row too.

    Their 64-bit hashes are sorted, and only the rows of a repeated hash are compared as text,
    so a hash collision is never counted. At a 15.35M quarter's 4.4M IDs: 0.1 s, where parsing
    them to keys took 0.5-0.6 s and polars' `is_duplicated` on the texts 1.4-1.7 s."""
    texts = texts.drop_nulls()
    maybe = texts.filter(idcard.duplicated(texts.hash().reinterpret(signed=True)))
    return int(maybe.is_duplicated().sum())


@functools.cache
def code_version() -> str:
    """The engine's version and a digest of its source, as a manifest names the code that made
    it: the version number alone stayed 0.1.0 across engines that pay differently (an audit)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return f"{__version__}+{h.hexdigest()[:12]}"
