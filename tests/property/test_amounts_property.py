"""Every person-month amount is the band amount for that person's age, in the version in force.

SPEC §1: age_in_month, the five bands, and the version in force in each month (a window
that reaches back before 2024-05 is paid by the 2016 scheme's table for those months).
The entitled months are recomputed here from the rules of SPEC §1, independently of the engine.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import given
from registry_strategies import (
    PROPERTY,
    QUARTER,
    Drawn,
    age_in_month,
    band_amount,
    expected_months,
    month_index,
    registries,
    scenario,
)

Q3_LAST = month_index(dt.date(2025, 9, 1))


@PROPERTY
@given(registries())
def test_every_person_month_is_the_band_amount_for_the_age_in_that_month(drawn: Drawn) -> None:
    with scenario(drawn.opening) as sc:
        res = sc.quarterly(QUARTER, drawn.rows, drawn.as_of_text)
        months = sc.months(res.batch_id)
        by_id = {r["person_id"]: r for r in drawn.rows}

        for r in months.iter_rows(named=True):
            version = sc.rules.at(r["month_idx"])
            assert r["amount_fen"] in {b.monthly_fen for b in version.bands}, r
            birth = by_id[r["person_id"]]["birth_date"]
            assert r["amount_fen"] == band_amount(version, age_in_month(birth, r["month_idx"])), r


@PROPERTY
@given(registries())
def test_first_run_pays_exactly_the_entitled_months(drawn: Drawn) -> None:
    """On an empty ledger a quarterly run pays (or lists as no-card) exactly SPEC §1's months."""
    with scenario(drawn.opening) as sc:
        res = sc.quarterly(QUARTER, drawn.rows, drawn.as_of_text)
        first = max(month_index(dt.date.fromisoformat(drawn.opening + "-01")), month_index(drawn.as_of) - 24)
        months = sc.months(res.batch_id)
        lines = sc.lines(res.batch_id)
        no_card = sc.no_card(res.batch_id)

        paid: dict[str, dict[int, int]] = {}
        for r in months.iter_rows(named=True):
            assert r["month_idx"] not in paid.setdefault(r["person_id"], {}), "a person-month twice in one batch"
            paid[r["person_id"]][r["month_idx"]] = r["amount_fen"]

        for row in drawn.rows:
            pid = row["person_id"]
            want = expected_months(row, sc.rules, first, Q3_LAST)
            if row["channel"] is None:
                assert pid not in paid
                nc = no_card.filter(pl.col("person_id") == pid)
                if want:
                    assert nc.height == 1, pid
                    assert (nc["months"][0], nc["amount_fen"][0]) == (len(want), sum(want.values())), pid
                else:
                    assert nc.height == 0, pid
            else:
                assert paid.get(pid, {}) == want, pid

        # A line is the sum of its month rows, and on an empty ledger every line is NEW.
        agg = months.group_by("line_id").agg(
            pl.len().alias("n"), pl.col("amount_fen").sum().alias("fen"),
            pl.col("month_idx").min().alias("lo"), pl.col("month_idx").max().alias("hi"),
        )
        chk = lines.join(agg, on="line_id", how="left")
        assert chk.height == lines.height
        for r in chk.iter_rows(named=True):
            assert (r["months"], r["amount_fen"]) == (r["n"], r["fen"]), r
            assert month_index(r["period_from"]) == r["lo"] and month_index(r["period_to"]) == r["hi"], r
            assert r["reason"] == "NEW" and r["line_type"] == "PAYMENT", r
        assert lines.height == res.lines
        assert int(lines["amount_fen"].sum() or 0) == res.amount_fen
