"""`allowance ledger open|status`: opened once, with an opening month; defaults from $ALLOWANCE_LEDGER."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest
from cli_helpers import cli, ok, ok_json, published_sample, sample_rows, user_error, write_sample

from allowance.ledger import Ledger
from allowance.testing import write_registry


def test_open_then_status(isolated: Path) -> None:
    led = isolated / "x" / "ledger.duckdb"
    out = ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led)).stdout
    assert out == f"opened {led} with opening month 2025-07\n"
    assert led.is_file()
    info = ok_json(cli("ledger", "status", "--ledger", led, "--json"))
    assert info == {"ledger": str(led), "opening_month": "2025-07", "entries": 0, "person_months_held": 0,
                    "net_fen": 0, "people": 0, "batches": {}, "refunds_reported": {"people": 0, "fen": 0}}
    text = ok(cli("ledger", "status", "--ledger", led)).stdout
    assert "opening_month: 2025-07" in text


def test_open_json(isolated: Path) -> None:
    led = isolated / "l.duckdb"
    assert ok_json(cli("ledger", "open", "--opening-month", "2024-01", "--ledger", led, "--json")) == {
        "ledger": str(led), "opening_month": "2024-01"}


def test_second_opening_is_refused(isolated: Path) -> None:
    led = isolated / "l.duckdb"
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    user_error(cli("ledger", "open", "--opening-month", "2024-01", "--ledger", led), "already open", "2025-07")
    # … and the first opening month stands.
    assert ok_json(cli("ledger", "status", "--ledger", led, "--json"))["opening_month"] == "2025-07"


@pytest.mark.parametrize("month", ["2025-7", "2025-13", "202507", "next month", ""])
def test_open_malformed_month(isolated: Path, month: str) -> None:
    led = isolated / "l.duckdb"
    user_error(cli("ledger", "open", "--opening-month", month, "--ledger", led), "YYYY-MM")
    assert not led.exists()


@pytest.mark.parametrize("month", ["0000-01", "1899-12", "3000-01"])
def test_open_a_month_of_no_plausible_year(isolated: Path, month: str) -> None:
    """Audit 31B: year 0 ended in an internal error (no such date)."""
    led = isolated / "l.duckdb"
    user_error(cli("ledger", "open", "--opening-month", month, "--ledger", led), repr(month), "1900 to 2999")
    assert not led.exists()


def test_another_applications_duckdb_is_not_a_ledger(isolated: Path) -> None:
    """Audit 31B: `ledger open` on another application's DuckDB file ended in an internal error
    (a table "already exists"), and `ledger status` said to open it."""
    led = isolated / "theirs.duckdb"
    con = duckdb.connect(str(led))
    con.execute("create table batches (a integer)")
    con.close()
    for args in (["open", "--opening-month", "2025-07"], ["status"], ["check"]):
        user_error(cli("ledger", *args, "--ledger", led), str(led), "not a ledger", "batches")
    con = duckdb.connect(str(led))
    assert con.execute("select table_name from information_schema.tables").fetchall() == [("batches",)]
    con.close()


def test_ledger_defaults_from_env(isolated: Path) -> None:
    led = isolated / "env" / "ledger.duckdb"
    env = {"ALLOWANCE_LEDGER": str(led)}
    ok(cli("ledger", "open", "--opening-month", "2025-07", env=env))
    assert led.is_file()
    assert not (isolated / "var").exists()  # not the built-in default
    assert ok_json(cli("ledger", "status", "--json", env=env))["ledger"] == str(led)
    user_error(cli("ledger", "open", "--opening-month", "2025-07", env=env), "already open")


def test_status_of_a_ledger_never_opened(isolated: Path) -> None:
    led = isolated / "none.duckdb"
    user_error(cli("ledger", "status", "--ledger", led), str(led), "ledger open")
    assert not led.exists()


def test_check_of_a_consistent_ledger(isolated: Path) -> None:
    led = isolated / "l.duckdb"
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    reg = write_sample(isolated / "registry.parquet")
    bid = ok_json(cli("run", "quarterly", "--quarter", "2025Q3", "--registry", reg, "--as-of", "2025-07-01",
                      "--ledger", led, "--json"))["batch_id"]
    before = ok_json(cli("ledger", "check", "--ledger", led, "--json"))
    assert before["ok"] and before["entries"] == 0 and before["batches"] == 1 and before["problems"] == []
    pub = ok_json(cli("publish", bid, "--approved-by", "t", "--ledger", led, "--out", isolated / "out", "--json"))
    after = ok_json(cli("ledger", "check", "--ledger", led, "--json"))
    assert after["ok"] and after["entries"] > 0 and after["people"] > 0, after
    assert pub["lines"] > 0
    assert "ok: True" in ok(cli("ledger", "check", "--ledger", led)).stdout


def _tamper(led: Path, sql: str) -> None:
    con = duckdb.connect(str(led))
    con.execute(sql)
    con.close()


@pytest.mark.parametrize(("sql", "fragment"), [
    ("update holdings set fen = fen + 1 where from_mi = (select min(from_mi) from holdings) "
     "and person_key = (select min(person_key) from holdings)", "holdings differ from the journal's net for 1 person"),
    ("update batches set amount_fen = amount_fen + 1", "journal holds"),
    ("update payees set paid_with = paid_with + 1 where person_key = (select min(person_key) from payees)",
     "1 payees row(s) whose details are not those of their last payment line"),
    ("update payees set since_row = since_row + 1 where person_key = (select min(person_key) from payees)",
     "1 payees row(s) whose since line is not a payment to them with those details"),
    ("delete from payees where person_key = (select min(person_key) from payees)",
     "1 person(s) with a published payment line but no payees row"),
    ("insert into payees select person_key + 11, paid_with, card_with, since_batch, since_row from payees limit 1",
     "1 payees row(s) of people with no published payment line"),
    ("insert into holdings values (11 * 31010119400101001 + 3, 24306, 24306, 100)",
     "holdings differ from the journal's net for 1 person"),
    # a run stored twice (a fifth audit: compared as sets, it matched, and a run recovered it)
    ("insert into holdings select * from holdings where person_key = (select min(person_key) from holdings)",
     "holdings differ from the journal's net for 1 person"),
])
def test_check_finds_a_damaged_ledger(isolated: Path, sql: str, fragment: str) -> None:
    led = isolated / "l.duckdb"
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    reg = write_sample(isolated / "registry.parquet")
    bid = ok_json(cli("run", "quarterly", "--quarter", "2025Q3", "--registry", reg, "--as-of", "2025-07-01",
                      "--ledger", led, "--json"))["batch_id"]
    ok(cli("publish", bid, "--approved-by", "t", "--ledger", led, "--out", isolated / "out"))
    _tamper(led, sql)
    res = cli("ledger", "check", "--ledger", led, "--json")
    assert res.exit_code == 1, (res.stdout, res.stderr)
    info = json.loads(res.stdout)
    assert not info["ok"]
    assert any(fragment in p for p in info["problems"]), info["problems"]
    assert not re.search(r"\d{10}", " ".join(info["problems"])), info["problems"]  # IDs masked


def _check_fails(led: Path, *fragments: str) -> dict[str, Any]:
    res = cli("ledger", "check", "--ledger", led, "--json")
    assert res.exit_code == 1, (res.stdout, res.stderr)
    info = json.loads(res.stdout)
    assert not info["ok"] and all(any(f in p for p in info["problems"]) for f in fragments), info["problems"]
    return info


def test_a_batch_file_cut_short_or_grown_is_one_line_naming_it(isolated: Path) -> None:
    """An audit: a ledger batch file with a byte appended (or cut off) has no Parquet footer, and
    every command, `ledger check` too, stopped with an internal error. As a missing file does, it
    now stops the ledger from opening, in one line that names it and says to restore the backup."""
    led, _, bid = published_sample(isolated, "l.duckdb")
    (pieces,) = (led.parent / f"{led.name}.batches" / bid).glob("pieces-*.parquet")
    pieces.chmod(0o644)
    with pieces.open("ab") as f:
        f.write(b"x")
    for command in (("ledger", "check"), ("ledger", "status"), ("batches", "list")):
        res = cli(*command, "--ledger", led)
        assert res.exit_code == 2 and "internal error" not in res.stderr, res.stderr  # as a missing file
        assert res.stderr.strip().splitlines() == [res.stderr.strip()] and pieces.name in res.stderr, res.stderr
        assert "a ledger file cannot be read" in res.stderr and "restore both from the backup" in res.stderr


def test_check_verifies_the_bank_files_where_they_were_published(isolated: Path) -> None:
    """An audit: a deleted manifest or an altered bank file under <out>/<batch_id> checked as ok.
    A folder taken away (by the bank) is not a problem; a publication never moved into place is."""
    led, out, bid = published_sample(isolated, "l.duckdb")
    assert ok_json(cli("ledger", "check", "--ledger", led, "--json"))["bank_folders"] == {
        "verified": 1, "taken_away": 0, "unrecorded": 0, "not_in_ledger": 0}
    # a second audit: a part file no manifest lists (a bank reading the folder would take it), an
    # entry without its hash (an internal error), one naming a file outside the batch
    extra = out / bid / "payments" / "district_code=310101" / "channel=senior_card" / "part-1.parquet"
    extra.parent.mkdir(parents=True, exist_ok=True)
    extra.write_bytes(b"PAR1")
    _check_fails(led, "payments/district_code=310101/channel=senior_card/part-1.parquet: not listed in the manifest")
    extra.unlink()
    manifest = json.loads((out / bid / "manifest.json").read_text())
    good = (out / bid / "manifest.json").read_text()
    first = next(iter(manifest["files"]))
    manifest["files"][first] = "no hash"
    manifest["files"]["../../l.duckdb"] = {"sha256": "0" * 64}
    (out / bid / "manifest.json").write_text(json.dumps(manifest))
    _check_fails(led, f"{first}: the manifest gives no SHA-256 for it",
                 "../../l.duckdb: the manifest names a file outside the batch")
    (out / bid / "manifest.json").write_text(good)
    with (out / bid / "funding.parquet").open("ab") as f:
        f.write(b"x")
    _check_fails(led, f"batch {bid}, bank files in {out.resolve() / bid}: funding.parquet: sha256 differs")
    (out / bid / "manifest.json").unlink()
    _check_fails(led, "no manifest.json")
    (out / bid).rename(out / f".{bid}.partial")
    _check_fails(led, f"batch {bid}: published, but its bank files were never moved into place")
    shutil.rmtree(out / f".{bid}.partial")
    info = ok_json(cli("ledger", "check", "--ledger", led, "--json"))
    assert info["bank_folders"] == {"verified": 0, "taken_away": 1, "unrecorded": 0, "not_in_ledger": 0}, info
    assert info["ok"], info


def test_a_batch_published_before_folders_were_recorded_gets_its_folder_when_published_again(isolated: Path) -> None:
    """Batches published before bb1e218 recorded no folder, so `ledger check` could not verify their
    bank files. Publishing one again where its files are whole (a no-op) records the folder."""
    led, out, bid = published_sample(isolated, "l.duckdb")
    _tamper(led, "update events set detail = json_object('lines', detail->'lines') where action = 'publish'")
    assert ok_json(cli("ledger", "check", "--ledger", led, "--json"))["bank_folders"] == {
        "verified": 0, "taken_away": 0, "unrecorded": 1, "not_in_ledger": 0}
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out))
    assert ok_json(cli("ledger", "check", "--ledger", led, "--json"))["bank_folders"] == {
        "verified": 1, "taken_away": 0, "unrecorded": 0, "not_in_ledger": 0}
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out))  # recorded once
    with Ledger.use(led, read_only=True) as lg:
        assert lg.run("select count(*) from events where action = 'bank_folder'") == [(1,)]


def test_a_draft_killed_before_its_commit_leaves_no_files_once_the_next_draft_is_saved(isolated: Path) -> None:
    """An audit: a draft killed after writing its files to the store, before its commit, left a
    folder no batch lists (whole IDs and card numbers) for ever, and `ledger check` said ok. The
    next draft saved removes such folders; a folder holding anything but batch files is left."""
    led, _, _ = published_sample(isolated, "l.duckdb")
    store = isolated / "l.duckdb.batches"
    leftover = store / "Q2025Q4-deadbeef"
    leftover.mkdir()
    (leftover / "lines-0123456789abcdef.parquet").write_bytes(b"PAR1 whole IDs and cards PAR1")
    (leftover / "pieces-0123456789abcdef.tmp").write_bytes(b"half written")
    someone = store / "notes"
    someone.mkdir()
    (someone / "README.txt").write_text("kept", encoding="utf-8")
    reg = write_sample(isolated / "registry.parquet")
    ok(cli("run", "supplement", "--as-of", "2025-07-10", "--registry", reg, "--ledger", led))
    assert not leftover.exists() and (someone / "README.txt").is_file()
    assert ok_json(cli("ledger", "check", "--ledger", led, "--json"))["ok"]


def test_a_ledger_of_another_schema_is_refused(isolated: Path) -> None:
    led = isolated / "l.duckdb"
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    _tamper(led, "update meta set value = '0' where key = 'schema_version'")
    user_error(cli("ledger", "status", "--ledger", led), str(led), "schema 0")


@pytest.mark.parametrize(("sql", "fragment"), [
    ("update recoveries set state = 'cancelled'", "state does not match what they still owe"),
    ("update recoveries set amount_fen = amount_fen - 100", "amount is not their months less what was cancelled"),
    ("delete from recovery_months", "months are not their recovery line's pieces"),
    ("update recoveries set months = months + 1", "months are not the months they still owe something of"),
    # the same money in other months (a review of the round's diff: totals alone let this pass)
    ("update recovery_months set from_mi = from_mi + 1, to_mi = to_mi + 1",
     "months are not their recovery line's pieces"),
    ("delete from recoveries", "published recovery line(s) with no recovery register row"),
    # no longer owed, with no `recoveries confirm` or `write-off` behind it (a state changed by hand)
    ("update recoveries set state = 'recovered'", "1 recovery register row(s) recovered, but commands set 0"),
    ("update recoveries set state = 'written_off'", "1 recovery register row(s) written off, but commands set 0"),
])
def test_check_finds_a_recovery_register_changed_by_hand(isolated: Path, sql: str, fragment: str) -> None:
    """A fifth audit: the register was not checked, so a recovery set to recovered by hand let a
    corrected death pay its months again. Here someone missing from one night's extract has an
    open recovery, then the register is changed."""
    led, out = isolated / "l.duckdb", isolated / "out"
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    rows = sample_rows(30)
    full = write_registry(rows, isolated / "full.parquet")
    q3 = ok_json(cli("run", "quarterly", "--quarter", "2025Q3", "--as-of", "2025-07-01", "--registry", full,
                     "--ledger", led, "--json"))["batch_id"]
    ok(cli("publish", q3, "--approved-by", "t", "--ledger", led, "--out", out))
    with Ledger.use(led, read_only=True) as lg:
        paid = lg.part(q3, "lines")["person_id"][0]
    short = write_registry([r for r in rows if r["person_id"] != paid], isolated / "short.parquet")
    night = ok_json(cli("run", "supplement", "--as-of", "2025-07-10", "--force", "--reason", "test", "--registry",
                        short, "--ledger", led, "--json"))["batch_id"]
    ok(cli("publish", night, "--approved-by", "t", "--ledger", led, "--out", out))
    assert "ok: True" in ok(cli("ledger", "check", "--ledger", led)).stdout
    with Ledger.use(led, read_only=True) as lg:
        assert lg.run("select count(*), min(state) from recoveries") == [(1, "open")]
    _tamper(led, sql)
    res = cli("ledger", "check", "--ledger", led, "--json")
    assert res.exit_code == 1, (res.stdout, res.stderr)
    assert any(fragment in p for p in json.loads(res.stdout)["problems"]), res.stdout
