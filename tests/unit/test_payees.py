"""payees: what each person was last paid with; a publication rewrites only the rows that changed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from allowance.ledger import Ledger
from allowance.testing import Scenario, person


def test_a_publication_rewrites_only_changed_payees(tmp_path: Path) -> None:
    sc = Scenario(tmp_path)
    rows = [person(dt.date(1940 + i, 3, 1), seq=i) for i in range(4)]
    q3 = sc.publish(sc.quarterly("2025Q3", rows, "2025-07-01"))
    moved = {**rows[1], "card_no": "6217999900000001"}
    renamed = {**rows[2], "channel": "social_security_card", "district_code": "310104"}
    q4 = sc.publish(sc.quarterly("2025Q4", [rows[0], moved, renamed, rows[3]], "2025-10-01"))
    with Ledger.use(sc.ledger, read_only=True) as led:
        got = {r["person_id"]: r for r in led.df("select * from payees").iter_rows(named=True)}
        lines = {r["person_id"]: r["line_id"] for r in led.df(
            "select person_id, line_id, batch_id from batch_lines where line_type = 'PAYMENT'").iter_rows(named=True)
            if r["line_id"].startswith(q4.batch_id)}
        first = {r["person_id"]: r["line_id"] for r in led.df(
            "select person_id, line_id from batch_lines where batch_id = ?", [q3.batch_id]).iter_rows(named=True)}
    assert len(got) == 4
    for r in (rows[0], rows[3]):  # unchanged: the row of the first payment stands
        assert got[r["person_id"]]["since_line_id"] == first[r["person_id"]]
    assert got[moved["person_id"]]["card_no"] == "6217999900000001"
    assert got[moved["person_id"]]["since_line_id"] == lines[moved["person_id"]]
    assert (got[renamed["person_id"]]["channel"], got[renamed["person_id"]]["district_code"]) == (
        "social_security_card", "310104")
    assert got[renamed["person_id"]]["since_line_id"] == lines[renamed["person_id"]]
