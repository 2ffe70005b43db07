"""A hold or rejection in review: every list it changes loses its approval, and the draft's summary
says what it now cancels (found by an audit of district approvals and recovery cancellations)."""

from __future__ import annotations

import json
from pathlib import Path

from allowance.ledger import Ledger
from allowance.runs import Breakers
from allowance.testing import Scenario, person

OPEN = Breakers(max_stop_share=1.0, max_shrink_share=1.0)  # two people: one missing is half of them


def test_a_hold_withdraws_every_list_the_person_is_in_and_their_cancellation(tmp_path: Path) -> None:
    """Alice is paid Q3 in 310104, missing one night (Q3 recovered there), then back registered in
    310105: Q4's draft cancels her recovery in 310104 and pays her Q4 in 310105. A hold takes both
    out, so both districts' approvals go, and the summary no longer counts the cancellation."""
    sc = Scenario(tmp_path, opening_month="2025-07")
    alice = person("1948-06-06", seq=1, district_code="310104")
    carol = person("1950-05-05", seq=2, district_code="310105")
    sc.publish(sc.quarterly("2025Q3", [alice, carol], "2025-07-02"))
    sc.publish(sc.supplement([carol], "2025-08-20", breakers=OPEN))
    q4 = sc.quarterly("2025Q4", [{**alice, "district_code": "310105"}, carol], "2025-10-02", breakers=OPEN)
    assert q4.summary["recoveries_cancelled"] == {"lines": 1, "people": 1, "fen": 45000}
    with Ledger.use(sc.ledger) as led:
        assert led.districts_of(q4.batch_id) == ["310104", "310105"]
        led.approve(q4.batch_id, ["310104", "310105"], "区民政", None)
        held = led.review(q4.batch_id, alice["person_id"], "HOLD", "核实", "区民政")
        assert held["approvals_withdrawn"] == ["310104", "310105"]
        assert led.approvals(q4.batch_id) == []
        assert json.loads(held["summary"])["recoveries_cancelled"] == {"lines": 0, "people": 0, "fen": 0}


def test_a_hold_from_later_months_does_not_make_an_earlier_hold_a_no_op(tmp_path: Path) -> None:
    """Audit 17E: a hold recorded on a draft whose months start later covers only those months;
    holding the person on a draft with earlier months said "already held", recorded nothing, and
    the earlier months were paid."""
    sc = Scenario(tmp_path, opening_month="2023-01")
    p = person("1948-06-06", seq=1, channel=None)
    sc.publish(sc.quarterly("2023Q1", [p], "2023-01-02"))  # no card yet: listed, not paid
    later = sc.quarterly("2025Q2", [p], "2025-03-20", breakers=OPEN).batch_id  # months from 2023-03
    with Ledger.use(sc.ledger) as led:
        led.review(later, p["person_id"], "HOLD", "核实", "区民政")
    carded = {**p, "channel": "senior_card", "card_no": "6217000000000001"}
    night = sc.supplement([carded], "2023-02-15", breakers=OPEN).batch_id  # pays 2023-01 … 02
    assert sc.lines(night)["person_id"].to_list() == [p["person_id"]]
    with Ledger.use(sc.ledger) as led:
        held = led.review(night, p["person_id"], "HOLD", "核实", "区民政")
    assert held["already"] == [] and held["lines"] == 0


def test_the_recoveries_a_publication_cancels_are_listed_for_their_district(tmp_path: Path) -> None:
    """Audit 18A: a recovery cancelled (the person back in the extract, entitled to those months
    again) was said only by `recoveries list`: the district told to recover it would go on asking
    the family. Audit 18E: listed with the draft, a cancellation a hold then took out was listed
    still, telling the district to stop recovering money still owed. The publication lists what the
    ledger recorded, per district, beside the change report."""
    import polars as pl

    from allowance.ledger import Ledger as L

    def cancelling(root: Path) -> tuple[Scenario, dict[str, object], str]:
        sc = Scenario(root, opening_month="2025-07")
        alice = person("1948-06-06", seq=1, district_code="310104")
        carol = person("1950-05-05", seq=2, district_code="310105")
        sc.publish(sc.quarterly("2025Q3", [alice, carol], "2025-07-02"))
        sc.publish(sc.supplement([carol], "2025-08-20", breakers=OPEN))
        back = sc.supplement([{**alice, "district_code": "310105"}, carol], "2025-08-25", breakers=OPEN)
        assert back.summary["recoveries_cancelled"] == {"lines": 1, "people": 1, "fen": 45000}
        return sc, alice, back.batch_id

    sc, alice, bid = cancelling(tmp_path / "as drafted")
    res = sc.publish(bid)
    listed = pl.read_parquet(sc.out / "reports" / bid / "recoveries_cancelled.parquet")
    assert res.summary["recoveries_cancelled_list"] == str(sc.out / "reports" / bid / "recoveries_cancelled.parquet")
    assert listed.select("district_code", "person_id", "months", "amount_fen").rows() == [
        ("310104", alice["person_id"], 3, 45000)]
    with L.use(sc.ledger, read_only=True) as led:  # the recovery line it cancels
        (line,) = led.df("select line_id from recoveries where person_id = ?", [alice["person_id"]])["line_id"]
    assert listed["line_id"].to_list() == [line]
    # a hold in review takes the cancellation out: nothing is listed, the recovery stays owed
    sc, alice, bid = cancelling(tmp_path / "held")
    with L.use(sc.ledger) as led:
        led.review(bid, str(alice["person_id"]), "HOLD", "核实", "区民政")
    res = sc.publish(bid)
    assert not (sc.out / "reports" / bid / "recoveries_cancelled.parquet").exists()
    assert "recoveries_cancelled_list" not in res.summary
