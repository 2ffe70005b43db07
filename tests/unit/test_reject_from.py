"""`review reject --from` keeps the person's months before it in the draft (audit 26I).

Taken out of the draft and left to the next run, a month at the window's start expired once
that run's window had moved on. The draft now keeps those months as shorter lines under the
same line ids. Checked two ways: against a fresh draft of the same run made after the
rejection (the engine reckoning the same months from the registry), and by what the ledger
holds once both are published.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pytest

from allowance import rules as rules_mod
from allowance.errors import LedgerError
from allowance.ledger import Ledger
from allowance.months import parse_month
from allowance.runs import Breakers
from allowance.testing import Scenario, person

OPEN = Breakers(max_stop_share=1.0, max_shrink_share=1.0)  # a few people: any stop is "more than 2 %"

# The 65-69 band at an odd 75.01 yuan (the district's share of a month is floored), raised to 76.00
# from August 2025 after Q3 was paid: Q4 tops up August and September by 99 fen a month, whose
# district share (3 800 - 3 750 = 50) is not that of 99 fen (49): what the ledger holds counts.
# A line can also straddle the two versions.
RAISE = """id: raise-2025-08
title: test raise
source: test
effective_from: 2025-08-01
effective_to: 2029-04-30
bands:
  - {min_age: 65, max_age: 69, monthly_fen: 7600, cite: t}
  - {min_age: 70, max_age: 79, monthly_fen: 15000, cite: t}
  - {min_age: 80, max_age: 89, monthly_fen: 18000, cite: t}
  - {min_age: 90, max_age: 99, monthly_fen: 35000, cite: t}
  - {min_age: 100, max_age: null, monthly_fen: 60000, cite: t}
disbursement_months: {value: [1, 4, 7, 10], cite: t}
funding: {municipal: 1, district: 1, cite: t}
retro_months: {value: 24, cite: t}
payment_day: {value: 15, cite: t}
channels: {value: [senior_card, social_security_card], cite: t}
exit_month_paid: {value: true, cite: t}
"""


def _tables(tmp: Path, raised: bool) -> Path:
    folder = tmp / f"rules-{'raised' if raised else 'odd'}"
    shutil.copytree(rules_mod.DEFAULT_RULES_DIR, folder)
    f = folder / "2024-hufugui-1.yaml"
    text = f.read_text(encoding="utf-8").replace("monthly_fen: 7500,", "monthly_fen: 7501,")
    if raised:
        text = text.replace("effective_to: 2029-04-30", "effective_to: 2025-07-31")
        (folder / "2025-raise.yaml").write_text(RAISE, encoding="utf-8")
    f.write_text(text, encoding="utf-8")
    return folder


LINE = ["line_type", "period_from", "period_to", "months", "periods", "amount_fen", "municipal_fen", "district_fen",
        "reason", "rules_version"]


def test_a_rejection_from_a_month_keeps_the_months_before_it_as_a_fresh_draft_reckons_them(tmp_path: Path) -> None:
    sc = Scenario(tmp_path, opening_month="2025-07", rules_path=_tables(tmp_path, raised=False))
    topped = person("1958-03-01", seq=1)  # 67: paid Q3, topped up for August and September in Q4
    turning = person("1955-11-10", seq=2)  # 70 in November: a band change inside Q4
    cut_off = person("1945-11-11", seq=10)  # 80 in November, rejected from it: October is CONTINUING
    gapped = person("1950-01-01", seq=3, hukou_since="2025-08-25")  # August and September paid by a supplement
    newcomer = person("1950-06-01", seq=4, hukou_since="2025-06-15")  # first found in Q4: July (2024) on
    whole = person("1950-05-05", seq=5)  # rejected from the window's first month: nothing kept
    no_card = person("1950-05-06", seq=6, channel=None)
    others = [person("1950-05-07", seq=s) for s in range(7, 10)]
    q3_rows = [topped, turning, cut_off, whole, no_card, *others]
    sc.publish(sc.quarterly("2025Q3", q3_rows, "2025-07-01"))
    sc.publish(sc.supplement([*q3_rows, gapped], "2025-09-01"))
    sc.rules = rules_mod.load(_tables(tmp_path, raised=True))
    rows = [*q3_rows, {**gapped, "hukou_since": dt.date.fromisoformat("2025-06-01")}, newcomer]
    reg = sc.registry(rows)
    q4 = sc.quarterly("2025Q4", reg, "2025-10-02").batch_id
    before = sc.lines(q4)
    assert before.filter(pl.col("person_id") == gapped["person_id"])["periods"].to_list() == [
        "2025-07,2025-10..2025-12"]
    rejected = {topped["person_id"]: "2025-11", turning["person_id"]: "2025-12", cut_off["person_id"]: "2025-11",
                gapped["person_id"]: "2025-12",
                newcomer["person_id"]: "2025-08", whole["person_id"]: "2025-07", no_card["person_id"]: "2025-11"}
    with Ledger.use(sc.ledger) as led:
        for pid, month in rejected.items():
            led.review(q4, pid, "REJECT", "不符合条件", "区民政 王", parse_month(month), sc.rules)
        # Still in the draft (the months kept), they are not held on top of the rejection: a release
        # of the hold would lift the rejection too, unseen (audit 27A: paid the rejected months).
        with pytest.raises(LedgerError, match=r"rejected already \(from 2025-12\): release first to hold"):
            led.review(q4, turning["person_id"], "HOLD", "核实", "区民政 王")
        # nor widened by a rejection without --from, re-entered (audit 27E): only --from widens it
        with pytest.raises(LedgerError, match=r"rejected already \(from 2025-12\).*give --from an earlier month"):
            led.review(q4, turning["person_id"], "REJECT", "不符合条件", "区民政 王")
    kept = sc.lines(q4)
    # Everyone else's lines are as drafted, ids and all.
    untouched = before.filter(~pl.col("person_id").is_in(list(rejected)))
    assert kept.filter(~pl.col("person_id").is_in(list(rejected))).equals(untouched)
    # The months before --from stay, under the line ids they had.
    mine = kept.filter(pl.col("person_id").is_in(list(rejected)))
    assert set(mine["person_id"]) == {topped["person_id"], turning["person_id"], cut_off["person_id"],
                                      gapped["person_id"], newcomer["person_id"]}
    assert set(mine["line_id"]) <= set(before["line_id"])
    assert sc.no_card(q4).filter(pl.col("person_id") == no_card["person_id"]).height == 0
    by_person = {r["person_id"]: r for r in mine.iter_rows(named=True)}
    assert by_person[gapped["person_id"]]["periods"] == "2025-07,2025-10..2025-11"
    assert by_person[newcomer["person_id"]]["rules_version"] == "hufugui-2024-1"  # July only
    assert (before.filter(pl.col("person_id") == cut_off["person_id"])["reason"].item(),
            by_person[cut_off["person_id"]]["reason"]) == ("BAND_CHANGE", "CONTINUING")  # audit 27A
    assert by_person[topped["person_id"]]["months"] == 3  # August and September topped up, October paid
    assert (by_person[topped["person_id"]]["amount_fen"], by_person[topped["person_id"]]["district_fen"]) == (
        99 + 99 + 7600, 50 + 50 + 3800)

    # Way 1: a fresh draft of the same run, made after the rejections, reckons the same months the
    # same way (its other lines, the recoveries from --from on, are the next run's).
    fresh = sc.quarterly("2025Q4", reg, "2025-10-02", breakers=OPEN).batch_id
    again = sc.lines(fresh).filter(pl.col("person_id").is_in(list(rejected)) & (pl.col("line_type") == "PAYMENT"))
    assert mine.sort("person_id").select(LINE).equals(again.sort("person_id").select(LINE))
    months = sc.months(q4).join(mine.select("line_id"), on="line_id")
    fresh_months = sc.months(fresh).join(again.select("line_id"), on="line_id")
    assert months.select("person_id", "month_idx", "amount_fen").sort(pl.all()).equals(
        fresh_months.select("person_id", "month_idx", "amount_fen").sort(pl.all()))

    # Way 2: published, the ledger holds each rejected person's months before --from as due; the
    # next night pays none of them again, and recovers only what was paid from --from on.
    sc.publish(q4)
    night = sc.supplement(reg, "2025-11-01", breakers=OPEN)
    night_lines = sc.lines(night.batch_id)
    assert night_lines.filter(pl.col("line_type") == "PAYMENT").height == 0
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert led.check()["problems"] == []


def test_a_month_before_from_no_longer_expires_when_the_next_run_moves_the_window(tmp_path: Path) -> None:
    """The audit's repro: a supplement drafted on the last day of October pays a card's back-pay
    from the window's first month; the person is rejected from June 2025. The next night's window
    starts a month later, so the first month was lost. The draft pays it now."""
    sc = Scenario(tmp_path, opening_month="2024-09")
    a = person("1956-03-15", seq=1, channel=None)
    b = person("1950-01-01", seq=2)
    sc.publish(sc.quarterly("2026Q4", [a, b], "2026-10-01"))
    carded = {**a, "channel": "senior_card", "card_no": "6217000000000001"}
    night = sc.supplement([carded, b], "2026-10-31").batch_id
    with Ledger.use(sc.ledger) as led:
        led.review(night, a["person_id"], "REJECT", "户籍不符", "区民政", parse_month("2025-06"), sc.rules)
    line = sc.lines(night).filter(pl.col("person_id") == a["person_id"])
    assert line.select("period_from", "period_to", "months", "amount_fen").rows() == [
        (dt.date.fromisoformat("2024-10-01"), dt.date.fromisoformat("2025-05-01"), 8, 8 * 7500)]
    sc.publish(night)
    sc.publish(sc.supplement([carded, b], "2026-11-01"))
    held = sc.net().filter(pl.col("person_id") == a["person_id"])
    assert held["month_idx"].to_list() == list(range(parse_month("2024-10"), parse_month("2025-06")))
    assert set(held["net_fen"]) == {7500}


def test_a_rejection_from_a_month_needs_the_tables_the_draft_was_made_with(tmp_path: Path) -> None:
    sc = Scenario(tmp_path, opening_month="2025-07")
    rows = [person("1950-05-05", seq=1), person("1950-05-06", seq=2)]
    sc.publish(sc.quarterly("2025Q3", rows, "2025-07-01"))
    late = person("1950-01-01", seq=3, hukou_since="2025-06-01")
    q4 = sc.quarterly("2025Q4", [*rows, late], "2025-10-02").batch_id
    before = sc.lines(q4)
    raised = rules_mod.load(_tables(tmp_path, raised=True))
    with Ledger.use(sc.ledger) as led:
        for tables, said in ((None, "no rules tables were given"), (raised, "are not those it was drafted with")):
            with pytest.raises(LedgerError, match=said):
                led.review(q4, late["person_id"], "REJECT", "r", "b", parse_month("2025-10"), tables)
        assert led.decisions(q4).height == 0
    assert sc.lines(q4).equals(before)



def test_a_line_topping_up_a_partly_cancelled_recovery_is_cut_without_refusal(tmp_path: Path) -> None:
    """Audit 27A: odd amounts, a recovery (a death recorded in error) still owed and cancelled by
    the draft, and a raise since, so the draft cancels 150.01 yuan a month and tops up 1 fen in
    November and December, whose district share is 1 a month (7 501 - 7 500). The whole line was
    reckoned with the cancellations of the months before --from only, so the review refused, and
    a redraft refused again. Every cancellation of theirs counts for the whole line."""
    odd = _tables(tmp_path, raised=False)
    (odd / "2024-hufugui-1.yaml").write_text((odd / "2024-hufugui-1.yaml").read_text(encoding="utf-8").replace(
        "monthly_fen: 15000,", "monthly_fen: 15001,"), encoding="utf-8")
    raised = tmp_path / "rules-raised-70"
    shutil.copytree(odd, raised)
    base = (odd / "2024-hufugui-1.yaml").read_text(encoding="utf-8")
    (raised / "2024-hufugui-1.yaml").write_text(base.replace("effective_to: 2029-04-30", "effective_to: 2025-10-31"),
                                                encoding="utf-8")
    (raised / "2025-raise.yaml").write_text(
        base.replace("id: hufugui-2024-1", "id: raise-2025-11").replace("effective_from: 2024-05-01",
                                                                       "effective_from: 2025-11-01")
        .replace("monthly_fen: 15001,", "monthly_fen: 15002,"), encoding="utf-8")
    sc = Scenario(tmp_path / "run", opening_month="2025-07", rules_path=odd)
    p = person("1955-11-10", seq=1)  # 70 in November
    others = [person("1950-01-01", seq=s) for s in range(2, 5)]
    sc.publish(sc.quarterly("2025Q3", [p, *others], "2025-07-01"))
    sc.publish(sc.quarterly("2025Q4", [p, *others], "2025-10-01"))
    sc.publish(sc.supplement([{**p, "death_date": dt.date(2025, 9, 20)}, *others], "2025-10-20", breakers=OPEN))
    sc.rules = rules_mod.load(raised)
    reg = sc.registry([p, *others])
    night = sc.supplement(reg, "2025-10-21", breakers=OPEN).batch_id
    line = sc.lines(night).filter(pl.col("person_id") == p["person_id"])
    assert line.select("months", "amount_fen", "district_fen").row(0) == (2, 2, 2)
    with Ledger.use(sc.ledger) as led:
        led.review(night, p["person_id"], "REJECT", "不符合条件", "区民政", parse_month("2025-12"), sc.rules)
    kept = sc.lines(night).filter(pl.col("person_id") == p["person_id"])
    fresh = sc.supplement(reg, "2025-10-21", breakers=OPEN).batch_id
    again = sc.lines(fresh).filter((pl.col("person_id") == p["person_id"]) & (pl.col("line_type") == "PAYMENT"))
    assert kept.select(LINE).equals(again.select(LINE))
    assert kept.select("period_from", "months", "amount_fen", "district_fen").row(0) == (
        dt.date(2025, 11, 1), 1, 1, 1)


def test_a_cancelled_recovery_older_than_the_window_stays_with_a_rejection_from_a_later_month_as_a_redraft_has_it(
        tmp_path: Path) -> None:
    """Audit 27A: a recovery of September 2023 (a death recorded in error) is still owed; the
    2025Q4 draft, whose window starts in October 2023, cancels it. Rejected from January 2024, the
    reviewed draft and a redraft under the same rejection must agree on it (whether 150 yuan was
    still claimed had depended on whether the draft went stale). They agreed by both dropping it,
    a person under any decision keeping every recovery owed; audit 28C: September 2023 is before
    the rejection's month, so the person's, and a recovery of it left owed is claimed back from
    someone entitled to it (and reported expired). Both keep the cancellation now: a rejection
    covers its months only (a hold still keeps every recovery owed)."""
    sc = Scenario(tmp_path, opening_month="2023-07")
    p, x = person("1950-03-03", seq=1), person("1950-04-04", seq=2)
    sc.publish(sc.quarterly("2023Q3", [p, x], "2023-07-01"))
    sc.publish(sc.supplement([{**p, "death_date": dt.date(2023, 8, 15)}, x], "2023-09-01", breakers=OPEN))
    reg = sc.registry([p, x])
    q4 = sc.quarterly("2025Q4", reg, "2025-10-01", breakers=OPEN).batch_id
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert led.df("select from_mi from batch_cancels where batch_id = ?", [q4])["from_mi"].to_list() == [
            parse_month("2023-09")]
    with Ledger.use(sc.ledger) as led:
        led.review(q4, p["person_id"], "REJECT", "不符合条件", "区民政", parse_month("2024-01"), sc.rules)
    fresh = sc.quarterly("2025Q4", reg, "2025-10-02", breakers=OPEN).batch_id
    with Ledger.use(sc.ledger, read_only=True) as led:
        cancels = {b: led.df("select * from batch_cancels where batch_id = ?", [b]).height for b in (q4, fresh)}
    assert cancels == {q4: 1, fresh: 1}
    kept = sc.lines(q4).filter(pl.col("person_id") == p["person_id"])
    again = sc.lines(fresh).filter((pl.col("person_id") == p["person_id"]) & (pl.col("line_type") == "PAYMENT"))
    assert kept.select(LINE).equals(again.select(LINE))
    # published, nothing of September 2023 is owed back any more, and it is not reported expired
    sc.publish(q4)
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert led.owed_recoveries().filter(pl.col("from_mi") <= parse_month("2023-12")).height == 0
    night = sc.supplement(reg, "2025-10-20", breakers=OPEN)
    assert night.summary["expired"]["months"] == 0


def test_a_redraft_under_the_same_rejection_carries_the_district_approval(tmp_path: Path) -> None:
    """Audit 27C: C's Q3 payment failed at the bank and a death recorded in error had its Q4
    recovered; the night's draft re-issues July to September and cancels the recovery of October
    to December, so it stores C's pieces month by month. Rejected from October, the draft keeps
    the three months as they were stored; a redraft under the same decision, with no
    cancellation, stores them as one piece. The same months at the same amounts: `review carry`
    keeps the district's approval (it had listed the district as changed, with nothing to see)."""
    import hashlib

    sc = Scenario(tmp_path, opening_month="2025-07")
    c, other = person("1950-02-11", seq=1, district_code="310104"), person("1950-05-11", seq=2)
    q3 = sc.quarterly("2025Q3", [c, other], "2025-07-01").batch_id
    sc.publish(q3)
    sc.publish(sc.quarterly("2025Q4", [c, other], "2025-10-01"))
    sc.publish(sc.supplement([{**c, "death_date": dt.date(2025, 9, 20)}, other], "2025-10-20", breakers=OPEN))
    failed = sc.lines(q3).filter(pl.col("person_id") == c["person_id"])["line_id"].item()
    notice = pl.DataFrame({"line_id": [failed], "status": ["FAILED"], "settled_at": ["2025-10-10"],
                           "reason": ["closed"]})
    with Ledger.use(sc.ledger) as led:
        led.import_bank_returns(notice, hashlib.sha256(notice.write_csv().encode()).hexdigest())
    reg = sc.registry([c, other])
    night = sc.supplement(reg, "2025-10-21", breakers=OPEN).batch_id
    assert sc.months(night).filter(pl.col("person_id") == c["person_id"]).height == 3
    with Ledger.use(sc.ledger) as led:
        led.review(night, c["person_id"], "REJECT", "不符合条件", "区民政", parse_month("2025-10"), sc.rules)
        led.approve(night, ["310104"], "徐汇民政", None)
    redraft = sc.supplement(reg, "2025-10-21", breakers=OPEN).batch_id
    with Ledger.use(sc.ledger, read_only=True) as led:
        pieces = {b: led.df("select from_mi, to_mi from batch_pieces where batch_id = ? and person_id = ?",
                            [b, c["person_id"]]).height for b in (night, redraft)}
    assert pieces == {night: 3, redraft: 1}  # cut otherwise, the same months
    with Ledger.use(sc.ledger) as led:
        carried = led.carry_approvals(redraft, night, "市大数据中心")
    assert carried["carried"] == ["310104"] and carried["changed"] == [], carried


def test_a_lists_refusal_says_from_would_do_only_where_it_would_for_everyone_named(tmp_path: Path) -> None:
    """c6d9918 (audit 27F): the hint was judged on the list's first person. For a list of people
    each rejected from a later month and still listed, `--from` narrows every one of them; with
    someone held among them it would not (a hold is released first), so no hint."""
    sc = Scenario(tmp_path, opening_month="2025-07")
    a, b, c = (person(f"1950-05-0{i}", seq=i) for i in (1, 2, 3))
    rows = [a, b, c, *(person("1950-06-01", seq=s) for s in range(4, 9))]
    sc.publish(sc.quarterly("2025Q3", rows, "2025-07-01"))
    q4 = sc.quarterly("2025Q4", rows, "2025-10-02").batch_id
    with Ledger.use(sc.ledger) as led:
        led.review(q4, a["person_id"], "REJECT", "不符合条件", "区民政 王", parse_month("2025-12"), sc.rules)
        led.review(q4, b["person_id"], "REJECT", "不符合条件", "区民政 王", parse_month("2025-11"), sc.rules)
        led.review(q4, c["person_id"], "HOLD", "核实", "区民政 王")
        with pytest.raises(LedgerError, match=r"2 of the 2 people .* rejected already \(from 2025-12\): release "
                                              r"first to reject, or give --from an earlier month; nothing recorded"):
            led.review(q4, [a["person_id"], b["person_id"]], "REJECT", "不符合条件", "区民政 王")
        with pytest.raises(LedgerError, match=r"2 of the 2 people .* rejected already \(from 2025-12\): release "
                                              r"first to reject; nothing recorded"):
            led.review(q4, [a["person_id"], c["person_id"]], "REJECT", "不符合条件", "区民政 王")
        assert led.decisions(q4).height == 3  # nothing recorded by either
