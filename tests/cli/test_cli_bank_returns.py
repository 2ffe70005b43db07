"""`allowance bank-returns import` (SPEC §8): what the bank sends back, as staff see it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
from cli_helpers import cli, ok, ok_json, published_sample, sample_rows, user_error

from allowance.ledger import Ledger
from allowance.money import yuan
from allowance.testing import write_registry


def _published(isolated: Path) -> tuple[Path, list[str]]:
    led, _, bid = published_sample(isolated)
    with Ledger.use(led, read_only=True) as lg:
        ids = lg.part(bid, "lines").sort("line_id")["line_id"].head(2).to_list()
    return led, ids


def test_a_return_file_is_imported_once_and_says_what_it_reversed(isolated: Path) -> None:
    led, (paid, failed) = _published(isolated)
    with Ledger.use(led, read_only=True) as lg:
        (fen,) = lg.run("select sum(fen * (to_mi - from_mi + 1)) from batch_pieces where line_id = ?", [failed])[0]
    f = isolated / "returns.csv"
    pl.DataFrame({"line_id": [paid, failed], "status": ["PAID", "FAILED"], "reason": [None, "account closed"],
                  "settled_at": ["2025-07-16", "2025-07-16"]}).write_csv(f)
    text = ok(cli("bank-returns", "import", f, "--ledger", led)).stdout
    assert text == (f"{f}: 2 rows, 2 new (1 paid, 1 failed, {yuan(fen)} yuan reversed; the next "
                    "run re-issues what is still due), 0 already recorded\n"), text
    again = ok_json(cli("bank-returns", "import", f, "--ledger", led, "--json"))
    assert (again["new"], again["already_recorded"], again["reversed_fen"]) == (0, 2, 0), again


def test_a_retry_the_bank_paid_is_said_and_undoes_the_reversal(isolated: Path) -> None:
    """Audit 20F: a PAID after the line's FAILED (a retry the bank paid) was refused, and the
    night's supplement re-issued the months the bank had paid."""
    led, (_, failed) = _published(isolated)
    with Ledger.use(led, read_only=True) as lg:
        (fen,) = lg.run("select sum(fen * (to_mi - from_mi + 1)) from batch_pieces where line_id = ?", [failed])[0]
    f1, f2 = isolated / "failed.csv", isolated / "retry.csv"
    pl.DataFrame({"line_id": [failed], "status": ["FAILED"], "settled_at": ["2025-07-16"]}).write_csv(f1)
    pl.DataFrame({"line_id": [failed], "status": ["PAID"], "settled_at": ["2025-07-18 10:00"]}).write_csv(f2)
    ok(cli("bank-returns", "import", f1, "--ledger", led))
    text = ok(cli("bank-returns", "import", f2, "--ledger", led)).stdout
    assert text.splitlines()[1] == (f"1 line(s) failed at the bank and since paid on a retry: their {yuan(fen)} yuan "
                                    "count as delivered again, and are not re-issued (what a run re-issued already "
                                    "is recovered by the next run)"), text
    with Ledger.use(led, read_only=True) as lg:
        assert lg.reversals().height == 0
        assert lg.run("select sum(fen * (to_mi - from_mi + 1)) from bank_entries where line_id = ?", [failed]) == [(0,)]
    again = ok_json(cli("bank-returns", "import", f2, "--ledger", led, "--json"))
    assert (again["new"], again["paid_on_retry"], again["restored_fen"]) == (0, 0, 0), again


def test_a_settled_at_before_the_line_s_batch_is_refused(isolated: Path) -> None:
    """Audit 21A: a wrong year decides how a line ended (a credit typed 2024 made nothing of the
    failure after it); a line cannot be settled before its batch was drafted."""
    led, (paid, failed) = _published(isolated)
    f = isolated / "returns.csv"
    pl.DataFrame({"line_id": [paid, failed], "status": ["PAID", "FAILED"],
                  "settled_at": ["2025-07-16", "2024-07-16 09:00"]}).write_csv(f)
    msg = user_error(cli("bank-returns", "import", f, "--ledger", led))
    assert msg == (f"error: line {failed} is settled_at 2024-07-16 09:00, before its batch was drafted (as of "
                   "2025-07-01); 1 such row(s): a wrong date decides how a line ended, so nothing is imported: ask "
                   "the bank for the right one"), msg
    with Ledger.use(led, read_only=True) as lg:
        assert lg.run("select count(*) from bank_returns") == [(0,)]
    # Audit 21B: only a date the engine reads as a local date is compared (a UTC timestamp's date is
    # not Shanghai's), and a row recorded before is no news whatever its date (an older engine
    # recorded it; the file still in the inbox had refused every night).
    pl.DataFrame({"line_id": [paid], "status": ["PAID"], "settled_at": ["2025-06-30T17:30:00Z"]}).write_csv(f)
    assert ok_json(cli("bank-returns", "import", f, "--ledger", led, "--json"))["new"] == 1
    with Ledger.use(led) as lg:
        lg.run("insert into bank_returns values (?, 'FAILED', null, '2025-06-20', now()::timestamp, 'old')", [failed])
    pl.DataFrame({"line_id": [failed], "status": ["FAILED"], "settled_at": ["2025-06-20"]}).write_csv(f)
    again = ok_json(cli("bank-returns", "import", f, "--ledger", led, "--json"))
    assert (again["new"], again["already_recorded"]) == (0, 1), again


def test_a_settled_at_after_tomorrow_is_refused(isolated: Path) -> None:
    """Audit 21A: a credit typed 2052 made the real bounce before it an earlier attempt, silently,
    and the person went unpaid. A settlement cannot be later than tomorrow (a bank's clock a little
    ahead of the engine's is tomorrow at most)."""
    led, (paid, failed) = _published(isolated)
    f = isolated / "returns.csv"
    ok(cli("bank-returns", "import", _notices(f, [(failed, "FAILED", "2025-08-02 10:00")]), "--ledger", led))
    pl.DataFrame({"line_id": [paid, failed], "status": ["PAID", "PAID"],
                  "settled_at": ["2025-07-16", "2052-08-01 09:00"]}).write_csv(f)
    msg = user_error(cli("bank-returns", "import", f, "--ledger", led))
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date()
    assert msg == (f"error: line {failed} is settled_at 2052-08-01 09:00, after tomorrow "
                   f"({today + dt.timedelta(days=1)}, Shanghai); 1 such "
                   "row(s): a wrong date decides how a line ended, so nothing is imported: ask the bank for the "
                   "right one"), msg
    with Ledger.use(led, read_only=True) as lg:
        assert lg.run("select count(*) from bank_returns") == [(1,)]
        assert lg.reversals().height > 0  # the bounce stands
    # tomorrow is not refused (the bank's clock may be ahead of ours)
    tomorrow = (today + dt.timedelta(days=1)).isoformat()
    assert ok_json(cli("bank-returns", "import", _notices(f, [(paid, "PAID", tomorrow)]), "--ledger", led,
                       "--json"))["new"] == 1


def _notices(f: Path, rows: list[tuple[str, str, str | None]]) -> Path:
    pl.DataFrame(rows, schema={"line_id": pl.String, "status": pl.String, "settled_at": pl.String},
                 orient="row").write_csv(f)
    return f


def test_an_undated_notice_on_record_is_dated_by_staff_and_the_retry_then_imports(isolated: Path) -> None:
    """Audit 21A (3): a notice on record with no date to order by (SPEC §8 names no settled_at)
    could never be ordered against the line's next notice: the bank's retry refused its whole file
    every night, and asking the bank for the dates could not help. Staff give the recorded notice
    the date the bank confirms; the retry then imports."""
    led, (paid, failed) = _published(isolated)
    with Ledger.use(led, read_only=True) as lg:
        (fen,) = lg.run("select sum(fen * (to_mi - from_mi + 1)) from batch_pieces where line_id = ?", [failed])[0]
    f1, f2 = isolated / "failed.csv", isolated / "retry.csv"
    ok(cli("bank-returns", "import", _notices(f1, [(failed, "FAILED", None), (paid, "PAID", None)]), "--ledger", led))
    _notices(f2, [(failed, "PAID", "2025-08-20 10:00")])
    user_error(cli("bank-returns", "import", f2, "--ledger", led), "with no known order (FAILED undated, PAID "
               "2025-08-20 10:00)", "`allowance bank-returns date`")
    # what staff may not do: a date the engine cannot order by, one out of range, a notice not on record
    date = ("bank-returns", "date", failed, "--status", "FAILED", "--reason", "bank letter 2025-09-01", "--by", "li",
            "--ledger", led)
    user_error(cli(*date, "--settled-at", "2025/08/10 09:00"), "give the bank's settlement date and time")
    # a date alone is no order against a notice later that day (audit 25A: a retry that day refused for good)
    user_error(cli(*date, "--settled-at", "2025-08-10"), "a date alone gives no order")
    user_error(cli(*date, "--settled-at", "2024-08-10 09:00"), "before the line's batch was drafted (as of 2025-07-01)")
    user_error(cli(*date, "--settled-at", "2099-08-10 09:00"), "after tomorrow")
    user_error(cli(*date[:3], "--status", "PAID", *date[5:], "--settled-at", "2025-08-10 09:00"),
               f"line {failed} has no PAID notice on record (its notices: FAILED undated)")
    # a date mistyped (the 19th for the 9th: after the retry) is corrected by giving the right one (audit 25A)
    text = ok(cli(*date, "--settled-at", "2025-08-21 09:00")).stdout
    assert text == (f"line {failed}: its FAILED notice (recorded undated) is now dated 2025-08-21 09:00; how the line "
                    "ended is unchanged; the next import of its bank notices orders them by that date\n"), text
    text = ok(cli(*date, "--settled-at", "2025-08-10 09:00")).stdout
    assert "is now dated 2025-08-10 09:00" in text, text
    # the same instant again, however spelled, changes nothing
    again = ok_json(cli(*date, "--settled-at", "2025-08-10T09:00:00", "--json"))
    assert {k: again[k] for k in ("line_id", "status", "recorded", "settled_at", "changed", "failed",
                                  "paid_on_retry")} == {
        "line_id": failed, "status": "FAILED", "recorded": None, "settled_at": "2025-08-10 09:00", "changed": False,
        "failed": 0, "paid_on_retry": 0}, again
    with Ledger.use(led, read_only=True) as lg:
        assert lg.run("select count(*) from events where action = 'notice_dated'") == [(2,)]
        assert lg.run("select settled_at from bank_returns where line_id = ?", [failed]) == [(None,)]
    # the bank re-sends its statement, the undated failure (on record, dated since) with the retry (audit 25A:
    # refused every night as "no known order in this file")
    f3 = _notices(isolated / "statement.csv", [(failed, "FAILED", None), (failed, "PAID", "2025-08-20 10:00")])
    res = ok_json(cli("bank-returns", "import", f3, "--ledger", led, "--json"))
    assert (res["new"], res["already_recorded"], res["paid_on_retry"], res["restored_fen"]) == (1, 1, 1, fen), res
    with Ledger.use(led, read_only=True) as lg:
        assert lg.reversals().height == 0
    # the first file and the retry's read again are no news: their undated row is the one on record
    assert ok_json(cli("bank-returns", "import", f1, "--ledger", led, "--json"))["new"] == 0
    assert ok_json(cli("bank-returns", "import", f2, "--ledger", led, "--json"))["new"] == 0
    # a file's own new notices of a line still need a known order
    with Ledger.use(led, read_only=True) as lg:
        third = lg.run("select line_id from batch_lines where line_id not in (?, ?) and line_type = 'PAYMENT' "
                       "order by line_id limit 1", [paid, failed])[0][0]
    user_error(cli("bank-returns", "import", _notices(f3, [(third, "PAID", None), (third, "FAILED", "2025-08-20")]),
                   "--ledger", led), f"line {third} is both PAID and FAILED in this file, with no known order "
               "(PAID undated, FAILED 2025-08-20;")


def test_a_notice_s_own_day_and_time_stand(isolated: Path) -> None:
    """Audit 25A: a notice recorded as `20250810`, or with an offset, could be dated any day; the
    day it names (in Shanghai) stands, and a notice the bank dated with a time is not dated."""
    led, (paid, failed) = _published(isolated)
    f = isolated / "r.csv"
    ok(cli("bank-returns", "import", _notices(f, [(paid, "PAID", "20250716"), (failed, "FAILED", "2025-08-02 10:00"),
                                                 ]), "--ledger", led))
    base = ("--reason", "bank letter", "--by", "li", "--ledger", led)
    msg = user_error(cli("bank-returns", "date", paid, "--status", "PAID", "--settled-at", "2025-07-17 09:00", *base))
    assert msg == (f"error: line {paid}: its PAID notice is recorded as '20250716', settled on 2025-07-16 (Shanghai); "
                   "--settled-at 2025-07-17 09:00 is another day: give its time on that day"), msg
    ok(cli("bank-returns", "date", paid, "--status", "PAID", "--settled-at", "2025-07-16 09:00", *base))
    user_error(cli("bank-returns", "date", failed, "--status", "FAILED", "--settled-at", "2025-08-02 11:00", *base),
               "the bank dated its FAILED notice with a time of day (2025-08-02 10:00): its date stands")
    # an offset is read in Shanghai; tomorrow is in range for staff as for the bank's files
    with Ledger.use(led, read_only=True) as lg:
        third, fourth = [r[0] for r in lg.run(
            "select line_id from batch_lines where line_id not in (?, ?) and line_type = 'PAYMENT' "
            "order by line_id limit 2", [paid, failed])]
    ok(cli("bank-returns", "import", _notices(f, [(third, "PAID", "2025-06-30T17:30:00Z"), (fourth, "PAID", None)]),
           "--ledger", led))
    tomorrow = f"{dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date() + dt.timedelta(days=1)} 09:00"
    msg = user_error(cli("bank-returns", "date", third, "--status", "PAID", "--settled-at", tomorrow, *base))
    assert "is another day" in msg and "settled on 2025-07-01 (Shanghai)" in msg, msg
    ok(cli("bank-returns", "date", third, "--status", "PAID", "--settled-at", "2025-07-01 01:30", *base))
    ok(cli("bank-returns", "date", fourth, "--status", "PAID", "--settled-at", tomorrow, *base))


def test_a_date_that_changes_how_the_line_ended_puts_the_ledger_right(isolated: Path) -> None:
    """An undated notice is read as best it can be: a FAILED after the line's credit is a bounce,
    reversed, and the next run re-issues it. When the bank then says that failure was an attempt
    before the credit, dating it so must undo the reversal as a retry's credit would (else the
    re-issue pays the months twice, and no file could ever say otherwise: every later notice of
    the line met the undated one). A draft made before is stale; a dating that changes nothing
    leaves a draft as it was."""
    led, (paid, failed) = _published(isolated)
    with Ledger.use(led, read_only=True) as lg:
        fen = {line: lg.run("select sum(fen * (to_mi - from_mi + 1)) from batch_pieces where line_id = ?", [line])[0][0]
               for line in (paid, failed)}
    f = isolated / "r.csv"
    ok(cli("bank-returns", "import", _notices(f, [(paid, "PAID", "2025-07-16 09:00"), (failed, "PAID", None)]),
           "--ledger", led))
    res = ok_json(cli("bank-returns", "import", _notices(f, [(paid, "FAILED", None), (failed, "FAILED", "2025-08-02")]),
                      "--ledger", led, "--json"))
    assert (res["failed"], res["reversed_fen"]) == (2, fen[paid] + fen[failed]), res
    reg = isolated / "registry.parquet"
    draft = ok_json(cli("run", "supplement", "--registry", reg, "--as-of", "2025-08-20", "--ledger", led, "--json"))
    with Ledger.use(led, read_only=True) as lg:
        assert not lg.draft_is_stale(draft["batch_id"])
    # the undated failure was an attempt before the credit: the line was paid
    text = ok(cli("bank-returns", "date", paid, "--status", "FAILED", "--settled-at", "2025-07-15 09:00", "--reason",
                  "bank letter 2025-09-01", "--by", "li", "--ledger", led)).stdout.splitlines()
    assert text[0] == (f"line {paid}: its FAILED notice (recorded undated) is now dated 2025-07-15 09:00; it is no "
                       "longer the line's latest notice, and the line ended PAID; the next import of its bank notices "
                       "orders them by that date"), text
    assert text[1].startswith(f"1 line(s) failed at the bank and since paid on a retry: their {yuan(fen[paid])} "
                              "yuan"), text
    # the undated credit came after the bounce: the bank's retry
    res = ok_json(cli("bank-returns", "date", failed, "--status", "PAID", "--settled-at", "2025-08-03 09:00",
                      "--reason", "bank letter", "--by", "li", "--ledger", led, "--json"))
    assert (res["changed"], res["paid_on_retry"], res["restored_fen"], res["failed"]) == (True, 1, fen[failed], 0), res
    with Ledger.use(led, read_only=True) as lg:
        assert lg.reversals().height == 0
        assert lg.run("select sum(fen * (to_mi - from_mi + 1)) from bank_entries") == [(0,)]
        assert lg.draft_is_stale(draft["batch_id"])
    again = ok_json(cli("bank-returns", "date", failed, "--status", "PAID", "--settled-at", "2025-08-03 09:00",
                        "--reason", "bank letter", "--by", "li", "--ledger", led, "--json"))
    assert (again["changed"], again["paid_on_retry"]) == (False, 0), again
    # a dating that changes nothing (a credit dated before its line's bounce) leaves a draft publishable
    with Ledger.use(led, read_only=True) as lg:
        third = lg.run("select line_id from batch_lines where line_id not in (?, ?) and line_type = 'PAYMENT' "
                       "order by line_id limit 1", [paid, failed])[0][0]
    ok(cli("bank-returns", "import", _notices(f, [(third, "PAID", None)]), "--ledger", led))
    ok(cli("bank-returns", "import", _notices(f, [(third, "FAILED", "2025-08-04")]), "--ledger", led))
    draft = ok_json(cli("run", "supplement", "--registry", reg, "--as-of", "2025-08-21", "--ledger", led, "--json"))
    res = ok_json(cli("bank-returns", "date", third, "--status", "PAID", "--settled-at", "2025-07-16 08:00", "--reason",
                      "bank letter", "--by", "li", "--ledger", led, "--json"))
    assert (res["changed"], res["paid_on_retry"], res["failed"]) == (True, 0, 0), res
    with Ledger.use(led, read_only=True) as lg:
        assert not lg.draft_is_stale(draft["batch_id"])
        assert lg.reversals()["person_id"].n_unique() == 1


def test_a_future_date_on_record_is_found_by_the_check_and_dated_by_staff(isolated: Path) -> None:
    """Audit 25A (5): a credit typed 2052, recorded before imports refused such dates, still decided
    every later notice of its line (the real bounce read as an earlier attempt), and `date`
    refused it as dated by the bank. `ledger check` names it; staff give it the bank's date."""
    led, (paid, _) = _published(isolated)
    with Ledger.use(led) as lg:
        lg.run("insert into bank_returns values (?, 'PAID', null, '2052-07-16 09:00', now()::timestamp, 'old')", [paid])
        problems = lg.check()["problems"]
    assert [p for p in problems if "settled after tomorrow" in p] == [
        f"1 bank notice(s) on record settled after tomorrow ({_tomorrow()}), e.g. line {paid}: PAID 2052-07-16 09:00: "
        "a wrong date decides how its line ended; give each the bank's date with `allowance bank-returns date`"
    ], problems
    f = _notices(isolated / "r.csv", [(paid, "FAILED", "2025-08-02 10:00")])
    # the 2052 credit decides: the bounce is read as an earlier attempt
    assert ok_json(cli("bank-returns", "import", f, "--ledger", led, "--json"))["failed"] == 0
    res = ok_json(cli("bank-returns", "date", paid, "--status", "PAID", "--settled-at", "2025-07-16 09:00",
                      "--reason", "bank letter", "--by", "li", "--ledger", led, "--json"))
    assert (res["changed"], res["failed"]) == (True, 1), res  # the bounce after the credit is the line's end now
    with Ledger.use(led, read_only=True) as lg:
        assert not [p for p in lg.check()["problems"] if "settled after tomorrow" in p]
        assert lg.reversals().height > 0


def test_a_wrong_year_in_another_spelling_is_refused_or_dated(isolated: Path) -> None:
    """Audit 25B: `FAILED 20240802` (a year typed wrong, in a form the engine does not order by)
    passed the date checks and was reversed as a bounce; the bank's retry was then refused, and
    `bank-returns date` refused every date for it (another day than 2024-08-02; 2024-08-02 before
    the batch), so the re-issue paid twice. Its day is held to the batch and to tomorrow however it
    is spelled, and one already on record may be dated."""
    led, (paid, failed) = _published(isolated)
    f = isolated / "r.csv"
    for wrong, said in (("20240802", "before its batch was drafted"),
                        ("2052-08-02T10:00:00+08:00", "after tomorrow")):
        user_error(cli("bank-returns", "import", _notices(f, [(failed, "FAILED", wrong)]), "--ledger", led),
                   f"line {failed} is settled_at {wrong}, {said}")
    with Ledger.use(led) as lg:
        lg.run("insert into bank_returns values (?, 'FAILED', null, '2052-08-02T10:00:00+08:00', now()::timestamp, "
               "'old')", [failed])
        lg.run("insert into bank_returns values (?, 'FAILED', null, '20240802', now()::timestamp, 'old')", [paid])
        assert [p for p in lg.check()["problems"] if "settled after tomorrow" in p] == [
            f"1 bank notice(s) on record settled after tomorrow ({_tomorrow()}), e.g. line {failed}: FAILED "
            "2052-08-02T10:00:00+08:00: a wrong date decides how its line ended; give each the bank's date with "
            "`allowance bank-returns date`"]
    base = ("--reason", "bank letter", "--by", "li", "--ledger", led)
    for line in (paid, failed):
        ok(cli("bank-returns", "date", line, "--status", "FAILED", "--settled-at", "2025-08-02 10:00", *base))
    with Ledger.use(led, read_only=True) as lg:
        assert not [p for p in lg.check()["problems"] if "settled after tomorrow" in p]


def test_a_correction_that_leaves_no_order_says_so_and_the_other_date_decides(isolated: Path) -> None:
    """Audit 25B: corrected so that the line's notices give no order, the command said "how the
    line ended is unchanged" though the ledger held what the withdrawn date had decided. It says
    so now; dating the other notice then decides, and the ledger follows, once each way."""
    led, (paid, _) = _published(isolated)
    with Ledger.use(led, read_only=True) as lg:
        (fen,) = lg.run("select sum(fen * (to_mi - from_mi + 1)) from batch_pieces where line_id = ?", [paid])[0]
    f = isolated / "r.csv"
    ok(cli("bank-returns", "import", _notices(f, [(paid, "PAID", "2025-07-16")]), "--ledger", led))
    assert ok_json(cli("bank-returns", "import", _notices(f, [(paid, "FAILED", None)]), "--ledger", led,
                       "--json"))["failed"] == 1
    date = ("bank-returns", "date", paid, "--reason", "bank letter", "--by", "li", "--ledger", led, "--json")
    res = ok_json(cli(*date, "--status", "FAILED", "--settled-at", "2025-07-15 09:00"))
    assert (res["paid_on_retry"], res["restored_fen"], res["notices_end"]) == (1, fen, "PAID"), res
    text = ok(cli(*date[:-1], "--status", "FAILED", "--settled-at", "2025-07-16 10:00")).stdout
    assert text == (f"line {paid}: its FAILED notice (recorded undated) is now dated 2025-07-16 10:00; the line's "
                    "notices give no order now, so how it ended cannot be told: the ledger holds what it held; give "
                    "its other notice its date too; the next import of its bank notices orders them by that "
                    "date\n"), text
    with Ledger.use(led, read_only=True) as lg:
        assert lg.reversals().height == 0
    res = ok_json(cli(*date, "--status", "PAID", "--settled-at", "2025-07-16 09:00"))
    assert (res["failed"], res["reversed_fen"], res["notices_end"]) == (1, fen, "FAILED"), res
    with Ledger.use(led, read_only=True) as lg:
        assert lg.reversals().height > 0
        assert lg.run("select sum(fen * (to_mi - from_mi + 1)) from bank_entries where line_id = ?", [paid]) == [
            (-fen,)]
        assert lg.check()["problems"] == []


def _tomorrow() -> dt.date:
    return dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date() + dt.timedelta(days=1)


def test_a_frame_of_line_id_and_status_alone_imports(isolated: Path) -> None:
    """SPEC §8 names line_id and status (and a reason); a frame given to the ledger without reason
    or settled_at failed in DuckDB, not saying which column (an audit)."""
    led, (paid, failed) = _published(isolated)
    with Ledger.use(led) as lg:
        res = lg.import_bank_returns(pl.DataFrame({"line_id": [paid, failed], "status": ["PAID", "FAILED"]}), "api")
        assert (res["new"], res["failed"]) == (2, 1), res
        assert lg.run("select count(*) from bank_returns where reason is null and settled_at is null") == [(2,)]


def test_blank_rows_are_no_rows_and_a_file_in_another_encoding_or_with_a_repeated_column_says_so(
        isolated: Path) -> None:
    """An audit: a blank line at the end of a CRLF file, or Excel's `,,,`, refused the whole file
    (and the nightly job every night after); a GBK or UTF-16 file said only "invalid utf-8"; a
    header naming line_id twice was read from its first copy."""
    led, (paid, failed) = _published(isolated)
    f = isolated / "returns.csv"
    f.write_bytes(f"line_id,status,reason,settled_at\r\n{paid},PAID,,2025-07-16\r\n,,,\r\n"
                  f"{failed},FAILED,销户,2025-07-16\r\n\r\n".encode())
    assert ok_json(cli("bank-returns", "import", f, "--ledger", led, "--json"))["new"] == 2
    f.write_bytes(f"line_id,status,reason\n{paid},PAID,销户\n".encode("gbk"))
    user_error(cli("bank-returns", "import", f, "--ledger", led), "not UTF-8 text (a GBK or GB18030 export?)", "iconv")
    # Audit 17A: a GBK header (one Chinese column name) over ASCII rows crashed the import, and
    # the nightly job with it, every night.
    f.write_bytes("line_id,status,备注\n".encode("gbk") + f"{paid},PAID,x\n".encode())
    user_error(cli("bank-returns", "import", f, "--ledger", led), "not UTF-8 text (a GBK or GB18030 export?)")
    f.write_bytes(f"line_id,status\n{paid},PAID\n".encode("utf-16"))
    user_error(cli("bank-returns", "import", f, "--ledger", led), "UTF-16 text, not UTF-8")
    f.write_text(f"line_id,status,line_id\n{paid},PAID,{failed}\n", encoding="utf-8")
    user_error(cli("bank-returns", "import", f, "--ledger", led), "names column(s) line_id more than once")
    # a row with something in it but no line id is still refused, naming its row
    f.write_text(f"line_id,status,reason\n{paid},PAID,\n,,account closed\n", encoding="utf-8")
    user_error(cli("bank-returns", "import", f, "--ledger", led), "row 3: needs a line_id")


def test_an_unknown_line_id_is_one_line_and_nothing_is_imported(isolated: Path) -> None:
    led, (paid, _) = _published(isolated)
    f = isolated / "returns.csv"
    pl.DataFrame({"line_id": [paid, "Q2025Q3-nosuch-00000001"], "status": ["PAID", "PAID"]}).write_csv(f)
    user_error(cli("bank-returns", "import", f, "--ledger", led), "unknown or unpublished line id",
               "Q2025Q3-nosuch-00000001", "nothing imported")
    with Ledger.use(led, read_only=True) as lg:
        assert lg.run("select count(*) from bank_returns") == [(0,)]


def test_a_column_of_lists_is_one_line_naming_it(isolated: Path) -> None:
    """Audit 31B: a Parquet return file whose line_id held lists ended in "internal error: cannot
    cast List type", naming neither the file nor the column."""
    led, (paid, _) = _published(isolated)
    f = isolated / "returns.parquet"
    pl.DataFrame({"line_id": [[paid]], "status": ["PAID"]}).write_parquet(f)
    user_error(cli("bank-returns", "import", f, "--ledger", led), str(f), "column line_id holds nested values")
    with Ledger.use(led, read_only=True) as lg:
        assert lg.run("select count(*) from bank_returns") == [(0,)]


def test_a_bank_s_batch_and_amount_are_held_to_the_ledger_s_line(isolated: Path) -> None:
    """SPEC §8's file has line_id and status; a bank that also sends its record of the line (its
    batch_id, its amount_fen) has it checked: a file answering for other lines is not recorded."""
    led, (paid, failed) = _published(isolated)
    with Ledger.use(led, read_only=True) as lg:
        lines = lg.part(lg.run("select batch_id from batches")[0][0], "lines").filter(
            pl.col("line_id").is_in([paid, failed])).sort("line_id")
    bid, fens = lines["batch_id"][0], lines["amount_fen"].to_list()
    f = isolated / "returns.csv"

    def send(batch: list[str], fen: list[str]) -> None:
        f.write_text("line_id,status,batch_id,amount_fen\n" + "".join(
            f"{line},{st},{b},{a}\n" for line, st, b, a in zip([paid, failed], ["PAID", "FAILED"], batch, fen,
                                                                  strict=True)), encoding="utf-8")

    send([bid, bid], [str(fens[0]), str(fens[1] + 100)])
    user_error(cli("bank-returns", "import", f, "--ledger", led),
               f"line {failed} has amount_fen {fens[1] + 100} in the bank's file but {fens[1]} in the ledger",
               "1 line(s) differ", "nothing imported")
    send([bid, "Q2025Q4-0000abcd"], [str(fens[0]), str(fens[1])])
    user_error(cli("bank-returns", "import", f, "--ledger", led), f"line {failed} has batch_id Q2025Q4-0000abcd")
    send([bid, bid], [str(fens[0]), f"{fens[1] / 100:.2f}"])  # yuan, not fen: a whole number, but not the line's
    user_error(cli("bank-returns", "import", f, "--ledger", led),
               f"line {failed} has amount_fen {fens[1] // 100} in the bank's file but {fens[1]}")
    for odd in (f"{fens[1]}.5", "4.5e4", "9" * 20):  # not whole, or past int64
        send([bid, bid], [str(fens[0]), odd])
        user_error(cli("bank-returns", "import", f, "--ledger", led), "row 3: amount_fen", "not a whole number")
    # An audit: a line listed twice kept its first row only, the second's other amount unchecked;
    # a header naming amount_fen twice, or nearly (`AMOUNT_FEN`), left the bank's claim unread.
    f.write_text(f"line_id,status,amount_fen\n{failed},FAILED,{fens[1]}\n{failed},FAILED,999\n", encoding="utf-8")
    user_error(cli("bank-returns", "import", f, "--ledger", led), f"line {failed} is listed more than once with "
               "different amount_fen")
    f.write_text(f"line_id,status,amount_fen\n{failed},FAILED,\n{failed},FAILED,999\n", encoding="utf-8")  # audit 17E
    user_error(cli("bank-returns", "import", f, "--ledger", led), f"line {failed} has amount_fen 999")
    f.write_text(f"line_id,status,amount_fen,amount_fen\n{failed},FAILED,,999\n", encoding="utf-8")
    user_error(cli("bank-returns", "import", f, "--ledger", led), "names column(s) amount_fen more than once")
    for header in ("AMOUNT_FEN", "amount_fen ", "Batch_Id"):
        f.write_text(f"line_id,status,{header}\n{failed},FAILED,999\n", encoding="utf-8")
        user_error(cli("bank-returns", "import", f, "--ledger", led), f"column {header!r} is read as",
                   "only when named exactly so")
    with Ledger.use(led, read_only=True) as lg:
        assert lg.run("select count(*) from bank_returns") == [(0,)]
    # A blank is no claim (a copy of the line with it blank too); a totals row (an amount and
    # nothing else) is no row; whole floats are whole.
    f.write_text("line_id,status,batch_id,amount_fen\n"
                 f"{paid},PAID,{bid},{fens[0]}.0\n{failed},FAILED,,\n{failed},FAILED,,{fens[1]}\n,,,{sum(fens)}\n",
                 encoding="utf-8")
    assert ok_json(cli("bank-returns", "import", f, "--ledger", led, "--json"))["new"] == 2


def test_months_recovered_and_confirmed_of_a_payment_that_failed_are_said_to_be_refunded(isolated: Path) -> None:
    """Audits (the tenth and twelfth): a death found late recovers two months of a quarter's line;
    the district confirms the money came back; then the bank says that line never arrived. The
    family returned money it never got. No run pays it back (the account just failed, and the
    person is dead): the import says how much, for whom to refund, instead of nothing."""
    led, out = isolated / "ledger.duckdb", isolated / "out"
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    rows = sample_rows()
    reg = write_registry(rows, isolated / "registry.parquet")
    q3 = ok_json(cli("run", "quarterly", "--quarter", "2025Q3", "--registry", reg, "--as-of", "2025-07-01",
                     "--ledger", led, "--json"))["batch_id"]
    ok(cli("publish", q3, "--approved-by", "t", "--ledger", led, "--out", out))
    with Ledger.use(led, read_only=True) as lg:
        line = lg.part(q3, "lines").sort("line_id").row(0, named=True)
    assert (line["period_from"].month, line["months"]) == (7, 3)
    dead = [{**r, "death_date": dt.date(2025, 7, 20)} if r["person_id"] == line["person_id"] else r for r in rows]
    late = write_registry(dead, isolated / "late.parquet")
    night = ok_json(cli("run", "supplement", "--registry", late, "--as-of", "2025-08-10", "--ledger", led,
                        "--force", "--reason", "test", "--json"))
    ok(cli("publish", night["batch_id"], "--approved-by", "t", "--ledger", led, "--out", out))
    with Ledger.use(led, read_only=True) as lg:
        (rec_line, owed), = lg.run("select line_id, amount_fen from recoveries")
    monthly = line["amount_fen"] // 3
    assert owed == 2 * monthly  # August and September
    confirm = isolated / "back.csv"
    # columns a confirmation does not read are not its business, whatever their names (audit 17D)
    pl.DataFrame({"line_id": [rec_line], "Status": ["back"], "Amount_Fen": ["1"]}).write_csv(confirm)
    ok(cli("recoveries", "confirm", confirm, "--by", "district", "--ledger", led))
    returns = isolated / "returns.csv"
    pl.DataFrame({"line_id": [line["line_id"]], "status": ["FAILED"], "reason": ["account closed"],
                  "settled_at": ["2025-08-20"]}).write_csv(returns)
    res = cli("bank-returns", "import", returns, "--ledger", led)
    assert res.exit_code == 0, res.stderr
    assert f"1 people had {yuan(2 * monthly)} yuan of those months recovered (confirmed)" in res.stdout, res.stdout
    assert line["person_id"] not in res.stdout + res.stderr
    with Ledger.use(led, read_only=True) as lg:
        (detail,) = lg.run("select detail from events where action = 'bank_returns'")[0]
    assert f"recovery line(s) {rec_line} in `allowance recoveries list --state recovered`" in res.stdout
    assert (f'"recovered_but_never_delivered": {{"people": 1, "fen": {2 * monthly}, "recovery_lines": ["{rec_line}"], '
            f'"by_line": {{"{rec_line}": {2 * monthly}}}}}' in detail), detail
    assert "ok: True" in ok(cli("ledger", "check", "--ledger", led)).stdout
    # The list stands after the night that reported it, and a second import of the file adds nothing.
    ok(cli("bank-returns", "import", returns, "--ledger", led))
    listed = ok_json(cli("recoveries", "refunds", "--ledger", led, "--json"))
    assert (listed["imports"], listed["people"], listed["fen"]) == (1, 1, 2 * monthly), listed
    assert listed["refunds"][0]["recovery_lines"] == [rec_line], listed
    text = ok(cli("recoveries", "refunds", "--ledger", led)).stdout
    assert f"recovery line(s) {rec_line}" in text and f"1 people, {yuan(2 * monthly)} yuan to refund" in text, text
    assert line["person_id"] not in text
    status = ok_json(cli("ledger", "status", "--ledger", led, "--json"))
    assert status["refunds_reported"] == {"people": 1, "fen": 2 * monthly}, status
    # The bank then pays the line on a retry (audit 20F): the refund is not due, and the months,
    # delivered after all, are as recovered as they were: the next run recovers nothing (audit 21A:
    # it recovered them again, from a family that had returned them).
    retry = isolated / "retry.csv"
    pl.DataFrame({"line_id": [line["line_id"]], "status": ["PAID"], "settled_at": ["2025-08-25"]}).write_csv(retry)
    said = ok(cli("bank-returns", "import", retry, "--ledger", led)).stdout
    assert (f"1 people's refund of {yuan(2 * monthly)} yuan reported when those lines failed is not due: the bank "
            f"delivered those months after all (recovery line(s) {rec_line}); if it was refunded already, the "
            "district recovers it by hand") in said, said
    listed = ok_json(cli("recoveries", "refunds", "--ledger", led, "--json"))
    # nobody is left to refund (audit 21B: "1 people, 0.00 yuan")
    assert (listed["imports"], listed["people"], listed["fen"]) == (2, 0, 0), listed
    assert [r["fen"] for r in listed["refunds"]] == [2 * monthly, -2 * monthly], listed
    assert "(not due on these lines: a retry the bank paid, or counted to another line)" in ok(
        cli("recoveries", "refunds", "--ledger", led)).stdout
    # an import that both reports a refund and finds one not due (a failure that counts a refund to
    # another line) is one import, in two rows (audit 30E: counted as two)
    with Ledger.use(led) as lg:
        lg.run("update events set detail = json_merge_patch(detail, ?) where action = 'bank_returns' and "
               "seq = (select max(seq) from events where action = 'bank_returns')",
               [f'{{"recovered_but_never_delivered": {{"people": 1, "fen": 1, "recovery_lines": ["{rec_line}"], '
                f'"by_line": {{"{rec_line}": 1}}}}}}'])
    both = ok_json(cli("recoveries", "refunds", "--ledger", led, "--json"))
    assert (len(both["refunds"]), both["imports"]) == (3, 2), both
    after = ok_json(cli("run", "supplement", "--registry", late, "--as-of", "2025-08-26", "--ledger", led,
                        "--force", "--reason", "test", "--json"))
    with Ledger.use(led, read_only=True) as lg:
        again = lg.part(after["batch_id"], "lines").select("person_id", "line_type", "cause", "amount_fen").rows()
    assert again == [], again
    assert "ok: True" in ok(cli("ledger", "check", "--ledger", led)).stdout


def test_no_refund_reported_is_an_empty_list(isolated: Path) -> None:
    led, _ = _published(isolated)
    text = ok(cli("recoveries", "refunds", "--ledger", led)).stdout
    assert text == "0 import(s), 0 people, 0.00 yuan to refund by hand\n", text
    assert ok_json(cli("ledger", "status", "--ledger", led, "--json"))["refunds_reported"] == {"people": 0, "fen": 0}


def test_a_recovery_cut_by_a_bank_return_is_said_line_by_line_and_again_when_confirmed(isolated: Path) -> None:
    """Audit 20A: a death recovers August to December (5 months); the bank then fails the Q4 line
    (October to December, never delivered), which takes those months off the recovery. The import
    said only a count, and the confirmation recorded 2 months without a word, overwriting the note
    that said why: a district that collected the 5 months its recovery file listed had 3 months to
    refund, and no one told it. Both now say it, with the line, its district and the amounts."""
    from allowance.testing import Scenario, person

    sc = Scenario(isolated / "s", opening_month="2025-07")
    rows = [person("1944-11-20", seq=911, district_code="310104"), *[person("1950-05-05", seq=s) for s in range(3)]]
    open_ = {"max_stop_share": 1.0}
    q3 = sc.publish(sc.quarterly("2025Q3", rows, "2025-07-01"))
    q4 = sc.publish(sc.quarterly("2025Q4", rows, "2025-10-01"))
    pid = rows[0]["person_id"]
    q4_line = sc.lines(q4.batch_id).filter(pl.col("person_id") == pid)["line_id"][0]
    rows[0]["death_date"] = dt.date(2025, 7, 10)
    from allowance.runs import Breakers

    sup = sc.publish(sc.supplement(rows, "2025-10-15", breakers=Breakers(**open_)))
    rec = sc.lines(sup.batch_id).filter(pl.col("line_type") == "RECOVERY")
    (rec_line,), (listed,) = rec["line_id"].to_list(), (-rec["amount_fen"]).to_list()
    monthly = listed // 5
    f = isolated / "returns.csv"
    pl.DataFrame({"line_id": [q4_line], "status": ["FAILED"], "reason": ["account closed"],
                  "settled_at": ["2025-10-20"]}).write_csv(f)
    import shutil

    twin = isolated / "twin"  # the same ledger, to import the file once as text and once as JSON
    twin.mkdir()
    shutil.copy2(sc.ledger, twin / sc.ledger.name)
    shutil.copytree(Ledger.store_of(sc.ledger), Ledger.store_of(twin / sc.ledger.name))
    said = ok_json(cli("bank-returns", "import", f, "--ledger", twin / sc.ledger.name, "--json"))
    assert said["recoveries_reduced"] == [{"line_id": rec_line, "district_code": "310104",
                                           "cancelled_fen": 3 * monthly, "owed_fen": 2 * monthly, "state": "open"}]
    # on the twin, a second failure (Q3: August and September) takes the rest: both notes kept (audit 20D)
    q3_line = sc.lines(q3.batch_id).filter(pl.col("person_id") == pid)["line_id"][0]
    pl.DataFrame({"line_id": [q3_line], "status": ["FAILED"], "reason": ["account closed"],
                  "settled_at": ["2025-10-21"]}).write_csv(isolated / "q3.csv")
    ok(cli("bank-returns", "import", isolated / "q3.csv", "--ledger", twin / sc.ledger.name))
    with Ledger.use(twin / sc.ledger.name, read_only=True) as lg:
        (note, state) = lg.run("select note, state from recoveries where line_id = ?", [rec_line])[0]
    assert state == "cancelled" and f"{3 * monthly} fen not" in note and f"{2 * monthly} fen not" in note, note
    done = ok(cli("bank-returns", "import", f, "--ledger", sc.ledger))
    # logged too, for a night whose run is refused and prints no import's lines (audit 20D)
    assert '"event": "recoveries_reduced"' in done.stderr and rec_line in done.stderr, done.stderr
    text = done.stdout
    assert (f"recovery {rec_line} (310104): {yuan(3 * monthly)} yuan of months the bank never delivered taken off; "
            f"it owes {yuan(2 * monthly)} yuan (open)") in text, text
    f.unlink()
    text = ok(cli("bank-returns", "import", _returns_again(isolated, q4_line), "--ledger", sc.ledger)).stdout
    assert "taken off" not in text, text  # the same file again: nothing new to say
    conf = isolated / "confirm.csv"
    pl.DataFrame({"line_id": [rec_line]}).write_csv(conf)
    text = ok(cli("recoveries", "confirm", conf, "--by", "区民政 李", "--ledger", sc.ledger)).stdout
    assert (f"recovery {rec_line} (310104): {yuan(2 * monthly)} yuan recovered, less than the {yuan(listed)} yuan "
            "its recovery file listed") in text, text
    assert f"it refunds {yuan(3 * monthly)} yuan" in text, text
    with Ledger.use(sc.ledger, read_only=True) as lg:
        (note,) = lg.run("select note from recoveries where line_id = ?", [rec_line])[0]
    assert "failed at the bank" in note and "confirmed by confirm.csv" in note, note


def _returns_again(isolated: Path, line_id: str) -> Path:
    f = isolated / "returns-again.csv"
    pl.DataFrame({"line_id": [line_id], "status": ["FAILED"], "reason": ["account closed"],
                  "settled_at": ["2025-10-20"]}).write_csv(f)
    return f
