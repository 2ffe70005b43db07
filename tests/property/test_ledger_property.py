"""After a published run the ledger holds exactly the entitlement: never a month paid twice.

Two quarters: 2025Q3 on one extract, then 2025Q4 on a later extract in which some people died
or moved out (some of them late, inside the quarter already paid), changed or lost their card,
left the extract, or were added. After publishing the second run, every person-month of its
window holds what SPEC §1 says is due (payments and recoveries), except that a person with no
card is never paid a new month. A person absent from the extract has no entitlement (SPEC §4:
entitlement minus ledger), so their months in the window are recovered; months before the
window are never touched. The mass changes are deliberate, so the circuit breakers are open.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from registry_strategies import (
    OPEN,
    PROPERTY,
    QUARTER,
    Drawn,
    expected_months,
    month_index,
    person_rows,
    registries,
    scenario,
)

AS_OF_2 = dt.date(2025, 10, 1)
Q4_LAST = month_index(dt.date(2025, 12, 1))


@st.composite
def later_extract(draw: st.DrawFn, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        change = draw(st.sampled_from(["same", "same", "died", "moved_out", "card", "no_card", "gone"]))
        r = dict(r)
        lo = max(r["birth_date"], dt.date(2025, 5, 1))
        if change == "died" and r["death_date"] is None:
            r["death_date"] = draw(st.dates(min_value=lo, max_value=AS_OF_2))
        elif change == "moved_out" and r["hukou_out_date"] is None:
            r["hukou_out_date"] = draw(st.dates(min_value=max(lo, r["hukou_since"] or lo), max_value=AS_OF_2))
        elif change == "card":
            r["channel"] = draw(st.sampled_from(["senior_card", "social_security_card"]))
            r["card_no"] = draw(st.from_regex(r"[0-9]{16}", fullmatch=True))
        elif change == "no_card":
            r["channel"], r["card_no"] = None, None
        elif change == "gone":
            continue
        out.append(r)
    used = {int(r["person_id"][14:17]) for r in rows}
    new = st.lists(st.integers(0, 999).filter(lambda s: s not in used), min_size=0 if out else 1, max_size=4,
                   unique=True)
    for s in draw(new):
        out.append(draw(person_rows(AS_OF_2, s)))
    return out


def as_map(net: pl.DataFrame) -> dict[tuple[str, int], int]:
    return {(p, m): f for p, m, f in net.select("person_id", "month_idx", "net_fen").iter_rows() if f != 0}


@settings(PROPERTY, max_examples=20)
@given(registries(), st.data())
def test_after_two_quarters_the_ledger_holds_exactly_the_entitlement(drawn: Drawn, data: st.DataObject) -> None:
    later = data.draw(later_extract(drawn.rows))
    with scenario(drawn.opening) as sc:
        sc.publish(sc.quarterly(QUARTER, drawn.rows, drawn.as_of_text))
        before = as_map(sc.net())
        second = sc.quarterly("2025Q4", later, AS_OF_2.isoformat(), breakers=OPEN)
        lines = sc.lines(second.batch_id)
        assert lines.filter((pl.col("line_type") == "PAYMENT") & (pl.col("amount_fen") <= 0)).height == 0
        assert lines.filter((pl.col("line_type") == "RECOVERY") & (pl.col("amount_fen") >= 0)).height == 0
        sc.publish(second)
        after = as_map(sc.net())

    first = max(month_index(dt.date.fromisoformat(drawn.opening + "-01")), month_index(AS_OF_2) - 24)
    present = {r["person_id"] for r in later}
    # a closed record (a death or move-out date) the first quarter published: absent later, it is
    # reckoned by that row's months (README "A closed record dropped from the extract")
    closed = {r["person_id"]: (max(month_index(r["birth_date"]) + 65 * 12,
                                   month_index(r["hukou_since"]) if r["hukou_since"] else 0),
                               min(month_index(d) for d in (r["death_date"], r["hukou_out_date"]) if d))
              for r in drawn.rows if r["death_date"] or r["hukou_out_date"]}
    for pid, month in set(before) | set(after):
        if month < first:  # outside the window: left alone
            assert after.get((pid, month)) == before.get((pid, month)), (pid, month)
        elif pid in closed and pid not in present and closed[pid][0] <= month <= closed[pid][1]:
            assert after.get((pid, month)) == before.get((pid, month)), (pid, month)  # its months stay paid
        elif pid not in present:  # absent from the extract: nothing is due, what was held is recovered
            assert after.get((pid, month), 0) == 0, (pid, month)
    for r in later:
        pid = r["person_id"]
        want = expected_months(r, sc.rules, first, Q4_LAST)
        for month in range(first, Q4_LAST + 1):
            held = after.get((pid, month), 0)
            if r["channel"] is not None:
                assert held == want.get(month, 0), (pid, month, held, want.get(month))
            else:  # no card: recoveries still apply, but nothing new is paid
                assert held in (0, want.get(month, 0)), (pid, month, held, want.get(month))
                assert held <= before.get((pid, month), 0), (pid, month)
