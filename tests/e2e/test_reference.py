"""Issue 3 §4: a 200 000-resident registry checked two independent ways.

The engine (polars, runs of months, DuckDB ledger) against a plain-Python reference of SPEC §1
written from the spec text alone: dates, a loop over months, the band table. Every sampled
person's quarter must agree to the fen, paid or not, and the totals of the whole batch must
agree with the reference over every clean person.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import polars as pl
import pytest

from allowance.generator import generate_registry, write_registry
from allowance.testing import Scenario

BANDS = [(65, 69, 7500), (70, 79, 15000), (80, 89, 18000), (90, 99, 35000), (100, None, 60000)]


def ref_amount(birth: dt.date, m: dt.date, hukou_since: dt.date | None, out: dt.date | None,
               death: dt.date | None) -> int:
    """SPEC §1, one person, one month, in plain Python (both versions pay the same five bands)."""
    last_day = (m.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
    age = (m.year - birth.year) - (1 if m.month < birth.month else 0)
    if age < 65:
        return 0
    if hukou_since is not None and hukou_since > last_day:
        return 0
    if out is not None and out < m:
        return 0
    if death is not None and death < m:
        return 0
    for lo, hi, fen in BANDS:
        if age >= lo and (hi is None or age <= hi):
            return fen
    raise AssertionError("unreachable")


def ref_quarter(row: dict, months: list[dt.date]) -> tuple[int, int]:
    amounts = [ref_amount(row["birth_date"], m, row["hukou_since"], row["hukou_out_date"], row["death_date"])
               for m in months]
    return sum(1 for a in amounts if a), sum(amounts)


@pytest.fixture(scope="module")
def quarter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Scenario, pl.DataFrame, str, Path]:
    root = tmp_path_factory.mktemp("ref")
    as_of = dt.date(2025, 7, 1)
    reg = root / "registry.parquet"
    write_registry(generate_registry(200_000, seed=7, as_of=as_of), reg)
    sc = Scenario(root, opening_month="2025-07")
    draft = sc.quarterly("2025Q3", reg, "2025-07-01")
    sc.publish(draft)
    return sc, sc.lines(draft.batch_id), draft.batch_id, reg


def test_sampled_people_match_the_plain_python_reference(quarter: tuple) -> None:
    sc, lines, batch_id, reg = quarter
    from allowance import registry as registry_mod

    clean = registry_mod.validate(registry_mod.read_extract(reg), dt.date(2025, 7, 1), sc.rules.channels()).clean
    months = [dt.date(2025, 7, 1), dt.date(2025, 8, 1), dt.date(2025, 9, 1)]
    paid = {r["person_id"]: r for r in lines.filter(pl.col("line_type") == "PAYMENT").iter_rows(named=True)}
    no_card = {r["person_id"]: r for r in sc.no_card(batch_id).iter_rows(named=True)}
    rows = clean.to_dicts()
    rng = random.Random(11)
    # Every old person in the sample, plus a share of the rest, plus every edge case we can find.
    edge = [r for r in rows if r["death_date"] or r["hukou_out_date"] or (r["hukou_since"] and
            r["hukou_since"] >= dt.date(2024, 7, 1)) or r["birth_date"] <= dt.date(1925, 12, 31)
            or dt.date(1959, 7, 1) <= r["birth_date"] <= dt.date(1960, 12, 31)]
    sample = rng.sample(rows, 3000) + edge
    checked = 0
    for r in sample:
        n, fen = ref_quarter(r, months)
        got = paid.get(r["person_id"]) or no_card.get(r["person_id"])
        if fen == 0:
            assert got is None, f"paid {got['amount_fen']} but the reference says nothing is due"
        else:
            assert got is not None, f"reference owes {fen} fen for {n} months, engine pays nothing"
            assert (got["months"], got["amount_fen"]) == (n, fen)
            if r["channel"] is None:
                assert r["person_id"] in no_card
        checked += 1
    assert checked > 3000 and len(edge) > 500


def test_batch_totals_match_the_reference_over_every_clean_person(quarter: tuple) -> None:
    sc, lines, batch_id, reg = quarter
    from allowance import registry as registry_mod

    clean = registry_mod.validate(registry_mod.read_extract(reg), dt.date(2025, 7, 1), sc.rules.channels()).clean
    months = [dt.date(2025, 7, 1), dt.date(2025, 8, 1), dt.date(2025, 9, 1)]
    total = people = 0
    for r in clean.filter(pl.col("birth_date") <= dt.date(1960, 9, 30)).iter_rows(named=True):
        _, fen = ref_quarter(r, months)
        total += fen
        people += fen > 0
    nc = sc.no_card(batch_id)
    pay = lines.filter(pl.col("line_type") == "PAYMENT")
    assert pay.height + nc.height == people
    assert int(pay["amount_fen"].sum()) + int(nc["amount_fen"].sum()) == total


def test_a_person_gets_the_same_line_in_a_small_and_a_large_registry(quarter: tuple, tmp_path: Path) -> None:
    """The same registry gives the same lines at every size: a person's line does not depend on who else is in it."""
    _sc, lines, _, reg = quarter
    small = pl.read_parquet(reg).sample(20_000, seed=3)
    sc2 = Scenario(tmp_path, opening_month="2025-07")
    d2 = sc2.quarterly("2025Q3", small, "2025-07-01", max_quarantine_share=1.0)
    small_lines = sc2.lines(d2.batch_id).select("person_id", "months", "amount_fen", "reason")
    big = lines.select("person_id", "months", "amount_fen", "reason").join(
        small_lines.select("person_id"), on="person_id", how="semi"
    )
    # Duplicates split across the two samples are the one legitimate difference: drop them.
    dupes = pl.read_parquet(reg).group_by("person_id").len().filter(pl.col("len") > 1).select("person_id")
    a = small_lines.join(dupes, on="person_id", how="anti").sort("person_id")
    b = big.join(dupes, on="person_id", how="anti").sort("person_id")
    assert a.height > 4000
    assert a.equals(b)
