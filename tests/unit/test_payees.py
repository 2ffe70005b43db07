"""payees: what each person was last paid with; a publication rewrites only the rows that changed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from allowance import idcard
from allowance.errors import RefusedError
from allowance.ledger import Ledger
from allowance.testing import Scenario, person


def test_a_publication_rewrites_only_changed_payees(tmp_path: Path) -> None:
    sc = Scenario(tmp_path)
    rows = [person(dt.date(1940 + i, 3, 1), seq=i) for i in range(5)]
    q3 = sc.publish(sc.quarterly("2025Q3", rows, "2025-07-01"))
    moved = {**rows[1], "card_no": "6217999900000001"}
    renamed = {**rows[2], "channel": "social_security_card", "district_code": "310104"}
    named = {**rows[4], "name": "测试二"}  # only the name: paid_with changes, card_with does not
    q4 = sc.publish(sc.quarterly("2025Q4", [rows[0], moved, renamed, rows[3], named], "2025-10-01"))
    with Ledger.use(sc.ledger, read_only=True) as led:
        stored = led.df("select * from payees").with_columns(person_id=idcard.id_from_key_expr("person_key"))
        # each row's since line, as the line id it points at
        since = {r["person_id"]: led.part(r["since_batch"], "lines")["line_id"][r["since_row"]]
                 for r in stored.iter_rows(named=True)}
        lines = {r["person_id"]: r["line_id"] for r in led.df(
            "select person_id, line_id from batch_lines where batch_id = ? and line_type = 'PAYMENT'",
            [q4.batch_id]).iter_rows(named=True)}
        first = {r["person_id"]: r["line_id"] for r in led.df(
            "select person_id, line_id from batch_lines where batch_id = ?", [q3.batch_id]).iter_rows(named=True)}
        got = {r["person_id"]: r for r in led.payees(stored["person_key"]).iter_rows(named=True)}
        assert led.check()["problems"] == []
    assert len(stored) == 5 and len(got) == 5
    for r in (rows[0], rows[3]):  # unchanged: the row of the first payment stands
        assert since[r["person_id"]] == first[r["person_id"]]
        assert got[r["person_id"]]["last_card_no"] == r["card_no"]
    assert got[moved["person_id"]]["last_card_no"] == "6217999900000001"
    assert since[moved["person_id"]] == lines[moved["person_id"]]
    assert (got[renamed["person_id"]]["last_channel"], got[renamed["person_id"]]["district_code"]) == (
        "social_security_card", "310104")
    assert since[renamed["person_id"]] == lines[renamed["person_id"]]
    assert (got[named["person_id"]]["name"], since[named["person_id"]]) == ("测试二", lines[named["person_id"]])


def test_channel_changes_are_the_people_paid_to_another_card_or_channel(tmp_path: Path) -> None:
    sc = Scenario(tmp_path)
    rows = [person(dt.date(1940 + i, 3, 1), seq=i) for i in range(4)]
    sc.publish(sc.quarterly("2025Q3", rows, "2025-07-01"))
    now = pl.DataFrame({
        "person_id": [r["person_id"] for r in rows] + ["11010119400101001X"],
        "channel": ["senior_card", rows[1]["channel"], "social_security_card", rows[3]["channel"], "senior_card"],
        "card_no": [rows[0]["card_no"], "6217999900000001", rows[2]["card_no"], rows[3]["card_no"], "1"],
    }).with_columns(_k=idcard.order_key_expr("person_id"))
    with Ledger.use(sc.ledger, read_only=True) as led:
        switched, taken = led.channel_changes(now.select("_k", "channel", "card_no"))
    assert switched.columns == ["_k"]
    # the card of one, the channel of another; the same two, and one never paid, are no change
    assert set(now.join(switched, on="_k", how="semi")["person_id"]) == {rows[1]["person_id"], rows[2]["person_id"]}
    # nobody's card is another's: new cards, a new channel, a card never paid
    assert taken.height == 0


def test_a_card_new_to_its_person_that_another_was_last_paid_to_is_taken(tmp_path: Path) -> None:
    sc = Scenario(tmp_path)
    rows = [person(dt.date(1940 + i, 3, 1), seq=i) for i in range(3)]
    sc.publish(sc.quarterly("2025Q3", rows, "2025-07-01"))
    newcomer = "11010119400101001X"
    now = pl.DataFrame({
        "person_id": [r["person_id"] for r in rows] + [newcomer],
        # 0 keeps its card; 1 moves to 2's card; 2 keeps its own; the newcomer brings 0's
        "channel": [rows[0]["channel"], rows[2]["channel"], rows[2]["channel"], rows[0]["channel"]],
        "card_no": [rows[0]["card_no"], rows[2]["card_no"], rows[2]["card_no"], rows[0]["card_no"]],
    }).with_columns(_k=idcard.order_key_expr("person_id"))
    with Ledger.use(sc.ledger, read_only=True) as led:
        switched, taken = led.channel_changes(now.select("_k", "channel", "card_no"))
    assert set(now.join(switched, on="_k", how="semi")["person_id"]) == {rows[1]["person_id"]}
    # those whose card is new to them and was last paid to someone else; not those who keep theirs
    assert set(now.join(taken, on="_k", how="semi")["person_id"]) == {rows[1]["person_id"], newcomer}


def test_a_card_number_under_two_ids_is_listed_with_every_holder(tmp_path: Path) -> None:
    # Audit 19B: the same number under two channel labels was not seen, and the report named each
    # district's own person but not who else the card is paid to.
    sc = Scenario(tmp_path)
    ann = person(dt.date(1950, 5, 5), seq=1, district_code="310101", card_no="6228480000000001")
    bob = person(dt.date(1952, 3, 3), seq=2, district_code="310104", channel="social_security_card",
                 card_no="6228480000000001")
    cat = person(dt.date(1951, 1, 1), seq=3, district_code="310106", card_no="6228480000000003")
    first = sc.quarterly("2025Q3", [ann, bob, cat], "2025-07-01", out=sc.out)
    sc.publish(first)
    assert first.summary["changes"]["CARD_SHARED"] == {"people": 2, "fen": 90000}
    held = pl.read_parquet(sc.out / "reports" / first.batch_id / "card_shared.parquet")
    assert held.select("card_no", "person_id", "district_code", "seen").rows() == [
        ("6228480000000001", ann["person_id"], "310101", "batch"),
        ("6228480000000001", bob["person_id"], "310104", "batch")]
    # a newcomer in a supplement, on cat's number under the other channel: listed, with cat as the
    # ledger's holder, in the district of cat's row tonight (audit 19D: listed with none)
    dan = person(dt.date(1948, 2, 2), seq=4, channel="social_security_card", card_no="6228480000000003")
    night = sc.supplement([ann, bob, cat, dan], "2025-08-10", out=sc.out)
    assert night.summary["changes"]["CARD_SHARED"] == {"people": 1, "fen": 45000}
    held = pl.read_parquet(sc.out / "reports" / night.batch_id / "card_shared.parquet")
    assert held.select("card_no", "person_id", "district_code", "seen").rows() == sorted([
        ("6228480000000003", dan["person_id"], "310115", "batch"),
        ("6228480000000003", cat["person_id"], "310106", "ledger")], key=lambda r: r[1])
    said = (sc.out / "reports" / night.batch_id / "summary.txt").read_text(encoding="utf-8")
    assert "card_shared.parquet: 1 card(s)" in said


def test_a_refused_run_leaves_the_card_holders_too(tmp_path: Path) -> None:
    # Audit 19D: a run refused by a breaker listed CARD_SHARED rows in the report it leaves, but
    # not who else each card is paid to.
    sc = Scenario(tmp_path)
    rows = [person(dt.date(1950, 5, 5), seq=i) for i in range(1, 8)]
    sc.publish(sc.quarterly("2025Q3", rows, "2025-07-01"))
    bob = person(dt.date(1952, 3, 3), seq=9, card_no=rows[0]["card_no"])
    with pytest.raises(RefusedError) as refused:
        sc.quarterly("2025Q4", [rows[0], bob], "2025-10-01", out=sc.out)
    held = pl.read_parquet(next((sc.out / "reports").glob("refused-*")) / "card_shared.parquet")
    assert sorted(held["person_id"]) == sorted([rows[0]["person_id"], bob["person_id"]])
    assert "stop payments" in str(refused.value)


def test_a_ledger_holder_whose_row_is_quarantined_is_listed_in_its_district(tmp_path: Path) -> None:
    # Audit 19E: a holder known from the ledger whose row tonight is quarantined was listed with no
    # district; the district of their row is known.
    from allowance.runs import Breakers

    sc = Scenario(tmp_path)
    ann = person(dt.date(1950, 5, 5), seq=1, district_code="310104", card_no="6228480000000001")
    cat = person(dt.date(1951, 1, 1), seq=3, card_no="6228480000000003")
    sc.publish(sc.quarterly("2025Q3", [ann, cat], "2025-07-01"))
    dan = person(dt.date(1948, 2, 2), seq=4, card_no="6228480000000001")
    night = sc.supplement([{**ann, "name": "NULL"}, cat, dan], "2025-08-10", out=sc.out, max_quarantine_share=1.0,
                          breakers=Breakers(max_stop_share=1.0, max_shrink_share=1.0))
    held = pl.read_parquet(sc.out / "reports" / night.batch_id / "card_shared.parquet")
    assert held.select("person_id", "district_code", "seen").sort("seen").rows() == [
        (dan["person_id"], "310115", "batch"), (ann["person_id"], "310104", "ledger")]
