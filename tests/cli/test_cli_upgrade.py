"""`allowance ledger upgrade`: a schema-3 ledger (payees kept as texts) becomes schema 5 (through 4), and a
schema-4 one (no recovery tables) schema 5, unchanged in meaning.

A schema-3 ledger is made here from a schema-4 one: its payees table rebuilt as schema 3 kept it
(the texts of each person's since line, and that line's id), the other tables being the same in
both schemas."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl
from cli_helpers import cli, ok, ok_json, user_error

from allowance.ledger import Ledger
from allowance.months import month_index
from allowance.testing import Scenario, person, rewrite_batch_file

SCHEMA_3 = """
create table payees (person_key bigint not null, person_id varchar not null, name varchar,
    district_code varchar not null, channel varchar, card_no varchar, since_line_id varchar not null);
create table batch_no_card (
    batch_id varchar not null, person_id varchar not null, name varchar, district_code varchar not null,
    period_from date not null, period_to date not null, months integer not null, amount_fen bigint not null);
create table batch_quarantine (
    batch_id varchar not null, row_no bigint, reason varchar, reasons varchar, person_id varchar,
    name varchar, birth_date varchar, hukou_since varchar, hukou_out_date varchar, death_date varchar,
    district_code varchar, channel varchar, card_no varchar);
"""


def _two_quarters(root: Path) -> Scenario:
    sc = Scenario(root)
    rows = [person(dt.date(1935 + i, 5, 1), seq=i, name=f"老人{i}") for i in range(5)]
    rows += [person(dt.date(1941, 2, 3), seq=8, channel=None),  # no card: a no-card entry
             {**person(dt.date(1942, 2, 3), seq=9), "district_code": "999999"}]  # quarantined
    sc.publish(sc.quarterly("2025Q3", rows, "2025-07-01", max_quarantine_share=1.0))
    rows[1] = {**rows[1], "card_no": "6217999900000001"}
    rows[3] = {**rows[3], "district_code": "310104"}
    sc.publish(sc.quarterly("2025Q4", rows, "2025-10-01", max_quarantine_share=1.0))
    return sc


def _as_schema_3(led: Path) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """Rewrite the ledger as schema 3 kept it: payees as texts, no-card lists and quarantines as
    rows, lines files without the hashes. Returns the schema-4 payees and the no-card lists and
    quarantines it replaced."""
    with Ledger.use(led, read_only=True) as ledger:
        now = ledger.df("select * from payees order by person_key")
        rows = {part: ledger.df(f"select * from batch_{part}") for part in ("no_card", "quarantine")}
        texts = ledger.payees(now["person_key"])
        line_ids = pl.concat([ledger.part(b, "lines").select("line_id").with_row_index("since_row")
                              .with_columns(since_batch=pl.lit(b)) for b in now["since_batch"].unique()])
    old = (now.join(line_ids.with_columns(pl.col("since_row").cast(pl.Int32)), on=["since_batch", "since_row"])
           .join(texts.rename({"_k": "person_key"}), on="person_key")
           .select("person_key", "person_id", "name", "district_code", pl.col("last_channel").alias("channel"),
                   pl.col("last_card_no").alias("card_no"), pl.col("line_id").alias("since_line_id")))
    assert old.height == now.height
    # every batch's lines and pieces files as schema 3 wrote them: without the two hashes and the key
    con = duckdb.connect(str(led))
    written = con.execute("select batch_id, part from batch_files where part in ('lines', 'pieces')").fetchall()
    con.close()
    for bid, part in written:
        rewrite_batch_file(led, bid, part, lambda f: f.drop("paid_with", "card_with", "person_key", strict=False))
    con = duckdb.connect(str(led))
    folder = led.parent / (led.name + ".batches")
    for (name,) in con.execute("select file from batch_files where part in ('no_card', 'quarantine')").fetchall():
        (folder / name).unlink()
    con.execute("delete from batch_files where part in ('no_card', 'quarantine')")
    con.execute("alter table batch_lines_schema drop column paid_with")
    con.execute("alter table batch_lines_schema drop column card_with")
    con.execute("drop table payees")
    con.execute("drop table recovery_months")
    con.execute("drop table batch_cancels")
    con.execute("drop table approvals")
    con.execute("drop table person_ends")
    con.execute("drop table batch_ends")
    con.execute("drop table batch_no_card_schema")
    con.execute("drop table batch_quarantine_schema")
    con.execute(SCHEMA_3)
    con.register("old", old.to_arrow())
    con.execute("insert into payees select * from old")
    for part, frame in rows.items():
        con.register("rows", frame.to_arrow())
        con.execute(f"insert into batch_{part} select * from rows")
        con.unregister("rows")
    con.execute("update meta set value = '3' where key = 'schema_version'")
    con.close()
    return now, rows


def test_a_schema_3_ledger_is_refused_until_upgraded_then_means_the_same(tmp_path: Path) -> None:
    sc = _two_quarters(tmp_path)
    led = sc.ledger
    before, parts = _as_schema_3(led)
    assert before.height == 5 and before["since_batch"].n_unique() == 2  # two rows changed at Q4
    assert parts["no_card"].height == 2 and parts["quarantine"].height == 2  # one of each a quarter
    con = duckdb.connect(str(led))  # what schema 3 held: the texts
    assert con.execute("select count(*) from payees where card_no = '6217999900000001'").fetchone() == (1,)
    con.close()
    line = user_error(cli("ledger", "status", "--ledger", led), "schema 3", "ledger upgrade", "back up")
    assert str(led) in line
    out = ok(cli("ledger", "upgrade", "--ledger", led)).stdout
    assert out == f"upgraded {led} from schema 3 to 6\n"
    with Ledger.use(led, read_only=True) as ledger:
        after = ledger.df("select * from payees order by person_key")
        assert after.equals(before)  # the same hashes and pointers as the engine writes them
        for part, frame in parts.items():  # the rows as files of their batches, unchanged
            assert ledger.df(f"select * from batch_{part} order by all").equals(frame.sort(pl.all()))
        assert ledger.run("select count(*) from batch_files where part in ('no_card', 'quarantine')") == [(4,)]
        assert ledger.check()["problems"] == []
        seq = ledger.ledger_state_seq()
        events = ledger.df("select action, detail from events where action = 'upgrade'")
    assert events["action"].to_list() == ["upgrade"]
    assert ok_json(cli("ledger", "upgrade", "--ledger", led, "--json")) == {
        "ledger": str(led), "schema_was": "6", "schema": "6", "recovery_months_mended": 0}
    assert ok(cli("ledger", "upgrade", "--ledger", led)).stdout == f"{led}: already at schema 6; nothing to do\n"
    # an upgrade changes nothing that is paid: a draft made before it could still be published
    with Ledger.use(led, read_only=True) as ledger:
        assert ledger.ledger_state_seq() == seq
    assert ok_json(cli("ledger", "check", "--ledger", led, "--json"))["ok"]


def test_a_draft_made_before_the_upgrade_stays_publishable_and_reviewable(tmp_path: Path) -> None:
    sc = Scenario(tmp_path)
    rows = [person(dt.date(1935 + i, 5, 1), seq=i) for i in range(3)]
    sc.publish(sc.quarterly("2025Q3", rows, "2025-07-01"))
    draft = sc.quarterly("2025Q4", rows, "2025-10-01")
    _as_schema_3(sc.ledger)
    ok(cli("ledger", "upgrade", "--ledger", sc.ledger))
    # a review rewrites the old draft's files (now with the hashes), a publication reads them
    with Ledger.use(sc.ledger) as ledger:
        ledger.review(draft.batch_id, rows[0]["person_id"], "HOLD", "checking", "district")
    pub = sc.publish(draft)
    assert pub.status == "published" and pub.lines == 2
    # a later quarter's lines carry the hashes; the views read old and new files alike
    sc.publish(sc.quarterly("2026Q1", rows, "2026-01-01"))
    with Ledger.use(sc.ledger, read_only=True) as ledger:
        assert ledger.check()["problems"] == []
        hashed = ledger.df("select batch_id, count(paid_with) as n from batch_lines group by 1 order by 1")
        # Q3 as schema 3 wrote it; Q4 rewritten by the review; Q1 new (the held person stays out)
        assert hashed["n"].to_list() == [0, 2, 2]
        assert ledger.payees(pl.Series([0])).height == 0


def test_upgrade_refuses_an_unknown_schema_and_a_missing_ledger(tmp_path: Path) -> None:
    led = tmp_path / "l.duckdb"
    user_error(cli("ledger", "upgrade", "--ledger", led), "no ledger here")
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    con = duckdb.connect(str(led))
    con.execute("update meta set value = '2' where key = 'schema_version'")
    con.close()
    user_error(cli("ledger", "upgrade", "--ledger", led), "schema 2", "upgrades only schema 3")
    user_error(cli("ledger", "status", "--ledger", led), "schema 2", "another version of the engine")



def test_an_upgrade_that_fails_changes_nothing(tmp_path: Path) -> None:
    sc = _two_quarters(tmp_path)
    _, parts = _as_schema_3(sc.ledger)
    files = sorted(p.name for p in (tmp_path / "ledger.duckdb.batches").rglob("*.parquet"))
    con = duckdb.connect(str(sc.ledger))
    con.execute("update payees set since_line_id = since_line_id || '9' where person_key = "
                "(select min(person_key) from payees)")
    con.close()
    user_error(cli("ledger", "upgrade", "--ledger", sc.ledger), "1 payee(s) point at no line")
    # still schema 3, its rows where they were, and no file left behind by the rolled-back upgrade
    user_error(cli("ledger", "status", "--ledger", sc.ledger), "schema 3", "ledger upgrade")
    con = duckdb.connect(str(sc.ledger))
    assert con.execute("select count(*) from batch_quarantine").fetchone() == (parts["quarantine"].height,)
    con.close()
    assert sorted(p.name for p in (tmp_path / "ledger.duckdb.batches").rglob("*.parquet")) == files


def test_a_schema_4_ledger_gets_the_months_of_its_recoveries(tmp_path: Path) -> None:
    """Schema 4 had no recovery tables: the upgrade fills recovery_months from the published
    recovery lines' pieces, so a recovery made before it is cancelled, not paid over, when the
    person turns out to be entitled after all."""
    from allowance.runs import Breakers

    sc = Scenario(tmp_path)
    rows = [person(dt.date(1935 + i, 5, 1), seq=i) for i in range(3)]
    sc.publish(sc.quarterly("2025Q3", rows, "2025-07-01"))
    gone = sc.publish(sc.supplement(rows[:2], "2025-08-20", breakers=Breakers(1.0, 1.0)))
    assert gone.summary["recoveries"]["lines"] == 1
    con = duckdb.connect(str(sc.ledger))
    con.execute("drop table recovery_months")
    con.execute("drop table batch_cancels")
    con.execute("drop table approvals")
    con.execute("drop table person_ends")
    con.execute("drop table batch_ends")
    con.execute("update meta set value = '4' where key = 'schema_version'")
    con.close()
    user_error(cli("ledger", "status", "--ledger", sc.ledger), "schema 4", "ledger upgrade")
    assert ok(cli("ledger", "upgrade", "--ledger", sc.ledger)).stdout == f"upgraded {sc.ledger} from schema 4 to 6\n"
    with Ledger.use(sc.ledger, read_only=True) as ledger:
        # rows[2], born 1937: 80-89, 180 yuan a month, recovered for July to September
        jul, sep = month_index(dt.date(2025, 7, 1)), month_index(dt.date(2025, 9, 1))
        assert ledger.owed_recoveries().select("from_mi", "to_mi", "fen").rows() == [(jul, sep, 18000)]
    back = sc.publish(sc.supplement(rows, "2025-08-21"))
    assert back.lines == 0 and back.summary["recoveries_cancelled"]["lines"] == 1
    with Ledger.use(sc.ledger, read_only=True) as ledger:
        assert ledger.run("select state from recoveries") == [("cancelled",)]
        assert ledger.check()["problems"] == []


def test_a_schema_4_bank_failure_of_recovered_months_is_taken_off_its_recoveries(tmp_path: Path) -> None:
    """An audit: schema 4 met a bank failure of months since recovered with CANCEL entries in the
    failed payment line's name, marked the open recovery of those months cancelled while it still
    showed its amount, and left a written-off one owing. Upgraded as it was, the register failed
    `ledger check`, and when the written-off person's death was then corrected the next run paid
    her less, netting her reissue against a recovery the bank had never paid. The upgrade does the
    cancellations again as schema 5 does: taken off the recoveries in their names."""
    from allowance.runs import Breakers

    sc = Scenario(tmp_path)
    rows = [person(dt.date(1935 + i, 5, 1), seq=i) for i in range(5)]
    q3 = sc.publish(sc.quarterly("2025Q3", rows, "2025-07-01"))
    dead = [{**r, "death_date": dt.date(2025, 7, 20)} if i >= 2 else r for i, r in enumerate(rows)]
    sc.publish(sc.supplement(dead, "2025-08-20", breakers=Breakers(1.0, 1.0)))
    failed = [r["person_id"] for r in rows[2:]]
    lines = sc.lines(q3.batch_id).filter(pl.col("person_id").is_in(failed))
    with Ledger.use(sc.ledger) as led:
        recs = dict(led.run("select person_id, line_id from recoveries"))
        owed = dict(led.run("select line_id, amount_fen from recoveries"))
        led.set_recovery_state([recs[rows[3]["person_id"]]], "written_off", "district", "moved abroad")
        led.set_recovery_state([recs[rows[4]["person_id"]]], "recovered", "district", "got it back")
        led.import_bank_returns(lines.select("line_id", status=pl.lit("FAILED"), reason=pl.lit("account closed"),
                                             settled_at=pl.lit("2025-08-25")), "f" * 64)
    with Ledger.use(sc.ledger, read_only=True) as led:
        register = led.run("select line_id, amount_fen, state from recoveries order by 1")
        holdings = led.holdings().sort(pl.all())
        refunds = led.refunds_reported().select("people", "fen", "recovery_lines").rows()
    assert sorted((a, s) for _, a, s in register) == [
        (0, "cancelled"), (0, "cancelled"), (owed[recs[rows[4]["person_id"]]], "recovered")]
    assert refunds == [(1, owed[recs[rows[4]["person_id"]]], [recs[rows[4]["person_id"]]])]

    # The same ledger as schema 4 kept it.
    failed_line = dict(zip(lines["person_id"], lines["line_id"], strict=True))
    con = duckdb.connect(str(sc.ledger))
    for pid, line in failed_line.items():
        con.execute("update bank_entries set line_id = ?, batch_id = ? where kind = 'CANCEL' and person_id = ?",
                    [line, q3.batch_id, pid])
    con.execute("update recoveries set amount_fen = ?, state = 'cancelled', changed_by = 'bank return' "
                "where line_id = ?", [owed[recs[rows[2]["person_id"]]], recs[rows[2]["person_id"]]])
    con.execute("update recoveries set amount_fen = ?, state = 'written_off', changed_by = 'district' "
                "where line_id = ?", [owed[recs[rows[3]["person_id"]]], recs[rows[3]["person_id"]]])
    # schema 4's import said nothing of a refund
    con.execute("update events set detail = json_merge_patch(detail, '{\"recovered_but_never_delivered\": null}') "
                "where action = 'bank_returns'")
    for table in ("recovery_months", "batch_cancels", "approvals", "person_ends", "batch_ends"):
        con.execute(f"drop table {table}")
    con.execute("update meta set value = '4' where key = 'schema_version'")
    con.close()

    ok(cli("ledger", "upgrade", "--ledger", sc.ledger))
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert led.run("select line_id, amount_fen, state from recoveries order by 1") == register
        assert led.owed_recoveries().height == 0
        assert led.holdings().sort(pl.all()).equals(holdings)  # nothing paid changes (an audit: a month did)
        # the refund schema 4 never said is listed, as the import says it today
        assert led.refunds_reported().select("people", "fen", "recovery_lines").rows() == refunds
        assert led.check()["problems"] == []
    # Their deaths were recorded in error: their failed quarter is paid again, whole (July, and the
    # August and September their recoveries had taken back of a payment that never arrived).
    again = sc.publish(sc.supplement(rows, "2025-09-10"))
    assert again.lines == 3 and again.amount_fen == lines["amount_fen"].sum(), (again.amount_fen, owed)
