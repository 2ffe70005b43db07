"""A payment the bank returned is re-issued whole, however far back its months go (SPEC §8; audit 31A).

The retroactive window (四 追溯期) limits what is paid late. A month paid on time whose payment
the bank then failed to deliver is not paid late: the window moving past it in the meantime must
not expire it. The re-issue covers every month of the failed line the ledger holds nothing for.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from allowance.ledger import Ledger
from allowance.months import parse_month
from allowance.testing import Scenario, person

M = parse_month


def _back_pay_failed(tmp_path: Path) -> tuple[Scenario, dict, list[dict], str]:
    """A ledger opened 2023-07; the 2025Q3 quarter pays ann 27 months (2023-07 to 2025-09, back
    pay to the window's first month); the bank pays it, then returns it (a bounce) on 3 August."""
    sc = Scenario(tmp_path / "s", opening_month="2023-07")
    ann = person("1950-03-03", seq=1)
    rows = [ann, *(person("1950-06-01", seq=s) for s in range(4, 8))]
    q3 = sc.publish(sc.quarterly("2025Q3", rows, "2025-07-01"))
    line = sc.lines(q3.batch_id).filter(pl.col("person_id") == ann["person_id"])
    assert line.select("period_from", "months", "amount_fen").rows()[0][1:] == (27, 27 * 7500 * 2)
    with Ledger.use(sc.ledger) as led:
        led.import_bank_returns(pl.DataFrame({"line_id": line["line_id"].to_list() * 2, "status": ["PAID", "FAILED"],
                                              "settled_at": ["2025-07-15 09:00:00", "2025-08-03 09:00:00"]}), "r1")
    return sc, ann, rows, line["line_id"][0]


def test_a_returned_payment_is_re_issued_whole_after_the_window_moved_past_its_first_month(tmp_path: Path) -> None:
    sc, ann, rows, _ = _back_pay_failed(tmp_path)
    night = sc.supplement(rows, "2025-08-04")  # the window now starts in 2023-08
    again = sc.lines(night.batch_id).filter(pl.col("person_id") == ann["person_id"])
    assert again.select("line_type", "reason", "months", "amount_fen").rows() == [
        ("PAYMENT", "REISSUE", 27, 27 * 15000)]
    assert again["period_from"][0].isoformat() == "2023-07-01"
    assert night.summary["expired"] == {"people": 0, "months": 0, "fen": 0}
    sc.publish(night)
    net = sc.net().filter(pl.col("person_id") == ann["person_id"])
    assert net.height == 27 and set(net["net_fen"]) == {15000}
    # paid: the next night has nothing for her, and nothing expires
    later = sc.supplement(rows, "2025-09-04")
    assert sc.lines(later.batch_id).filter(pl.col("person_id") == ann["person_id"]).height == 0
    assert later.summary["expired"] == {"people": 0, "months": 0, "fen": 0}


def test_a_returned_month_the_person_was_not_entitled_to_is_not_re_issued(tmp_path: Path) -> None:
    """What is re-issued is what the person is entitled to: a hukou found to have started later
    (moved in 2023-09) re-issues from September, and the months before expire nothing."""
    sc, ann, rows, _ = _back_pay_failed(tmp_path)
    import datetime as dt

    later = [{**ann, "hukou_since": dt.date(2023, 9, 10)}, *rows[1:]]
    night = sc.supplement(later, "2025-08-04")
    again = sc.lines(night.batch_id).filter(pl.col("person_id") == ann["person_id"])
    assert again.select("line_type", "months").rows() == [("PAYMENT", 25)]
    assert again["period_from"][0].isoformat() == "2023-09-01"
    assert night.summary["expired"] == {"people": 0, "months": 0, "fen": 0}


def test_a_retry_the_bank_paid_after_the_re_issue_is_recovered_however_old_the_month(tmp_path: Path) -> None:
    """Audit 31C: re-issued whole, then the bank paid the first line on a retry: 2023-07, older
    than the window by then, was held twice and only listed as overpaid. It is recovered as the
    window's months are (AMOUNT_CORRECTION), and nothing is left overpaid."""
    sc, ann, rows, first = _back_pay_failed(tmp_path)
    sc.publish(sc.supplement(rows, "2025-08-04"))  # the re-issue, 27 months
    with Ledger.use(sc.ledger) as led:
        led.import_bank_returns(pl.DataFrame({"line_id": [first], "status": ["PAID"],
                                              "settled_at": ["2025-08-05 09:00:00"]}), "r2")
    night = sc.supplement(rows, "2025-08-06")
    back = sc.lines(night.batch_id).filter(pl.col("person_id") == ann["person_id"])
    assert back.select("line_type", "cause", "months", "amount_fen").rows() == [
        ("RECOVERY", "AMOUNT_CORRECTION", 27, -27 * 15000)]
    assert back["period_from"][0].isoformat() == "2023-07-01"
    assert night.summary["overpaid_before_window"]["fen"] == 0


def test_a_decision_on_the_re_issue_covers_its_oldest_month(tmp_path: Path) -> None:
    """Audit 31C: a hold on the draft re-issuing the bounced line covered from the window's first
    month: 2023-07, which the draft lists, was reported expired while it stood; a plain rejection
    was refused as if the draft paid back a recovery collected under a decision. Both cover from
    the first month the draft lists."""
    sc, ann, rows, _ = _back_pay_failed(tmp_path)
    night = sc.supplement(rows, "2025-08-04")
    with Ledger.use(sc.ledger) as led:
        led.review(night.batch_id, ann["person_id"], "HOLD", "核实", "区民政 王")
        assert led.decisions(night.batch_id)["from_month"].to_list() == [M("2023-07")]
    sc.publish(night)
    held = sc.supplement(rows, "2025-08-05")
    assert held.summary["expired"] == {"people": 0, "months": 0, "fen": 0}

    sc, ann, rows, _ = _back_pay_failed(tmp_path / "reject")
    night = sc.supplement(rows, "2025-08-04")
    with Ledger.use(sc.ledger) as led:
        led.review(night.batch_id, ann["person_id"], "REJECT", "不符合条件", "区民政 王")
        assert led.decisions(night.batch_id)["from_month"].to_list() == [M("2023-07")]
    assert sc.lines(night.batch_id).filter(pl.col("person_id") == ann["person_id"]).height == 0
