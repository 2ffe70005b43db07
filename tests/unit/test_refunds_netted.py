"""`recoveries refunds`' total counts a person while their refund, net of what was found not due,
is above nothing: by each report's amount per recovery line, not by how many reports name it."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import polars as pl

from allowance.ledger import Ledger
from allowance.runs import Breakers
from allowance.testing import Scenario, person

OPEN = Breakers(max_stop_share=1.0, max_shrink_share=1.0)


def test_one_recovery_over_two_failed_payments_one_retried_still_owes_the_rest(tmp_path: Path) -> None:
    """Audit 25C: a recovery (September to December, confirmed) covering months of dave's Q3 and
    Q4 lines; both failed in one file (a refund of 720 yuan reported), then Q4's was paid on a
    retry (540 yuan not due). Netted by how many reports named the line (+1 -1) the total said
    "0 people, 180.00 yuan"."""
    sc = Scenario(tmp_path / "w", opening_month="2025-07")
    ann, dave = person("1950-05-05", seq=1), person("1945-03-03", seq=2)
    q3 = sc.publish(sc.quarterly("2025Q3", [ann, dave], "2025-07-02", breakers=OPEN)).batch_id
    q4 = sc.publish(sc.quarterly("2025Q4", [ann, dave], "2025-10-02", breakers=OPEN)).batch_id
    sup = sc.publish(sc.supplement([ann, {**dave, "death_date": dt.date(2025, 8, 10)}], "2025-11-10",
                                   breakers=OPEN)).batch_id
    recovery = sc.lines(sup).filter(pl.col("line_type") == "RECOVERY")["line_id"].to_list()

    def paid_to_dave(batch: str) -> str:
        lines = sc.lines(batch)
        return lines.filter((pl.col("person_id") == dave["person_id"]) & (pl.col("line_type") == "PAYMENT")
                            )["line_id"][0]

    q3_line, q4_line = paid_to_dave(q3), paid_to_dave(q4)
    with Ledger.use(sc.ledger) as led:
        led.set_recovery_state(recovery, "recovered", "district", "collected")
        failed = led.import_bank_returns(pl.DataFrame({
            "line_id": [q3_line, q4_line], "status": ["FAILED", "FAILED"],
            "settled_at": ["2025-11-12 10:00", "2025-11-12 10:00"]}), "failed")
        assert failed["recovered_but_never_delivered"]["fen"] == 72000, failed
        retried = led.import_bank_returns(pl.DataFrame({
            "line_id": [q4_line], "status": ["PAID"], "settled_at": ["2025-11-13 10:00"]}), "retry")
        assert retried["refunds_not_due"]["fen"] == 54000, retried
        assert led.refunds_total(led.refunds_reported()) == {"people": 1, "fen": 18000}


def test_reports_made_before_by_line_are_netted_by_count(tmp_path: Path) -> None:
    """Audit 25D: a refund report made before reports said their amounts by line (dave's 540 and
    eve's 300 yuan in one) was shared out equally, so after eve's was found not due she still
    counted (420 less 300). A line an old report names is netted by how many reports name it."""
    sc = Scenario(tmp_path / "w", opening_month="2025-07")
    ann, dave, eve = person("1950-05-05", seq=1), person("1945-03-03", seq=2), person("1950-06-06", seq=3)
    sc.publish(sc.quarterly("2025Q3", [ann, dave, eve], "2025-07-02", breakers=OPEN))
    q4 = sc.publish(sc.quarterly("2025Q4", [ann, dave, eve], "2025-10-02", breakers=OPEN)).batch_id
    dead = [ann, {**dave, "death_date": dt.date(2025, 8, 10)}, {**eve, "death_date": dt.date(2025, 10, 10)}]
    sup = sc.publish(sc.supplement(dead, "2025-11-10", breakers=OPEN)).batch_id
    recovery = sc.lines(sup).filter(pl.col("line_type") == "RECOVERY")["line_id"].to_list()
    q4_lines = sc.lines(q4)
    dave_q4, eve_q4 = (q4_lines.filter((pl.col("person_id") == p["person_id"]) & (pl.col("line_type") == "PAYMENT")
                                       )["line_id"][0] for p in (dave, eve))
    with Ledger.use(sc.ledger) as led:
        led.set_recovery_state(recovery, "recovered", "district", "collected")
        failed = led.import_bank_returns(pl.DataFrame({
            "line_id": [dave_q4, eve_q4], "status": ["FAILED"] * 2, "settled_at": ["2025-11-12 10:00"] * 2}), "f")
        assert failed["recovered_but_never_delivered"]["fen"] == 84000, failed
        # what an import before by_line recorded
        led.run("update events set detail = json_merge_patch(detail, "
                "'{\"recovered_but_never_delivered\": {\"by_line\": null}}') where action = 'bank_returns'")
        retried = led.import_bank_returns(pl.DataFrame({
            "line_id": [eve_q4], "status": ["PAID"], "settled_at": ["2025-11-13 10:00"]}), "r")
        assert retried["refunds_not_due"]["fen"] == 30000, retried
        assert led.refunds_total(led.refunds_reported()) == {"people": 1, "fen": 54000}
        led.run("update events set detail = json_merge_patch(detail, '{\"refunds_not_due\": {\"by_line\": null}}') "
                "where action = 'bank_returns'")
        assert led.refunds_total(led.refunds_reported()) == {"people": 1, "fen": 54000}


def _reports_are_the_reckoning(led: Ledger) -> None:
    """What the imports reported to refund, net by line of what they found not due, is what the
    ledger reckons outstanding (Ledger._refund_allocation, which the payback rule reads too)."""
    said: dict[str, int] = {}
    for fen, by_line in led.refunds_reported().select("fen", "by_line").iter_rows():
        for line, part in json.loads(by_line).items():
            said[line] = said.get(line, 0) + (part if fen > 0 else -part)
    now = led._refund_allocation(None).group_by("line_id").agg(pl.col("fen").sum())
    assert {line: fen for line, fen in said.items() if fen} == dict(now.iter_rows())


def _eve(tmp_path: Path) -> tuple[Scenario, dict, dict, Callable[[str, str], list[str]]]:
    """A ledger for ann and eve, and eve's line ids of a kind in a batch."""
    sc = Scenario(tmp_path / "w", opening_month="2025-07")
    ann, eve = person("1950-05-05", seq=1), person("1945-03-03", seq=2)

    def eves(batch: str, kind: str) -> list[str]:
        return sc.lines(batch).filter((pl.col("person_id") == eve["person_id"]) & (pl.col("line_type") == kind)
                                      )["line_id"].to_list()

    return sc, ann, eve, eves


def _paid_twice_recovered_twice(tmp_path: Path) -> tuple[Scenario, list[str], list[str], list[str], list[str]]:
    """eve's months paid (P1), recovered (R1: missing from one night's extract) and collected, paid
    again (P2: back), recovered again (R2) and collected: P1, P2, R1, R2 (a line id each)."""
    sc, ann, eve, eves = _eve(tmp_path)
    p1 = eves(sc.publish(sc.quarterly("2025Q4", [ann, eve], "2025-10-02", breakers=OPEN)).batch_id, "PAYMENT")
    r1 = eves(sc.publish(sc.supplement([ann], "2025-11-05", breakers=OPEN)).batch_id, "RECOVERY")
    with Ledger.use(sc.ledger) as led:  # collected before eve is back (else the draft cancels it)
        led.set_recovery_state(r1, "recovered", "district", "collected")
    p2 = eves(sc.publish(sc.supplement([ann, eve], "2025-11-06", breakers=OPEN)).batch_id, "PAYMENT")
    r2 = eves(sc.publish(sc.supplement([ann], "2025-11-07", breakers=OPEN)).batch_id, "RECOVERY")
    assert len(p1) == len(r1) == len(p2) == len(r2) == 1
    with Ledger.use(sc.ledger) as led:
        led.set_recovery_state(r2, "recovered", "district", "collected")
    return sc, p1, p2, r1, r2


def _failed(led: Ledger, lines: list[str], status: str, at: str, name: str) -> dict:
    return led.import_bank_returns(pl.DataFrame({"line_id": lines, "status": status, "settled_at": at}), name)


def test_a_month_paid_twice_recovered_twice_and_failed_twice_is_refunded_on_both_recoveries(tmp_path: Path) -> None:
    """A refund is the recovery's that asked back the failed payment, the first confirmed one
    published after it (audit 29C): eve's months were paid (P1), recovered (R1), paid again (P2),
    recovered again (R2); both collected. Both payments fail in one file: each recovery asked back
    one of them, so each is refunded its own, not the first one twice. The bank then pays P2 on a
    retry: R2's refund is not due (it asked back money delivered after all), R1's still is."""
    sc, p1, p2, r1, r2 = _paid_twice_recovered_twice(tmp_path)
    with Ledger.use(sc.ledger) as led:
        owed = dict(led.df("select line_id, amount_fen from recoveries").iter_rows())
        failed = _failed(led, p1 + p2, "FAILED", "2025-11-12 10:00", "failed")["recovered_but_never_delivered"]
        assert failed["by_line"] == {r1[0]: owed[r1[0]], r2[0]: owed[r2[0]]}, failed
        assert failed["fen"] == owed[r1[0]] + owed[r2[0]] and failed["recovery_lines"] == sorted(r1 + r2)
        retried = _failed(led, p2, "PAID", "2025-11-13 10:00", "retry")
        assert retried["refunds_not_due"]["by_line"] == {r2[0]: owed[r2[0]]}, retried
        assert led.refunds_total(led.refunds_reported()) == {"people": 1, "fen": owed[r1[0]]}
        _reports_are_the_reckoning(led)


def test_two_failures_in_two_files_retried_in_one_leave_nothing_to_refund(tmp_path: Path) -> None:
    """Audit 30A: P2 failed in one file and P1 in the next (each refund on its own recovery), then
    one file paid both on a retry: the retry's not-due counted each month once, 60 000 of the
    105 000 fen, and the district was still told to refund 45 000 fen never owed."""
    sc, p1, p2, r1, r2 = _paid_twice_recovered_twice(tmp_path)
    with Ledger.use(sc.ledger) as led:
        owed = dict(led.df("select line_id, amount_fen from recoveries").iter_rows())
        first = _failed(led, p2, "FAILED", "2025-11-12 10:00", "p2-failed")["recovered_but_never_delivered"]
        second = _failed(led, p1, "FAILED", "2025-11-12 11:00", "p1-failed")["recovered_but_never_delivered"]
        assert (first["by_line"], second["by_line"]) == ({r2[0]: owed[r2[0]]}, {r1[0]: owed[r1[0]]})
        retried = _failed(led, p1 + p2, "PAID", "2025-11-13 10:00", "retry")["refunds_not_due"]
        assert retried["by_line"] == {r1[0]: owed[r1[0]], r2[0]: owed[r2[0]]}, retried
        assert led.refunds_total(led.refunds_reported()) == {"people": 0, "fen": 0}
        _reports_are_the_reckoning(led)


def test_a_month_cancelled_off_a_recovery_is_not_refunded_on_it(tmp_path: Path) -> None:
    """A refund is of what a recovery got back: its months less those cancelled off it. eve's
    first payment (P1, July to December) was recovered (R1, missing from one night's extract);
    back, moved in since mid-November, November and December are cancelled off R1, which is
    collected for July to October. Missing again, November and December are recovered (R2) and
    collected. P1 then fails: July to October are R1's to refund, November and December R2's (R1's
    line had listed them, and the whole refund was named on R1)."""
    sc, ann, eve, eves = _eve(tmp_path)
    p1 = eves(sc.publish(sc.quarterly("2025Q4", [ann, eve], "2025-10-02", breakers=OPEN)).batch_id, "PAYMENT")
    r1 = eves(sc.publish(sc.supplement([ann], "2025-11-05", breakers=OPEN)).batch_id, "RECOVERY")
    back = sc.publish(sc.supplement([ann, {**eve, "hukou_since": dt.date(2025, 11, 10)}], "2025-11-20",
                                    breakers=OPEN))
    assert back.summary["recoveries_cancelled"]["lines"] == 1
    with Ledger.use(sc.ledger) as led:
        led.set_recovery_state(r1, "recovered", "district", "collected")
    r2 = eves(sc.publish(sc.supplement([ann], "2025-11-25", breakers=OPEN)).batch_id, "RECOVERY")
    with Ledger.use(sc.ledger) as led:
        led.set_recovery_state(r2, "recovered", "district", "collected")
        owed = dict(led.df("select line_id, amount_fen from recoveries").iter_rows())
        failed = _failed(led, p1, "FAILED", "2025-11-28 10:00", "failed")["recovered_but_never_delivered"]
    assert failed["by_line"] == {r1[0]: owed[r1[0]], r2[0]: owed[r2[0]]}, failed
    assert owed[r1[0]] == 2 * owed[r2[0]]  # four months; two
    assert failed["fen"] == owed[r1[0]] + owed[r2[0]]


def test_a_retry_names_the_refund_the_failure_reported_not_a_later_recovery(tmp_path: Path) -> None:
    """Audit 30C: eve's P1 was recovered (R1, collected) and her months paid again (P2); both
    payments failed in one file, and R1's refund was reported. Back, then missing again, her months
    were re-paid (P3) and recovered (R3, collected). The bank then paid P2 on a retry: the refund
    not due was named on R3, published after the failure (it asked back P3, delivered), so R1's
    still showed as owed and the total said one person and nothing to refund."""
    sc, ann, eve, eves = _eve(tmp_path)
    p1 = eves(sc.publish(sc.quarterly("2025Q4", [ann, eve], "2025-10-02", breakers=OPEN)).batch_id, "PAYMENT")
    r1 = eves(sc.publish(sc.supplement([ann], "2025-11-05", breakers=OPEN)).batch_id, "RECOVERY")
    with Ledger.use(sc.ledger) as led:
        led.set_recovery_state(r1, "recovered", "district", "collected")
    p2 = eves(sc.publish(sc.supplement([ann, eve], "2025-11-06", breakers=OPEN)).batch_id, "PAYMENT")
    with Ledger.use(sc.ledger) as led:
        failed = _failed(led, p1 + p2, "FAILED", "2025-11-07 10:00", "failed")["recovered_but_never_delivered"]
        assert list(failed["by_line"]) == r1
    assert eves(sc.publish(sc.supplement([ann, eve], "2025-11-08", breakers=OPEN)).batch_id, "PAYMENT")
    r3 = eves(sc.publish(sc.supplement([ann], "2025-11-09", breakers=OPEN)).batch_id, "RECOVERY")
    with Ledger.use(sc.ledger) as led:
        led.set_recovery_state(r3, "recovered", "district", "collected")
        retried = _failed(led, p2, "PAID", "2025-11-10 10:00", "retry")["refunds_not_due"]
        assert retried["by_line"] == failed["by_line"], retried
        assert led.refunds_total(led.refunds_reported()) == {"people": 0, "fen": 0}
        _reports_are_the_reckoning(led)


def test_a_retry_withdraws_the_refund_its_failure_reported_whatever_line_it_named(tmp_path: Path) -> None:
    """Audit 30D: eve's months paid and recovered three times (P1 R1, P2 R2, P3 R3; R1 and R2
    collected, R3 open). P2 and P3 failed in one file: R3 was cut, and the rest reported to refund
    on R2, which asked back P2. The bank then paid P3 on a retry: the refund was not due, but it was
    withdrawn from R1 (nothing confirmed had asked back P3), leaving R2's standing and the total at
    one person and nothing. The refunds are one reckoning, and a change to it says which line."""
    sc, _, p2, _, r2 = _paid_twice_recovered_twice(tmp_path)
    ann, eve = person("1950-05-05", seq=1), person("1945-03-03", seq=2)
    mine = pl.col("person_id") == eve["person_id"]
    p3 = sc.lines(sc.publish(sc.supplement([ann, eve], "2025-11-08", breakers=OPEN)).batch_id).filter(mine)
    r3 = sc.lines(sc.publish(sc.supplement([ann], "2025-11-09", breakers=OPEN)).batch_id).filter(mine)
    assert p3["line_type"].to_list() == ["PAYMENT"] and r3["line_type"].to_list() == ["RECOVERY"]
    with Ledger.use(sc.ledger) as led:
        failed = _failed(led, p2 + p3["line_id"].to_list(), "FAILED", "2025-11-12 10:00", "failed")
        assert list(failed["recovered_but_never_delivered"]["by_line"]) == r2
        assert led.df("select state from recoveries where line_id = ?", r3["line_id"].to_list()).item() == "cancelled"
        retried = _failed(led, p3["line_id"].to_list(), "PAID", "2025-11-13 10:00", "retry")["refunds_not_due"]
        assert retried["by_line"] == failed["recovered_but_never_delivered"]["by_line"], retried
        assert led.refunds_total(led.refunds_reported()) == {"people": 0, "fen": 0}
        _reports_are_the_reckoning(led)


def test_a_refund_is_the_recoverys_that_asked_back_the_failed_payment_not_one_between(tmp_path: Path) -> None:
    """Audit 30E: eve's months paid and recovered three times (P1 R1, P2 R2, P3 R3, all collected).
    P1 failed in one file, P3 in another. R1 asked back P1 and R3 asked back P3; R2 asked back P2,
    delivered. The second failure's refund was named on R2, the next recovery published after P1:
    a recovery asks back a payment only while the recoveries between them have not taken it all."""
    sc, _, _, r1, r2 = _paid_twice_recovered_twice(tmp_path)
    ann, eve = person("1950-05-05", seq=1), person("1945-03-03", seq=2)
    mine = pl.col("person_id") == eve["person_id"]
    with Ledger.use(sc.ledger, read_only=True) as led:
        p1 = led.df("select line_id from batch_lines where batch_id like 'Q2025Q4%' and person_id = ?",
                    [eve["person_id"]])["line_id"].to_list()
    p3 = sc.lines(sc.publish(sc.supplement([ann, eve], "2025-11-08", breakers=OPEN)).batch_id).filter(mine)
    r3 = sc.lines(sc.publish(sc.supplement([ann], "2025-11-09", breakers=OPEN)).batch_id).filter(mine)
    with Ledger.use(sc.ledger) as led:
        led.set_recovery_state(r3["line_id"].to_list(), "recovered", "district", "collected")
        first = _failed(led, p1, "FAILED", "2025-11-12 10:00", "p1-failed")["recovered_but_never_delivered"]
        second = _failed(led, p3["line_id"].to_list(), "FAILED", "2025-11-12 11:00",
                         "p3-failed")["recovered_but_never_delivered"]
        assert (list(first["by_line"]), list(second["by_line"])) == (r1, r3["line_id"].to_list()), (first, second)
        assert r2[0] not in led._refund_allocation(None)["line_id"].to_list()
        _reports_are_the_reckoning(led)
