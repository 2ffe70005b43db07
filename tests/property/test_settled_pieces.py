"""Entitlement minus ledger: the short cuts give exactly the sweep's pieces.

`batch._settled_pieces` hands the sweep only the people whose held runs disagree with their
entitlement; for everyone else it writes the pieces directly. Whatever the runs, the pieces it
writes plus the sweep of the rest must be the sweep of everyone, piece for piece (same cuts).
"""

from __future__ import annotations

import itertools

import polars as pl
from hypothesis import given
from hypothesis import strategies as st
from registry_strategies import PROPERTY

from allowance.batch import _as_runs, _only_differing, _runs_differ, _settled_pieces, _with_last_held
from allowance.segments import sweep_diff

FIRST, LAST = 100, 111  # a window of 12 months


@st.composite
def runs(draw: st.DrawFn, fens: st.SearchStrategy[int]) -> list[tuple[int, int, int]]:
    """Non-overlapping runs of months inside the window, touching or not, equal amounts or not."""
    cuts = sorted(draw(st.sets(st.integers(FIRST, LAST + 1), max_size=6)))
    out = []
    for a, b in itertools.pairwise(cuts):
        if draw(st.booleans()):
            out.append((a, b - 1, draw(fens)))
    return out


AMOUNTS = st.sampled_from([7500, 15000, 18000, 35000])


@st.composite
def people(draw: st.DrawFn) -> tuple[pl.DataFrame, pl.DataFrame]:
    ent, held = [], []
    for p in range(draw(st.integers(1, 12))):
        e = draw(runs(AMOUNTS))
        kind = draw(st.sampled_from(["none", "same_prefix", "same_all", "other"]))
        if kind == "same_prefix" and e:
            h = draw(st.integers(FIRST, LAST))
            held_runs = [(a, min(b, h), f) for a, b, f in e if a <= h]
        elif kind == "same_all":
            held_runs = list(e)
        elif kind == "other":
            held_runs = draw(runs(st.sampled_from([7500, 15000, -7500, 35000])))
        else:
            held_runs = []
        ent += [(p, a, b, f) for a, b, f in e]
        held += [(p, a, b, f) for a, b, f in held_runs]
    schema = {"pkey": pl.UInt32, "from_mi": pl.Int32, "to_mi": pl.Int32}
    return (pl.DataFrame(ent, schema={**schema, "monthly_fen": pl.Int64}, orient="row"),
            pl.DataFrame(held, schema={**schema, "fen": pl.Int64}, orient="row"))


@PROPERTY
@given(people())
def test_settled_plus_swept_is_the_sweep(frames: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    ent, held = frames
    everyone = sweep_diff(ent.lazy(), held.lazy(), key="pkey").collect()
    settled, ent_rest, held_rest = _settled_pieces(ent, held)
    both = pl.concat([settled, sweep_diff(ent_rest.lazy(), held_rest.lazy(), key="pkey").collect()])
    assert both.sort(both.columns).equals(everyone.sort(everyone.columns))


@PROPERTY
@given(people())
def test_dropping_the_unchanged_first_changes_nothing(frames: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    """A supplement first drops everyone whose runs are the ledger's (_only_differing)."""
    ent, held = frames
    everyone = sweep_diff(ent.lazy(), held.lazy(), key="pkey").collect()
    settled, ent_rest, held_rest = _settled_pieces(*_only_differing(ent, held))
    both = pl.concat([settled, sweep_diff(ent_rest.lazy(), held_rest.lazy(), key="pkey").collect()])
    assert both.sort(both.columns).equals(everyone.sort(everyone.columns))


def _frame(rows: list[tuple[int, int, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"pkey": pl.UInt32, "from_mi": pl.Int32, "to_mi": pl.Int32, "fen": pl.Int64},
                        orient="row")


@PROPERTY
@given(people(), st.sampled_from([0, 1 << 40, -(1 << 62)]), st.sampled_from([0, 1_000_000, (1 << 32) - 20]))
def test_runs_differ_is_the_set_difference(frames: tuple[pl.DataFrame, pl.DataFrame], shift: int, far: int) -> None:
    """Exactly the people whose sets of runs differ, whether the runs fit one int64 code or not
    (amounts 2^62 apart, or 2^40 apart with person keys near 2^32, take the four-column join)."""
    ent, held = frames
    a = _frame([(p + far, f, t, fen) for p, f, t, fen in ent.iter_rows()])
    b = _frame([(p + far, f, t, fen + shift if fen < 0 else fen) for p, f, t, fen in held.iter_rows()])
    sa, sb = set(a.iter_rows()), set(b.iter_rows())
    want = sorted({r[0] for r in sa ^ sb})
    assert sorted(_runs_differ(a, b)["pkey"].to_list()) == want


ONE_RUN = st.tuples(st.integers(FIRST, LAST), st.integers(0, 3), st.sampled_from([7500, 15000, -7500]))


@PROPERTY
@given(st.lists(st.tuples(ONE_RUN, st.sampled_from(["same", "from", "to", "fen", "none", "two"])), max_size=30))
def test_runs_differ_with_one_run_a_side(people: list[tuple[tuple[int, int, int], str]]) -> None:
    """Most people have one run on each side: a difference in any one of from_mi, to_mi or fen
    is found, and an equal run is not (mixed with people who have a second run held)."""
    ent, held = [], []
    for p, ((a, length, fen), change) in enumerate(people):
        b = min(a + length, LAST)
        ent.append((p, a, b, fen))
        if change == "same":
            held.append((p, a, b, fen))
        elif change == "from":
            held.append((p, a - 1, b, fen))
        elif change == "to":
            held.append((p, a, b + 1, fen))
        elif change == "fen":
            held.append((p, a, b, fen + 1))
        elif change == "two":
            held += [(p, a, b, fen), (p, b + 1, b + 1, fen)]
    want = sorted(p for p, (_, change) in enumerate(people) if change != "same")
    assert sorted(_runs_differ(_frame(ent), _frame(held))["pkey"].to_list()) == want
    assert sorted(_runs_differ(_frame(held), _frame(ent))["pkey"].to_list()) == want


@PROPERTY
@given(people(), st.sampled_from([0, (1 << 32) - 20]))
def test_last_held_month_is_each_persons_maximum(frames: tuple[pl.DataFrame, pl.DataFrame], far: int) -> None:
    """_h, taken in an array by pkey (or grouped, for keys too sparse for one), is the last month
    held for the run's person, null for someone with nothing held."""
    ent, held = frames
    runs = _frame([(p + far, f, t, fen) for p, f, t, fen in _as_runs(ent).iter_rows()])
    held = _frame([(p + far, f, t, fen) for p, f, t, fen in held.iter_rows()])
    last: dict[int, int] = {}
    for p, _, t, _ in held.iter_rows():
        last[p] = max(t, last.get(p, t))
    got = _with_last_held(runs, held)
    assert got.columns == [*runs.columns, "_h"] and got.schema["_h"] == pl.Int32
    assert got.drop("_h").equals(runs)
    assert got["_h"].to_list() == [last.get(p) for p in runs["pkey"].to_list()]
