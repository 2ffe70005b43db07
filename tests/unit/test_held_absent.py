"""A person under a review hold or rejection who leaves the extract (五, SPEC §4): listed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from allowance.ledger import Ledger
from allowance.testing import Scenario, person

MONTHLY = 15000  # 70-79


def _decided_then_new_id(tmp_path: Path, action: str, reason: str) -> tuple[Scenario, dict, dict, dict]:
    """Ann and Pat paid Q3; Pat held or rejected on the Q4 draft, which is published; that night's
    extract corrects Pat's birth date, a new ID. Returns the scenario, ann, pat and pat2."""
    sc = Scenario(tmp_path)
    ann, pat = person("1950-05-05", seq=1), person("1948-03-03", seq=2)
    pat2 = person("1948-04-03", seq=2)  # the corrected birth date: a new ID
    sc.publish(sc.quarterly("2025Q3", [ann, pat], "2025-07-01"))
    q4 = sc.quarterly("2025Q4", [ann, pat], "2025-10-01")
    with Ledger.use(sc.ledger) as led:
        led.review(q4.batch_id, pat["person_id"], action, reason, "district")
    sc.publish(q4.batch_id)
    return sc, ann, pat, pat2


def _listed(sc: Scenario, batch_id: str, change: str) -> list[tuple]:
    """The (person_id, fen) rows of `change` in the night's change report for Pudong."""
    report = pl.read_parquet(sc.out / "reports" / batch_id / "changes" / "district_code=310115" / "part-0.parquet")
    return report.filter(pl.col("change") == change).select("person_id", "fen").rows()


def test_a_held_person_missing_from_the_extract_is_listed_until_released_then_recovered(tmp_path: Path) -> None:
    """An audit: the district held Pat on the 2025Q4 draft; the extract then corrected Pat's birth
    date, so Pat came under a new ID, paid July to December as new, while the hold kept the old
    ID's July to September from being recovered, and nothing listed it. The engine cannot know the
    two IDs are one person: the old one is listed HELD_NOT_IN_EXTRACT (all it holds) on every run
    until the district releases the hold, and then the next run recovers it."""
    sc, ann, pat, pat2 = _decided_then_new_id(tmp_path, "HOLD", "birth date being checked")
    monthly = MONTHLY
    night = sc.supplement([ann, pat2], "2025-10-10", out=sc.out)
    assert night.summary["changes"]["HELD_NOT_IN_EXTRACT"] == {"people": 1, "fen": 3 * monthly}
    assert _listed(sc, night.batch_id, "HELD_NOT_IN_EXTRACT") == [(pat["person_id"], 3 * monthly)]
    assert sc.lines(night.batch_id).select("person_id", "reason").rows() == [(pat2["person_id"], "NEW")]
    sc.publish(night)
    again = sc.supplement([ann, pat2], "2025-10-11")
    assert again.summary["changes"]["HELD_NOT_IN_EXTRACT"] == {"people": 1, "fen": 3 * monthly}  # every run
    with Ledger.use(sc.ledger) as led:
        led.review(again.batch_id, pat["person_id"], "RELEASE", "same person as the new ID", "district")
    released = sc.supplement([ann, pat2], "2025-10-12")
    assert "HELD_NOT_IN_EXTRACT" not in released.summary["changes"]
    rec = sc.lines(released.batch_id).filter(pl.col("line_type") == "RECOVERY")
    assert rec.select("person_id", "cause", "amount_fen").rows() == [(pat["person_id"], "NOT_IN_EXTRACT",
                                                                      -3 * monthly)]
    assert dt.date(2025, 7, 1) == rec["period_from"].item()


def test_a_rejected_person_missing_from_the_extract_is_listed_while_the_old_id_holds_anything(tmp_path: Path) -> None:
    """Audit 26I: Pat is rejected from Q4 (not entitled from October); a corrected birth date
    then brings Pat under a new ID, paid July to December as new, the rejected months too, and
    no decision names it. The old ID is now listed REJECTED_NOT_IN_EXTRACT (what it holds) on the
    runs until its recovery is published: those that pay the new ID, for the district to reject
    it as well."""
    sc, ann, pat, pat2 = _decided_then_new_id(tmp_path, "REJECT", "not entitled from October")
    monthly = MONTHLY
    night = sc.supplement([ann, pat2], "2025-10-10", out=sc.out)
    assert night.summary["changes"]["REJECTED_NOT_IN_EXTRACT"] == {"people": 1, "fen": 3 * monthly}
    assert _listed(sc, night.batch_id, "REJECTED_NOT_IN_EXTRACT") == [(pat["person_id"], 3 * monthly)]
    assert "HELD_NOT_IN_EXTRACT" not in night.summary["changes"]
    lines = sc.lines(night.batch_id).sort("line_type").select("person_id", "line_type", "cause").rows()
    assert lines == [(pat2["person_id"], "PAYMENT", None), (pat["person_id"], "RECOVERY", "NOT_IN_EXTRACT")]
    sc.publish(night)
    after = sc.supplement([ann, pat2], "2025-10-11")
    assert "REJECTED_NOT_IN_EXTRACT" not in after.summary["changes"]  # the old ID holds nothing now
