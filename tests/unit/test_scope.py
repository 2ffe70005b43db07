"""Which clean rows a draft keeps (batch.Scope): old enough by the window's end, or held by the
ledger although younger (found from the birth date inside the ID key)."""

from __future__ import annotations

import datetime as dt

import polars as pl

from allowance import idcard
from allowance.batch import Scope, Window, born_on_or_after

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
