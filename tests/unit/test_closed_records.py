"""A closed record dropped from the extract (README "People absent from the extract"; audit 31A).

The registry keeps the dead and the moved out for a time, then drops them. Absent, they are not
entitled after the end the ledger last saw for them (SPEC §1.2, §1.3), and were up to it: only
the months after it are recovered. Someone absent whose last row showed no end (a corrected
birth date comes as a new ID) is recovered whole, as before.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl

from allowance.ledger import Ledger
from allowance.months import parse_month
from allowance.runs import Breakers
from allowance.testing import Scenario, person

M = parse_month
OPEN = Breakers(max_stop_share=1.0, max_shrink_share=1.0)  # a few people: any stop is "more than 2 %"


def _year_on(tmp_path: Path, dee: dict[str, Any], gone: dict[str, Any]) -> tuple[Scenario, list[dict[str, Any]]]:
    """Four quarters published from 2025Q3, each extract with `gone` (dee's row as the registry
    came to show it: a death, a move out, or none) and four others; returns the scenario and the
    others, for a night a year on without dee."""
    sc = Scenario(tmp_path / "s", opening_month="2025-07")
    others = [person("1950-06-01", seq=s) for s in range(4, 8)]
    sc.publish(sc.quarterly("2025Q3", [dee, *others], "2025-07-02"))
    for q, day in (("2025Q4", "2025-10-02"), ("2026Q1", "2026-01-02"), ("2026Q2", "2026-04-02"),
                   ("2026Q3", "2026-07-02")):
        sc.publish(sc.quarterly(q, [gone, *others], day, breakers=OPEN))
    return sc, others


def _held(sc: Scenario, pid: str) -> list[int]:
    net = sc.net().filter(pl.col("person_id") == pid)
    return [m for m, fen in net.select("month_idx", "net_fen").rows() if fen > 0]


def test_the_dead_dropped_a_year_on_keep_the_months_up_to_their_death(tmp_path: Path) -> None:
    dee = person("1940-03-05", seq=1)  # 85: 180 yuan a month
    sc, others = _year_on(tmp_path, dee, {**dee, "death_date": dt.date(2025, 8, 20)})
    assert _held(sc, dee["person_id"]) == [M("2025-07"), M("2025-08")]  # September recovered (DEATH)
    night = sc.supplement(others, "2026-09-10", breakers=OPEN)
    assert sc.lines(night.batch_id).filter(pl.col("person_id") == dee["person_id"]).height == 0
    assert night.summary["ledger_people_absent_from_extract"] == 0
    sc.publish(night)
    assert _held(sc, dee["person_id"]) == [M("2025-07"), M("2025-08")]


def test_someone_moved_out_and_dropped_keeps_the_months_up_to_the_move(tmp_path: Path) -> None:
    """The end is the month of moving out, paid in full (the shipped `exit_month_paid`)."""
    dee = person("1950-03-05", seq=1)
    sc, others = _year_on(tmp_path, dee, {**dee, "hukou_out_date": dt.date(2025, 9, 15)})
    assert _held(sc, dee["person_id"]) == [M("2025-07"), M("2025-08"), M("2025-09")]
    night = sc.supplement(others, "2026-09-10", breakers=OPEN)
    assert sc.lines(night.batch_id).filter(pl.col("person_id") == dee["person_id"]).height == 0


def test_someone_absent_whose_row_showed_no_end_is_recovered_whole(tmp_path: Path) -> None:
    """The control: the months of an ID gone without an end (a corrected birth date) are recovered."""
    dee = person("1940-03-05", seq=1)
    sc, others = _year_on(tmp_path, dee, dee)
    night = sc.supplement(others, "2026-09-10", breakers=OPEN)
    rec = sc.lines(night.batch_id).filter(pl.col("person_id") == dee["person_id"])
    assert rec.select("line_type", "cause", "months").rows() == [("RECOVERY", "NOT_IN_EXTRACT", 15)]


def test_a_death_withdrawn_is_forgotten(tmp_path: Path) -> None:
    """A death recorded in error, then withdrawn (the row shows none again): absent later, the
    person's months are recovered whole, as for anyone whose last row showed no end."""
    dee = person("1940-03-05", seq=1)
    sc, others = _year_on(tmp_path, dee, {**dee, "death_date": dt.date(2025, 8, 20)})
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert led.person_ends()["end_mi"].to_list() == [M("2025-08")]
    sc.publish(sc.supplement([dee, *others], "2026-07-10", breakers=OPEN))  # alive after all: paid back
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert led.person_ends().height == 0
    night = sc.supplement(others, "2026-09-10", breakers=OPEN)
    rec = sc.lines(night.batch_id).filter(pl.col("person_id") == dee["person_id"])
    assert rec.select("line_type", "cause").rows() == [("RECOVERY", "NOT_IN_EXTRACT")]


def test_an_end_seen_only_in_a_draft_not_published_is_not_the_ledgers(tmp_path: Path) -> None:
    """The ledger knows an end from a published batch's extract: a draft it never published
    changes nothing, and the draft that is published records what its own extract showed."""
    dee = person("1940-03-05", seq=1)
    sc, others = _year_on(tmp_path, dee, dee)
    sc.supplement([{**dee, "death_date": dt.date(2026, 7, 5)}, *others], "2026-07-10", breakers=OPEN)  # not published
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert led.person_ends().height == 0
    sc.publish(sc.supplement([{**dee, "death_date": dt.date(2026, 7, 5)}, *others], "2026-07-11", breakers=OPEN))
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert led.person_ends()["end_mi"].to_list() == [M("2026-07")]


def test_ledger_check_holds_the_ends_to_the_published_extracts(tmp_path: Path) -> None:
    import duckdb

    dee = person("1940-03-05", seq=1)
    sc, others = _year_on(tmp_path, dee, {**dee, "death_date": dt.date(2025, 8, 20)})
    sc.publish(sc.supplement(others, "2026-09-10", breakers=OPEN))
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert led.check()["problems"] == []
    con = duckdb.connect(str(sc.ledger))
    con.execute("update person_ends set end_mi = end_mi + 1")  # a later death: one month more kept
    con.close()
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert led.check()["problems"] == [
            "1 person end(s) (death, hukou moved out) not as the published batches' extracts left them"]


def _quarter_with_dee_dead(tmp_path: Path, dead_row: dict[str, Any]) -> tuple[Scenario, dict, list, str]:
    """dee (85: 180 yuan) paid July to December 2025; the 2026Q1 draft reads `dead_row` for her."""
    sc = Scenario(tmp_path / "s", opening_month="2025-07")
    dee = person("1940-03-05", seq=1)
    others = [person("1950-06-01", seq=s) for s in range(4, 8)]
    sc.publish(sc.quarterly("2025Q3", [dee, *others], "2025-07-01"))
    sc.publish(sc.quarterly("2025Q4", [dee, *others], "2025-10-01"))
    q1 = sc.quarterly("2026Q1", [{**dee, **dead_row}, *others], "2026-01-02", breakers=OPEN).batch_id
    return sc, dee, others, q1


def test_a_rejection_s_months_are_recovered_when_the_record_is_dropped(tmp_path: Path) -> None:
    """Audit 31C: rejected from July (not entitled since), dee's record was dropped the next night
    and only December (after her death) was recovered: 90 000 fen stayed paid. A person under a
    decision in force is reckoned as before: every held month in the window is recovered."""
    from allowance.ledger import Ledger as L

    sc, dee, others, q1 = _quarter_with_dee_dead(tmp_path, {"death_date": dt.date(2025, 11, 20)})
    with L.use(sc.ledger) as led:
        led.review(q1, dee["person_id"], "REJECT", "不符合条件", "区民政 王", M("2025-07"), sc.rules)
    sc.publish(q1)
    night = sc.supplement(others, "2026-01-10", breakers=OPEN)
    rec = sc.lines(night.batch_id).filter(pl.col("person_id") == dee["person_id"])
    assert rec.select("line_type", "months", "amount_fen").rows() == [("RECOVERY", 6, -6 * 18000)]


def test_a_hold_released_after_the_drop_recovers_what_the_last_row_did_not_entitle(tmp_path: Path) -> None:
    """Audit 31C: the last row had her move in in September and die in November; held, then
    dropped, then released: only December was recovered, July and August (never due) kept. The
    months the last closed record entitled are September to November: the rest is recovered."""
    sc, dee, others, q1 = _quarter_with_dee_dead(
        tmp_path, {"hukou_since": dt.date(2025, 9, 10), "death_date": dt.date(2025, 11, 20)})
    with Ledger.use(sc.ledger) as led:
        led.review(q1, dee["person_id"], "HOLD", "核实", "区民政 王")
    sc.publish(q1)
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert led.person_ends().select("start_mi", "end_mi").rows() == [(M("2025-09"), M("2025-11"))]
    night = sc.supplement(others, "2026-01-10", breakers=OPEN)
    assert sc.lines(night.batch_id).filter(pl.col("person_id") == dee["person_id"]).height == 0  # held: frozen
    with Ledger.use(sc.ledger) as led:
        led.review(night.batch_id, dee["person_id"], "RELEASE", "已核实", "区民政 王")
    after = sc.supplement(others, "2026-01-11", breakers=OPEN)
    sc.publish(after)
    assert _held(sc, dee["person_id"]) == [M("2025-09"), M("2025-10"), M("2025-11")]


def test_a_quarantined_row_with_a_known_end_is_counted_not_settled(tmp_path: Path) -> None:
    """Audit 31C: a held person whose row is quarantined was no longer counted once the ledger
    knew their end. Quarantined, they are neither paid nor recovered, and counted."""
    dee = person("1940-03-05", seq=1)
    sc, others = _year_on(tmp_path, dee, {**dee, "death_date": dt.date(2025, 8, 20)})
    night = sc.supplement([{**dee, "death_date": dt.date(2025, 8, 20), "channel": "bank_transfer"}, *others],
                          "2026-09-10", breakers=OPEN, max_quarantine_share=1.0)
    assert night.summary["ledger_people_quarantined"] == 1
    assert sc.lines(night.batch_id).filter(pl.col("person_id") == dee["person_id"]).height == 0


def test_a_rejection_from_a_later_month_leaves_the_months_before_it_paid(tmp_path: Path) -> None:
    """Audit 31D: rejected from November (October still hers), dead in December, then dropped:
    July to October were recovered as NOT_IN_EXTRACT (72 000 fen), as if the rejection covered
    them. What is settled ends the month before the rejection."""
    sc = Scenario(tmp_path / "s", opening_month="2025-07")
    dee = person("1940-03-05", seq=1)
    others = [person("1950-06-01", seq=s) for s in range(4, 8)]
    sc.publish(sc.quarterly("2025Q3", [dee, *others], "2025-07-01"))
    q4 = sc.quarterly("2025Q4", [dee, *others], "2025-10-01").batch_id
    with Ledger.use(sc.ledger) as led:
        led.review(q4, dee["person_id"], "REJECT", "不符合条件", "区民政 王", M("2025-11"), sc.rules)
    sc.publish(q4)
    sc.publish(sc.quarterly("2026Q1", [{**dee, "death_date": dt.date(2025, 12, 20)}, *others], "2026-01-02",
                            breakers=OPEN))
    night = sc.supplement(others, "2026-01-10", breakers=OPEN)
    assert sc.lines(night.batch_id).filter(pl.col("person_id") == dee["person_id"]).height == 0
    sc.publish(night)
    assert _held(sc, dee["person_id"]) == [M(f"2025-{m:02d}") for m in range(7, 11)]
