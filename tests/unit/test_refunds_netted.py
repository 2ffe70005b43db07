"""`recoveries refunds`' total counts a person while their refund, net of what was found not due,
is above nothing: by each report's amount per recovery line, not by how many reports name it."""

from __future__ import annotations

import datetime as dt
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
