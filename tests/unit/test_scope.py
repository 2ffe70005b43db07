"""Which clean rows a draft keeps (batch.Scope): old enough by the window's end, or held by the
ledger although younger (found from the birth date inside the ID key)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from allowance import idcard
from allowance.batch import Scope, Window, born_on_or_after, build_draft, draft_scope
from allowance.ledger import Ledger
from allowance.months import parse_quarter
from allowance.registry import load_and_validate
from allowance.testing import Scenario, person

OLD = idcard.make_id("310101", dt.date(1950, 3, 1), 1)
EDGE = idcard.make_id("310101", dt.date(1960, 7, 31), 2)  # born the day before the cut
CUT = idcard.make_id("310101", dt.date(1960, 8, 1), 3)  # born on the cut day: too young
YOUNG_HELD = idcard.make_id("320102", dt.date(1990, 1, 15), 4)
YOUNG = idcard.make_id("320102", dt.date(1990, 1, 16), 5)
BORN_BEFORE = dt.date(1960, 8, 1)


def _frame(ids: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"person_id": ids}).with_columns(
        id_key=idcard.order_key_expr("person_id"),
        birth_date=pl.col("person_id").str.slice(6, 8).str.to_date("%Y%m%d"),
    )


def test_keys_born_on_or_after_a_day() -> None:
    keys = _frame([OLD, EDGE, CUT, YOUNG_HELD])["id_key"]
    got = born_on_or_after(keys, BORN_BEFORE)
    assert sorted(got.to_list()) == sorted(_frame([CUT, YOUNG_HELD])["id_key"].to_list())


def _scope(held: list[str]) -> Scope:
    keys = _frame(held)["id_key"] if held else pl.Series("id_key", [], dtype=pl.Int64)
    empty_window = Window("quarterly", 1, 0, 1, None, 1)
    return Scope(empty_window, pl.DataFrame(), BORN_BEFORE, born_on_or_after(keys, BORN_BEFORE))


def test_keep_old_enough_and_young_people_the_ledger_holds() -> None:
    rows = _frame([OLD, EDGE, CUT, YOUNG_HELD, YOUNG])
    kept = rows.filter(_scope([OLD, YOUNG_HELD]).keep("id_key"))["person_id"].to_list()
    assert kept == [OLD, EDGE, YOUNG_HELD]


def test_keep_without_young_ledger_people_is_the_age_cut_alone() -> None:
    rows = _frame([OLD, EDGE, CUT, YOUNG])
    scope = _scope([OLD])
    assert scope.young_held.len() == 0
    assert rows.filter(scope.keep("id_key"))["person_id"].to_list() == [OLD, EDGE]


def test_a_draft_is_the_same_whether_validation_kept_only_its_rows(tmp_path: Path) -> None:
    """build_draft narrows the clean rows to its scope whether or not validation already did."""
    sc = Scenario(tmp_path)
    rows = [person(dt.date(1940 + i, 3, 1), seq=i) for i in range(5)]
    rows += [person(dt.date(1990, 1, 1 + i), seq=10 + i) for i in range(3)]  # too young to keep
    reg = sc.registry(rows)
    as_of = dt.date(2025, 7, 1)
    with Ledger.use(sc.ledger) as led:
        scope = draft_scope("quarterly", parse_quarter("2025Q3"), as_of, led, sc.rules)
        narrowed = load_and_validate(reg, as_of, sc.rules.channels(), keep=scope.keep("id_key"))
        whole = load_and_validate(reg, as_of, sc.rules.channels())
        assert (narrowed.clean.height, whole.clean.height) == (5, 8)
        a = build_draft("quarterly", parse_quarter("2025Q3"), as_of, narrowed, led, sc.rules, scope)
        b = build_draft("quarterly", parse_quarter("2025Q3"), as_of, whole, led, sc.rules, scope)
    assert a.lines.height == 5
    assert a.lines.equals(b.lines) and a.pieces.equals(b.pieces)
    assert {k: v for k, v in a.batch.items() if k != "created_at"} == {
        k: v for k, v in b.batch.items() if k != "created_at"}
