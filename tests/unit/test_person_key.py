"""Lines and pieces files carry their person's key (person_key), which a publication uses
instead of parsing person_id; files written before they did are published the same way, and
`ledger check` holds every stored key to its person_id."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from allowance import idcard
from allowance.ledger import KEYED_PARTS, Ledger
from allowance.runs import Breakers
from allowance.testing import Scenario, person, rewrite_batch_file


def _rewrite(ledger: Path, batch_id: str, part: str, change: pl.Expr | None) -> None:
    """A batch file with person_key changed by `change` (None: dropped, as a file written before
    lines and pieces carried it)."""
    rewrite_batch_file(ledger, batch_id, part, lambda f: f.drop("person_key") if change is None
                       else f.with_columns(person_key=change))


def _run(root: Path, old_files: bool) -> dict[str, pl.DataFrame]:
    sc = Scenario(root)
    rows = [person(dt.date(1930 + 3 * i, 1 + i % 12, 1), seq=i) for i in range(12)]
    q3 = sc.quarterly("2025Q3", rows, "2025-07-01")
    # Q4: a new card (a payee rewritten), and a death in August (September's payment recovered)
    moved = [{**r, "card_no": "6217999900000001"} if i == 2 else r for i, r in enumerate(rows)]
    moved[5] = {**rows[5], "death_date": dt.date(2025, 8, 10)}
    if old_files:
        for part in KEYED_PARTS:
            _rewrite(sc.ledger, q3.batch_id, part, None)
    sc.publish(q3)
    q4 = sc.quarterly("2025Q4", moved, "2025-10-01", breakers=Breakers(force=True, reason="a test's one death in ten"))
    if old_files:
        for part in KEYED_PARTS:
            _rewrite(sc.ledger, q4.batch_id, part, None)
    sc.publish(q4)
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert led.check()["problems"] == []
        return {
            "holdings": led.df("select * from holdings order by all"),
            "payees": led.df("select person_key, paid_with, card_with, since_row from payees order by all"),
            "recoveries": led.df("select line_id, person_id, months, amount_fen, cause from recoveries order by all"),
        }


def test_files_without_person_key_publish_the_same(tmp_path: Path) -> None:
    keyed = _run(tmp_path / "keyed", old_files=False)
    parsed = _run(tmp_path / "parsed", old_files=True)
    assert keyed["holdings"].height > 0 and keyed["recoveries"].height > 0
    for table, frame in keyed.items():
        assert frame.equals(parsed[table]), table


def test_the_draft_writes_each_rows_key(tmp_path: Path) -> None:
    sc = Scenario(tmp_path)
    q3 = sc.quarterly("2025Q3", [person(dt.date(1940 + i, 3, 1), seq=i) for i in range(4)], "2025-07-01")
    with Ledger.use(sc.ledger, read_only=True) as led:
        for part in KEYED_PARTS:
            frame = led.part(q3.batch_id, part)
            assert frame.height > 0
            assert frame["person_key"].to_list() == frame.select(idcard.order_key_expr("person_id")).to_series(
            ).to_list()


def test_check_finds_a_person_key_that_is_not_its_ids(tmp_path: Path) -> None:
    sc = Scenario(tmp_path)
    q3 = sc.publish(sc.quarterly("2025Q3", [person(dt.date(1940 + i, 3, 1), seq=i) for i in range(4)],
                                 "2025-07-01"))
    _rewrite(sc.ledger, q3.batch_id, "pieces",
             pl.when(pl.int_range(pl.len()) == 0).then(pl.col("person_key") + 11).otherwise(pl.col("person_key")))
    with Ledger.use(sc.ledger, read_only=True) as led:
        problems = led.check()["problems"]
    assert any("pieces: 1 row(s) whose person_key is not their person_id's key" in p for p in problems), problems
