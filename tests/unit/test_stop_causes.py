"""Why a recipient's payments stop, as the change report says it (issue 4)."""

from __future__ import annotations

from pathlib import Path

from allowance.runs import Breakers
from allowance.testing import Scenario, person

OPEN = Breakers(max_stop_share=1.0, max_shrink_share=1.0)  # three people: any stop is "more than 2 %"


def test_a_recipient_whose_row_is_quarantined_stops_as_quarantined_not_as_missing(tmp_path: Path) -> None:
    """An audit: a recipient whose row came broken (an unknown district here) was reported
    STOP_NOT_IN_EXTRACT, though the row was there, to be mended; one in no row at all still is."""
    sc = Scenario(tmp_path)
    ann, bob, cy = person("1950-05-05", seq=1), person("1948-03-03", seq=2), person("1947-02-02", seq=3)
    sc.publish(sc.quarterly("2025Q3", [ann, bob, cy], "2025-07-01"))
    night = sc.supplement([ann, {**bob, "district_code": "310199"}], "2025-07-05", breakers=OPEN,
                          max_quarantine_share=1.0)
    assert night.summary["changes"] == {"STOP_NOT_IN_EXTRACT": {"people": 1, "fen": 15000},
                                        "STOP_QUARANTINED": {"people": 1, "fen": 15000}}
