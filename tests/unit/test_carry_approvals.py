"""A redraft keeps the district approvals of the lists that did not change (五 资格审定).

The case: the quarter's draft is under review for days, and a nightly supplement published
meanwhile (a card arrived in Pudong) makes it stale. Its redraft must not need all the districts
to approve again, only those whose list changed; a list that changed in any way keeps no approval.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from allowance.errors import RefusedError
from allowance.ledger import Ledger, LedgerError
from allowance.runs import Breakers, publish_batch
from allowance.testing import Scenario, person, rewrite_batch_file

OPEN = Breakers(max_stop_share=1.0, max_shrink_share=1.0)


def _under_review(tmp_path: Path) -> tuple[Scenario, list[dict], str]:
    """Q3 published; Q4 drafted and approved by its three districts, 310104 after a hold there."""
    sc = Scenario(tmp_path, opening_month="2025-07")
    people = [
        person("1948-06-06", seq=1, district_code="310101"),
        person("1950-05-05", seq=2, district_code="310104"),
        person("1944-03-03", seq=3, district_code="310104"),
        person("1939-09-09", seq=4, district_code="310115", channel=None),  # no card yet
        person("1952-02-02", seq=5, district_code="310115"),
    ]
    sc.publish(sc.quarterly("2025Q3", people, "2025-07-02"))
    q4 = sc.quarterly("2025Q4", people, "2025-10-02", breakers=OPEN).batch_id
    with Ledger.use(sc.ledger) as led:
        led.review(q4, people[2]["person_id"], "HOLD", "核实", "徐汇民政")
        for d in ("310101", "310104", "310115"):
            led.approve(q4, [d], f"民政 {d}", "看过" if d == "310101" else None)
    return sc, people, q4


def test_only_the_district_whose_list_changed_approves_again(tmp_path: Path) -> None:
    sc, people, q4 = _under_review(tmp_path)
    with_card = [*people[:3], {**people[3], "channel": "senior_card", "card_no": "6217000000000099"}, people[4]]
    sc.publish(sc.supplement(with_card, "2025-10-05", breakers=OPEN))  # pays Q3 to the new card: q4 is stale
    redraft = sc.quarterly("2025Q4", with_card, "2025-10-06", breakers=OPEN).batch_id
    with Ledger.use(sc.ledger) as led:
        assert led.draft_is_stale(q4) and redraft != q4
        got = led.carry_approvals(redraft, q4, "市大数据中心 陈")
        assert got == {"carried": ["310101", "310104"], "changed": ["310115"], "emptied": [], "not_yet": [],
                       "already": []}
        kept = {a["district_code"]: a for a in led.approvals(redraft)}
        before = {a["district_code"]: a for a in led.approvals(q4)}
        for d in ("310101", "310104"):  # the approver and time stand; the note says where it came from
            assert (kept[d]["approved_by"], kept[d]["approved_at"]) == (before[d]["approved_by"],
                                                                        before[d]["approved_at"])
            assert kept[d]["note"].startswith(f"carried from {q4} by 市大数据中心 陈: list unchanged")
        assert kept["310101"]["note"].endswith("(看过)")
        assert not led.draft_is_stale(redraft)  # carrying changes nothing paid
        event = led.df("select action, actor, detail from events order by seq desc limit 1").row(0)
        assert event[:2] == ("approve", "市大数据中心 陈")
        assert json.loads(event[2]) == {"districts": ["310101", "310104"], "carried_from": q4, "changed": ["310115"],
                                        "emptied": []}
        # An audit: the redraft still said to carry from q4, and doing so carried nothing; a second
        # audit: an approval there since is new, and named again.
        assert led.earlier_approvals(redraft) is None
        # Twice: nothing more to carry (310115 compared again: a hold since could have made it the same).
        assert led.carry_approvals(redraft, q4, "x") == {"carried": [], "changed": ["310115"], "emptied": [],
                                                         "not_yet": [], "already": ["310101", "310104"]}
        assert len(led.approvals(redraft)) == 2
        seq = led.seq
        led.carry_approvals(redraft, q4, "x")  # compared again, nothing approved since: nothing recorded
        assert led.seq == seq
        led.approve(q4, ["310115"], "浦东民政 again", None)
        assert led.earlier_approvals(redraft) == {"from": q4, "districts": ["310115"]}
    with pytest.raises(RefusedError, match="310115"):
        publish_batch(redraft, "市民政局", sc.ledger, sc.out, require_district_approvals=True)
    with Ledger.use(sc.ledger) as led:
        led.approve(redraft, ["310115"], "浦东民政", None)
    publish_batch(redraft, "市民政局", sc.ledger, sc.out, require_district_approvals=True)
    manifest = json.loads((sc.out / redraft / "manifest.json").read_text(encoding="utf-8"))
    assert [(a["district_code"], a["approved_by"]) for a in manifest["district_approvals"]] == [
        ("310101", "民政 310101"), ("310104", "民政 310104"), ("310115", "浦东民政")]


@pytest.mark.parametrize("change", ["name", "card_no", "district_code", "death_date"])
def test_any_change_to_a_list_keeps_its_approval_out(tmp_path: Path, change: str) -> None:
    """A list is compared line for line: a name, a card, a move, a death all change it."""
    sc, people, q4 = _under_review(tmp_path)
    edit = {"name": "改名", "card_no": "6217000000000077", "district_code": "310101",
            "death_date": dt.date(2025, 10, 3)}
    changed = [people[0], {**people[1], change: edit[change]}, *people[2:]]
    redraft = sc.quarterly("2025Q4", changed, "2025-10-06", breakers=OPEN).batch_id
    assert redraft != q4
    with Ledger.use(sc.ledger) as led:
        got = led.carry_approvals(redraft, q4, "x")
    if change == "district_code":  # 310101's list gained the person; 310104 has nothing left (one held)
        assert got == {"carried": ["310115"], "changed": ["310101"], "emptied": ["310104"], "not_yet": [],
                       "already": []}, got
    else:
        assert got == {"carried": ["310101", "310115"], "changed": ["310104"], "emptied": [], "not_yet": [],
                       "already": []}, got


def test_what_is_not_carried(tmp_path: Path) -> None:
    sc, people, q4 = _under_review(tmp_path)
    redraft = sc.quarterly("2025Q4", people, "2025-10-03", breakers=OPEN).batch_id
    assert redraft != q4  # another as-of, the same lists
    nightly = sc.supplement(people, "2025-10-03", breakers=OPEN).batch_id
    with Ledger.use(sc.ledger) as led:
        published = led.df("select batch_id from batches where status = 'published'")["batch_id"][0]
        for args, why in [((redraft, q4, " "), "needs --by"), ((q4, q4, "x"), "name the earlier draft"),
                          ((nightly, q4, "x"), "not a draft of the same run"),
                          ((redraft, published, "x"), "published")]:
            seq = led.seq
            with pytest.raises(LedgerError, match=why):
                led.carry_approvals(*args)
            assert led.seq == seq and led.approvals(redraft) == []
        assert led.carry_approvals(redraft, q4, "x")["carried"] == ["310101", "310104", "310115"]


def test_a_no_card_list_is_part_of_the_district_s_list(tmp_path: Path) -> None:
    """310115's no-card entry (not paid, listed for follow-up) renamed: its list changed."""
    sc, people, q4 = _under_review(tmp_path)
    renamed = [*people[:3], {**people[3], "name": "改名"}, people[4]]
    redraft = sc.quarterly("2025Q4", renamed, "2025-10-06", breakers=OPEN).batch_id
    with Ledger.use(sc.ledger) as led:
        assert led.earlier_approvals(redraft) == {"from": q4, "districts": ["310101", "310104", "310115"]}
        assert led.carry_approvals(redraft, q4, "x")["changed"] == ["310115"]
        assert led.earlier_approvals(redraft) is None


def test_a_line_s_months_are_part_of_its_list(tmp_path: Path) -> None:
    """Lines alike but their months not (a piece moved a month, by hand here): the list changed."""
    sc, people, q4 = _under_review(tmp_path)
    redraft = sc.quarterly("2025Q4", people, "2025-10-06", breakers=OPEN).batch_id
    someone = people[0]["person_id"]  # 310101's only line
    rewrite_batch_file(sc.ledger, redraft, "pieces", lambda f: f.with_columns(
        [pl.when(pl.col("person_id") == someone).then(pl.col(c) - 1).otherwise(pl.col(c)).alias(c)
         for c in ("from_mi", "to_mi")]))
    with Ledger.use(sc.ledger) as led:
        assert led.carry_approvals(redraft, q4, "x") == {
            "carried": ["310104", "310115"], "changed": ["310101"], "emptied": [], "not_yet": [], "already": []}


def test_what_changed_is_listed_person_by_person(tmp_path: Path) -> None:
    """The districts to approve again get who changed, on both sides: a renamed person's line as
    approved and as now, a card that arrived as the no-card entry approved and the line now."""
    sc, people, q4 = _under_review(tmp_path)
    now = [people[0], {**people[1], "name": "改名"}, people[2],
           {**people[3], "channel": "senior_card", "card_no": "6217000000000099"}, people[4]]
    redraft = sc.quarterly("2025Q4", now, "2025-10-06", breakers=OPEN).batch_id
    with Ledger.use(sc.ledger) as led:
        got = led.carry_approvals(redraft, q4, "x", with_changes=True)
    assert got["changed"] == ["310104", "310115"]
    changes = got["changes"]
    renamed, carded = people[1]["person_id"], people[3]["person_id"]
    assert sorted(changes.select("district_code", "person_id", "what", "side").rows()) == sorted([
        ("310104", renamed, "line", "approved"), ("310104", renamed, "line", "now"),
        ("310115", carded, "line", "now"), ("310115", carded, "no_card", "approved")])
    assert changes.filter(pl.col("person_id") == renamed).sort("side")["name"].to_list() == ["测试", "改名"]
    assert changes.filter(pl.col("what") == "no_card")["amount_fen"].to_list() == [6 * 18000]  # Q3 and Q4, aged 86


def test_a_list_emptied_is_said_and_who_left_is_listed(tmp_path: Path) -> None:
    """Audit 17D: a district whose approved list emptied (its one payee moved) was not mentioned,
    and the redraft's hint kept naming it."""
    sc, people, q4 = _under_review(tmp_path)
    moved = [people[0], {**people[1], "district_code": "310101"}, *people[2:]]
    redraft = sc.quarterly("2025Q4", moved, "2025-10-06", breakers=OPEN).batch_id
    with Ledger.use(sc.ledger) as led:
        assert led.earlier_approvals(redraft) == {"from": q4, "districts": ["310101", "310115"]}  # not 310104
        got = led.carry_approvals(redraft, q4, "x", with_changes=True)
        assert (got["changed"], got["emptied"]) == (["310101"], ["310104"])
        who = people[1]["person_id"]
        assert sorted(got["changes"].select("district_code", "person_id", "what", "side").rows()) == [
            ("310101", who, "line", "now"), ("310104", who, "line", "approved")]
        assert led.earlier_approvals(redraft) is None


def test_a_cancelled_recovery_is_listed_with_its_months_and_amount(tmp_path: Path) -> None:
    """Audit 17D: a cancelled recovery that changed was listed with no months and no amount."""
    sc = Scenario(tmp_path, opening_month="2025-07")
    alice = person("1948-06-06", seq=1, district_code="310104")
    carol = person("1950-05-05", seq=2, district_code="310105")
    sc.publish(sc.quarterly("2025Q3", [alice, carol], "2025-07-02"))
    sc.publish(sc.supplement([carol], "2025-08-20", breakers=OPEN))  # alice missing: Q3 recovered
    back = [{**alice, "district_code": "310105"}, carol]
    q4 = sc.quarterly("2025Q4", back, "2025-10-02", breakers=OPEN).batch_id  # cancels it in 310104
    with Ledger.use(sc.ledger) as led:
        led.approve(q4, ["310104", "310105"], "区民政", None)
    again = sc.quarterly("2025Q4", [carol], "2025-10-03", breakers=OPEN).batch_id  # alice gone again
    with Ledger.use(sc.ledger) as led:
        got = led.carry_approvals(again, q4, "x", with_changes=True)
    cancelled = got["changes"].filter(pl.col("what") == "cancelled_recovery").sort("period_from")
    assert cancelled.select("district_code", "person_id", "side", "months", "amount_fen").unique().rows() == [
        ("310104", alice["person_id"], "approved", 1, 15000)]  # month by month, as cancelled
    assert cancelled["period_from"].to_list() == [dt.date(2025, m, 1) for m in (7, 8, 9)]
