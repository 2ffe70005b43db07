"""Why a recovery line exists (its `cause`): what the district is told it is recovering."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from allowance import rules as rules_mod
from allowance.months import month_index
from allowance.runs import Breakers
from allowance.testing import Scenario, person

OPEN = Breakers(max_stop_share=1.0, max_shrink_share=1.0)  # two people: one death is half of them
RAISE = Path(__file__).resolve().parents[1] / "cases" / "rules_raise"


def test_a_rules_table_corrected_after_payment_is_recovered_as_an_amount_correction(tmp_path: Path) -> None:
    """Paid 2025Q3 under a table with a raise from 2025-08; the raise is then withdrawn. The same
    person (same ID, same birth date) is still entitled, for less: not a birth correction."""
    sc = Scenario(tmp_path, opening_month="2025-07", rules_path=RAISE)
    rows = [person("1958-01-10", seq=1)]
    sc.publish(sc.quarterly("2025Q3", rows, "2025-07-01"))
    sc.rules = rules_mod.load(rules_mod.DEFAULT_RULES_DIR)
    res = sc.supplement(rows, "2025-07-05")
    lines = sc.lines(res.batch_id)
    assert lines["line_type"].to_list() == ["RECOVERY"], lines
    assert lines["cause"].to_list() == ["AMOUNT_CORRECTION"], lines
    assert lines["months"].to_list() == [2] and lines["amount_fen"].item() < 0, lines


def test_what_is_still_owed_is_a_recovery_less_what_was_cancelled_of_it(tmp_path: Path) -> None:
    """A death recorded as 2025-07-10 recovers Aug and Sep; corrected to 2025-08-20, August is
    cancelled from the recovery. Still owed: September alone, whatever later runs see; the register
    says one month of 150 yuan."""
    from allowance.ledger import Ledger

    aug, sep = month_index(dt.date(2025, 8, 1)), month_index(dt.date(2025, 9, 1))
    sc = Scenario(tmp_path, opening_month="2025-07")
    ann, dave = person("1950-05-05", seq=1), person("1948-03-03", seq=2)
    sc.publish(sc.quarterly("2025Q3", [ann, dave], "2025-07-02"))
    sc.publish(sc.supplement([ann, {**dave, "death_date": dt.date(2025, 7, 10)}], "2025-07-20", breakers=OPEN))
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert led.owed_recoveries().select("from_mi", "to_mi", "fen").rows() == [(aug, sep, 15000)]
    back = sc.publish(sc.supplement([ann, {**dave, "death_date": dt.date(2025, 8, 20)}], "2025-08-25"))
    assert back.lines == 0
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert led.owed_recoveries().select("from_mi", "to_mi", "fen").rows() == [(sep, sep, 15000)]
        (months, amount, state, note), = led.run("select months, amount_fen, state, note from recoveries")
        # its months with its amount (an audit: it still said 2, those it was published with)
        assert (months, amount, state) == (1, 15000, "open") and back.batch_id in note
        assert led.check()["problems"] == []


def test_upgrade_mends_the_months_a_ledger_made_before_kept(tmp_path: Path) -> None:
    """An audit: a ledger made by the engine before the register's months followed cancellations
    (2 months still shown after one was cancelled) failed the new `ledger check`, and `ledger
    upgrade` said there was nothing to do. Upgrade now mends them, once, and says so in an event."""
    import duckdb

    from allowance.ledger import Ledger

    sc = Scenario(tmp_path, opening_month="2025-07")
    ann, dave = person("1950-05-05", seq=1), person("1948-03-03", seq=2)
    sc.publish(sc.quarterly("2025Q3", [ann, dave], "2025-07-02"))
    sc.publish(sc.supplement([ann, {**dave, "death_date": dt.date(2025, 7, 10)}], "2025-07-20", breakers=OPEN))
    sc.publish(sc.supplement([ann, {**dave, "death_date": dt.date(2025, 8, 20)}], "2025-08-25"))
    con = duckdb.connect(str(sc.ledger))
    con.execute("update recoveries set months = 2")  # as the engine before a3d28db left it
    con.close()
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert any("`allowance ledger upgrade` mends them" in p for p in led.check()["problems"])
    con = duckdb.connect(str(sc.ledger))  # and at schema 5, before the ends were kept
    con.execute("drop table person_ends")
    con.execute("drop table batch_ends")
    con.execute("update meta set value = '5' where key = 'schema_version'")
    con.close()
    assert Ledger.upgrade(sc.ledger) == ("5", "6", 1)
    assert Ledger.upgrade(sc.ledger) == ("6", "6", 0)  # twice: nothing more
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert led.run("select months, amount_fen from recoveries") == [(1, 15000)]
        assert led.check()["problems"] == []
        assert led.run("select detail->>'recovery_months_mended' from events where action = 'upgrade'") == [("1",)]
        assert led.person_ends().height == 0  # schema 6's table, empty: no engine before kept the ends


def test_a_death_or_move_under_a_version_not_paying_the_exit_month_is_recovered_as_such(tmp_path: Path) -> None:
    """Audit 26A: with `exit_month_paid: false` the month of death is itself unpaid, so the
    recovery starts in it; it was labelled NOT_ENTITLED (the test was `first stop > death month`)
    while the change report said STOP_DEATH. A death in September, paid through September, and a
    move out in August: recovered from the exit month, as DEATH and MIGRATION."""
    import shutil

    rules_dir = tmp_path / "rules"
    shutil.copytree(RAISE, rules_dir)
    raise_file = rules_dir / "2025-08-test-raise.yaml"
    text = raise_file.read_text(encoding="utf-8")
    assert text.count("exit_month_paid: {value: true") == 1
    raise_file.write_text(text.replace("exit_month_paid: {value: true", "exit_month_paid: {value: false"),
                          encoding="utf-8")
    sc = Scenario(tmp_path, opening_month="2025-07", rules_path=rules_dir)
    ann, bob, cy = person("1950-05-05", seq=1), person("1948-03-03", seq=2), person("1952-02-02", seq=3)
    sc.publish(sc.quarterly("2025Q3", [ann, bob, cy], "2025-07-01"))
    res = sc.supplement([{**ann, "death_date": dt.date(2025, 9, 12)},
                         {**bob, "hukou_out_date": dt.date(2025, 8, 10)}, cy], "2025-09-20", breakers=OPEN)
    lines = sc.lines(res.batch_id).sort("person_id")
    assert lines["line_type"].to_list() == ["RECOVERY", "RECOVERY"], lines
    assert lines["person_id"].to_list() == sorted([ann["person_id"], bob["person_id"]])
    causes = dict(zip(lines["person_id"], lines["cause"], strict=True))
    assert causes == {ann["person_id"]: "DEATH", bob["person_id"]: "MIGRATION"}, lines
    months = dict(zip(lines["person_id"], lines["months"], strict=True))
    assert months == {ann["person_id"]: 1, bob["person_id"]: 2}, lines
