"""`allowance run quarterly|supplement`: a draft batch, or one clear line saying what is wrong."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import polars as pl
import pytest
from cli_helpers import cli, ok, ok_json, sample_rows, user_error, write_sample

from allowance.ledger import Ledger
from allowance.testing import person, registry_frame, write_registry


@pytest.fixture
def led(isolated: Path) -> Path:
    p = isolated / "ledger.duckdb"
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", p))
    return p


@pytest.fixture
def reg(isolated: Path) -> Path:
    return write_sample(isolated / "registry.parquet")


def quarterly(reg: Path, led: Path, *extra: str, quarter: str = "2025Q3") -> list[str]:
    return ["run", "quarterly", "--quarter", quarter, "--registry", str(reg), "--as-of", "2025-07-01",
            "--ledger", str(led), *extra]


def test_quarterly_json(reg: Path, led: Path) -> None:
    res = ok_json(cli(*quarterly(reg, led, "--json")))
    assert {"batch_id", "lines", "amount_fen"} <= set(res)
    assert res["batch_id"].startswith("Q2025Q3-")
    assert res["status"] == "draft"
    assert res["lines"] > 0 and res["amount_fen"] > 0
    shown = ok_json(cli("batches", "show", res["batch_id"], "--ledger", led, "--json"))
    assert (shown["lines"], shown["amount_fen"], shown["status"]) == (res["lines"], res["amount_fen"], "draft")


def test_quarterly_text(reg: Path, led: Path) -> None:
    out = ok(cli(*quarterly(reg, led))).stdout
    assert out.startswith("draft Q2025Q3-")
    assert "due months 2025-07 … 2025-09" in out
    assert "allowance publish Q2025Q3-" in out


def test_an_as_of_after_today_is_drafted_with_a_warning(reg: Path, led: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit 16: a batch published with a mistyped future as-of (2062 for 2026) would refuse every
    run as of an earlier day. Not refused (simulations run as of days to come), but said."""
    import allowance.runs

    monkeypatch.setattr(allowance.runs, "today_shanghai", lambda: dt.date(2025, 6, 20))
    out = ok(cli(*quarterly(reg, led))).stdout
    assert ("warning: as-of 2025-07-01 is 11 day(s) after today (Shanghai); once this batch is published, every "
            "run as of an earlier day is refused") in out, out
    assert ok_json(cli(*quarterly(reg, led, "--json")))["as_of_after_today"] == {"as_of": "2025-07-01", "days": 11}
    # Said again where it is published, and by a job publishing at once (--publish-as: an audit
    # found the job's result silent), and by `batches show`.
    from allowance import rules
    from allowance.months import parse_quarter
    from pipelines._job import publish_unless_empty

    bid = ok_json(cli(*quarterly(reg, led, "--json")))["batch_id"]
    ahead = {"as_of": "2025-07-01", "days": 11}
    assert ok_json(cli("batches", "show", bid, "--ledger", led, "--json"))["as_of_after_today"] == ahead
    out, other = led.parent / "out", led.parent / "other.duckdb"
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", other))
    res = allowance.runs.draft_run("quarterly", reg, other, rules.load(rules.DEFAULT_RULES_DIR),
                                   dt.date(2025, 7, 1), parse_quarter("2025Q3"))
    assert publish_unless_empty(res, "job", other, led.parent / "other-out")["as_of_after_today"] == ahead
    said = ok(cli("publish", bid, "--approved-by", "x", "--ledger", led, "--out", out)).stdout
    assert "warning: published as of 2025-07-01, 11 day(s) after today" in said, said
    monkeypatch.setattr(allowance.runs, "today_shanghai", lambda: dt.date(2025, 7, 1))
    assert "warning" not in ok(cli(*quarterly(reg, led))).stdout
    assert "as_of_after_today" not in ok_json(cli(*quarterly(reg, led, "--json")))
    assert "as_of_after_today" not in ok_json(cli("batches", "show", bid, "--ledger", led, "--json"))


@pytest.mark.parametrize("quarter", ["2025Q5", "Q3-2025", "2025Q0", "2025-Q3", "2025"])
def test_malformed_quarter(reg: Path, led: Path, quarter: str) -> None:
    user_error(cli(*quarterly(reg, led, quarter=quarter)), repr(quarter), "YYYYQn")


def test_malformed_as_of(reg: Path, led: Path) -> None:
    res = cli("run", "quarterly", "--quarter", "2025Q3", "--registry", reg, "--as-of", "2025-02-30", "--ledger", led)
    user_error(res, "--as-of", "2025-02-30")
    # an empty one (an unset variable in a script) is not today (audit 31B: a draft as of today)
    for run in (["run", "quarterly", "--quarter", "2025Q3"], ["run", "supplement"]):
        user_error(cli(*run, "--registry", reg, "--as-of", "", "--ledger", led), "--as-of ''", "YYYY-MM-DD")


@pytest.mark.parametrize(("args", "fragments"), [
    (["run", "quarterly", "--registry", "x.csv"], ["missing option", "--quarter", "run quarterly --help"]),
    (["run", "quarterly", "--quarter", "2025Q3", "--registry", "x.csv", "--bogus"], ["no such option", "--bogus"]),
    (["run", "supplement", "--registry", "x.csv", "--max-quarantine-share", "2"],
     ["--max-quarantine-share", "less than or equal to 1"]),
    (["runn"], ["no such command", "runn", "--help"]),
])
def test_a_mistyped_command_or_option_is_one_line(args: list[str], fragments: list[str]) -> None:
    user_error(cli(*args), *fragments, code=2)


def test_a_scheduled_jobs_mistyped_option_is_one_line() -> None:
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "pipelines.nightly", "--registry", "x.csv", "--bogus"],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 2 and res.stdout == "", res
    assert res.stderr.splitlines() == [res.stderr.strip()] and "no such option: --bogus" in res.stderr.lower(), res


def test_a_ctrl_c_while_the_libraries_load_is_one_line() -> None:
    """An audit: Ctrl-C in the second the engine's libraries take to load printed a traceback
    through the import machinery. It is one line now, with SIGINT's exit status, and any other
    error that reaches the top still prints its traceback."""
    import signal
    import subprocess
    import sys

    # the Ctrl-C as the command line's modules start to load (the console script imports them first)
    code = "import os, signal, allowance; os.kill(os.getpid(), signal.SIGINT); import allowance.cli; print('loaded')"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode in (-signal.SIGINT, 128 + signal.SIGINT), res
    assert res.stdout == "" and res.stderr.strip() == "Aborted!", res
    res = subprocess.run([sys.executable, "-c", "import allowance; raise ValueError('a bug')"], capture_output=True,
                         text=True)
    assert res.returncode == 1 and "Traceback" in res.stderr and "ValueError: a bug" in res.stderr, res


def test_a_ctrl_c_after_the_result_is_said_changes_no_exit_code() -> None:
    """Audit 17F: a Ctrl-C while the interpreter shut down, after a job had printed `"ok": true`
    (or a command its result), made it exit 130 without a word. Here one lands at exit."""
    import subprocess
    import sys

    code = ("import atexit, os, signal; from allowance.cli import main; "
            "atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT)); main()")
    res = subprocess.run([sys.executable, "-c", code, "rules", "show", "--month", "2025-07"], capture_output=True,
                         text=True)
    assert res.returncode == 0 and "Traceback" not in res.stderr and "senior_card" in res.stdout, res


def test_a_lock_wait_that_is_no_number_is_one_line(isolated: Path, led: Path) -> None:
    """Audit 17A: ALLOWANCE_LOCK_WAIT=30s was read as the engine loaded: a traceback, every command."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", "from allowance.cli import main; main()", "ledger", "status",
                          "--ledger", str(led)],
                         capture_output=True, text=True, env={**os.environ, "ALLOWANCE_LOCK_WAIT": "30s"})
    assert res.returncode == 2 and "Traceback" not in res.stderr, res
    assert res.stderr.strip() == ("error: ALLOWANCE_LOCK_WAIT='30s': not a number of seconds to wait for the "
                                  "ledger (for example 30)"), res


def test_missing_registry(isolated: Path, led: Path) -> None:
    missing = isolated / "no-such-extract.parquet"
    user_error(cli(*quarterly(missing, led)), str(missing), "not found")
    user_error(cli(*quarterly(isolated, led)), str(isolated), "is a folder", "takes the extract file")


def test_unopened_ledger(isolated: Path, reg: Path) -> None:
    led = isolated / "never-opened.duckdb"
    line = user_error(cli(*quarterly(reg, led)), str(led), "ledger open")
    assert "--opening-month" in line
    assert not led.exists()


def test_too_many_bad_rows_is_refused(isolated: Path, led: Path) -> None:
    rows = sample_rows(30)
    rows[0] = {**rows[0], "district_code": "310103"}  # 卢湾: retired, not a paying district → 1 of 30 bad
    reg = write_registry(rows, isolated / "broken.parquet")
    line = user_error(cli(*quarterly(reg, led)), str(reg), "threshold", "0.50%", "UNKNOWN_DISTRICT")
    assert "1 of 30 rows" in line
    # Raising the threshold lets it through, with the row quarantined.
    res = ok_json(cli(*quarterly(reg, led, "--max-quarantine-share", "0.05", "--json")))
    assert res["registry"]["quarantined"] == 1
    assert res["registry"]["quarantine_by_reason"] == {"UNKNOWN_DISTRICT": 1}


def test_csv_registry_gives_the_same_draft(isolated: Path, reg: Path, led: Path) -> None:
    csv = write_registry(registry_frame(sample_rows()), isolated / "registry.csv")
    other = isolated / "other.duckdb"
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", other))
    from_parquet = ok_json(cli(*quarterly(reg, led, "--json")))
    from_csv = ok_json(cli(*quarterly(csv, other, "--json")))
    assert from_csv["registry"]["clean"] == 30
    for k in ("lines", "amount_fen", "payments", "no_card", "by_reason", "window"):
        assert from_csv[k] == from_parquet[k], k


def test_blank_rows_of_a_csv_are_no_people(isolated: Path, reg: Path, led: Path) -> None:
    """An audit: two blank lines at the end were two MISSING_FIELD rows (on 300 people, over the
    quarantine threshold: refused); a line of spaces refused the whole file. A row with nothing
    in it is skipped. The rows after it keep their number in the file (audit 17D: numbered without
    it, the quarantine named another row than the one staff would open)."""
    csv = write_registry(registry_frame(sample_rows()), isolated / "registry.csv")
    text = csv.read_text(encoding="utf-8").splitlines()
    text[3] = f"{text[3][:-1]}X"  # a card that is not digits: the third person is quarantined
    text[9] = f"{text[9][:-1]}X"  # and the ninth
    csv.write_text("\n".join([text[0], text[1], "", ",,,,,,,,", *text[2:5], "   ", *text[5:]]) + "\n\n\n",
                   encoding="utf-8")
    # data rows: 1 the first person, 2 and 3 blank, 4-6 the second to fourth, 7 blank, 8 on the fifth on
    other = isolated / "other.duckdb"
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", other))
    got = ok_json(cli(*quarterly(csv, other, "--json", "--max-quarantine-share", "0.1")))
    assert (got["registry"]["rows_in"], got["registry"]["quarantine_by_reason"]) == (30, {"BAD_CARD": 2}), got
    with Ledger.use(other, read_only=True) as lg:
        assert lg.df("select row_no from batch_quarantine order by row_no")["row_no"].to_list() == [5, 12]


def test_a_csv_cut_short_in_its_last_field_is_refused(isolated: Path, led: Path) -> None:
    """Audit 18C: a CSV cut short inside its last row kept every field of that row, the last one
    cut: a 16-digit card cut to 14 digits was paid into, and with the death date the last column, a
    death cut away was paid for. A CSV whose last row has no line break after it is refused."""
    rows = sample_rows(6)
    frame = registry_frame(rows)
    whole = frame.write_csv()
    assert whole.endswith("\n") and frame["card_no"][-1] and len(frame["card_no"][-1]) > 3
    cut = isolated / "cut.csv"
    cut.write_text(whole[:-4], encoding="utf-8")  # the last card's last three digits, and the line break
    user_error(cli(*quarterly(cut, led)), str(cut), "last row does not end with a line break", "copy it again")
    death_last = frame.select(*[c for c in frame.columns if c != "death_date"], "death_date").write_csv()
    cut.write_text(death_last[:death_last.rstrip("\n").rfind(",") + 1], encoding="utf-8")  # cut after the comma
    user_error(cli(*quarterly(cut, led)), str(cut), "last row does not end with a line break")
    # whole files end their last row with a line break (LF or CRLF), and may have blank lines after it
    for ending in ("\n", "\r\n", "\n\n  \n"):
        cut.write_text(whole.replace("\n", ending if ending == "\r\n" else "\n").rstrip() + ending, encoding="utf-8")
        assert ok_json(cli(*quarterly(cut, led, "--json")))["registry"]["clean"] == 6, ending
    # audit 18E: nor is what may follow the last line break and holds no row refused (a blank row
    # of commas, an ideographic space, DOS's end-of-file mark with its own quarantined row)
    for after in (",,,,,,,,", "\u3000", "  \t"):
        cut.write_text(whole + after, encoding="utf-8")
        assert ok_json(cli(*quarterly(cut, led, "--json")))["registry"]["clean"] == 6, repr(after)
    # and a bank return cut short in its last field is refused too (its settled_at had been kept cut)
    ret = isolated / "return.csv"
    ret.write_text("line_id,status,reason,settled_at\nQ2025Q3-00000000-00000001,PAID,,2025-07-2", encoding="utf-8")
    user_error(cli("bank-returns", "import", ret, "--ledger", led), str(ret), "last row does not end with a line break")


def test_a_csv_that_is_not_utf8_is_refused_not_garbled(isolated: Path, led: Path) -> None:
    """A GBK export read leniently made every Chinese name replacement characters, in clean rows
    and in the bank files (a fifth audit); it is refused in one line, saying how to convert it."""
    rows = sample_rows(5)
    text = registry_frame(rows).write_csv()
    gbk = isolated / "registry.csv"
    gbk.write_bytes(text.encode("gb18030"))
    assert "张" in text or any(ord(c) > 0x3000 for c in text)  # the names are Chinese
    line = user_error(cli(*quarterly(gbk, led)), str(gbk), "not UTF-8", "iconv")
    assert rows[0]["person_id"] not in line
    # Audit 17A: only the header in GBK (an extra Chinese column name, ASCII rows) crashed.
    header = text.split("\n", 1)[0]
    gbk.write_bytes(f"{header},备注\n".encode("gbk") + "".join(
        f"{r},x\n" for r in registry_frame(rows).with_columns(name=pl.lit("Wang")).write_csv().split("\n")[1:] if r
    ).encode())
    user_error(cli(*quarterly(gbk, led)), str(gbk), "not UTF-8", "iconv")
    with_bom = isolated / "bom.csv"
    with_bom.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert ok_json(cli(*quarterly(with_bom, led, "--json")))["registry"]["clean"] == 5


def test_a_csv_row_with_fewer_or_more_fields_than_its_header_refuses_the_file(isolated: Path, led: Path) -> None:
    """An audit: a row cut short was read with its missing fields empty, and with the columns in
    another order (allowed: they are found by name) a row cut before its death date was paid as
    if the person were alive. The file is refused in one line, naming the row with its ID masked."""
    rows = sample_rows(3)
    frame = registry_frame(rows)
    cols = [c for c in frame.columns if c != "death_date"] + ["death_date"]
    lines = frame.select(cols).write_csv().splitlines()
    lines[2] = ",".join(lines[2].split(",")[:6])  # the second person, cut after six fields
    f = isolated / "short.csv"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    line = user_error(cli(*quarterly(f, led)), str(f), "1 row(s) have fewer fields than the header's 9",
                      "the first, line 3 of the file, has 6")
    assert rows[1]["person_id"][:6] not in line and rows[1]["person_id"][-4:] not in line  # no field quoted
    assert rows[1]["name"] not in line and str(rows[1]["birth_date"]) not in line
    # one with more fields is said the same way (audit 25B: polars' own words named no row)
    lines = frame.select(cols).write_csv().splitlines()
    lines[3] += ",extra,more"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    line = user_error(cli(*quarterly(f, led)), str(f), "1 row(s) have more fields than the header's 9",
                      "the first, line 4 of the file, has 11")
    assert rows[2]["person_id"][:6] not in line
    # audit 27D: the line is where the row is a whole line (a count footer "3" was found inside
    # a row above it), and with the columns in another order no field is quoted either
    lines = frame.select(cols).write_csv().splitlines()
    f.write_text("\n".join([*lines, "3"]) + "\n", encoding="utf-8")
    user_error(cli(*quarterly(f, led)), "the first, line 5 of the file, has 1)")
    named_first = frame.select("name", *[c for c in cols if c != "name"])
    lines = named_first.write_csv().splitlines()
    lines[1] = ",".join(lines[1].split(",")[:4])
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    line = user_error(cli(*quarterly(f, led)), "the first, line 2 of the file, has 4)")
    assert rows[0]["name"] not in line and rows[0]["person_id"][:6] not in line
    whole = isolated / "whole.csv"
    whole.write_text("\n".join(frame.select(cols).write_csv().splitlines()) + "\n", encoding="utf-8")
    assert ok_json(cli(*quarterly(whole, led, "--json")))["registry"]["clean"] == 3


def test_a_csv_header_naming_a_column_twice_refuses_the_file(isolated: Path, led: Path) -> None:
    """An audit: with `death_date` twice in the header, polars read the second as another column
    and the engine the first, empty one: 176 dead people paid. Which holds the data is unknown."""
    rows = sample_rows(3)
    frame = registry_frame(rows).with_columns(pl.col("death_date").cast(pl.String))
    text = frame.with_columns(dead_again=pl.col("death_date"), death_date=pl.lit(None, pl.String)).write_csv()
    f = isolated / "twice.csv"
    f.write_text(text.replace("dead_again", "death_date", 1), encoding="utf-8")
    user_error(cli(*quarterly(f, led)), str(f), "names column(s) death_date more than once")
    # A column the engine does not read, named twice, or two empty names from trailing commas, are
    # another system's business (a second audit: such files were refused, which the engine before read).
    lines = registry_frame(rows).with_columns(remark=pl.lit("a"), other=pl.lit("b")).write_csv().splitlines()
    theirs = isolated / "theirs.csv"
    theirs.write_text("\n".join([lines[0].replace("other", "remark"), *lines[1:]]) + "\n", encoding="utf-8")
    assert ok_json(cli(*quarterly(theirs, led, "--json")))["registry"]["clean"] == 3
    trailing = isolated / "trailing.csv"
    trailing.write_text("\n".join(ln + ",," for ln in registry_frame(rows).write_csv().splitlines()) + "\n",
                        encoding="utf-8")
    assert ok_json(cli(*quarterly(trailing, led, "--json")))["registry"]["clean"] == 3


def test_a_csv_field_holding_a_line_break_refuses_the_file(isolated: Path, led: Path) -> None:
    """An audit: a quote left open in one name made the rows up to the next quote part of that
    name; those people were neither paid nor quarantined. No field of an extract holds a line break."""
    rows = sample_rows(4)
    lines = registry_frame(rows).write_csv().splitlines()
    head = lines[0].split(",")
    at = head.index("name")
    first, third = lines[1].split(","), lines[3].split(",")
    first[at], third[at] = '"' + first[at], third[at] + '"'
    lines[1], lines[3] = ",".join(first), ",".join(third)
    f = isolated / "open_quote.csv"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    line = user_error(cli(*quarterly(f, led)), str(f), "data row 1 has a field holding a line break")
    assert rows[0]["person_id"] not in line
    # the same quote left open in a column the engine does not read swallows rows just the same
    frame = registry_frame(rows).with_columns(remark=pl.lit("ok"))
    lines = frame.write_csv().splitlines()
    lines[1], lines[3] = lines[1].rsplit(",", 1)[0] + ',"ok', lines[3].rsplit(",", 1)[0] + ',ok"'
    theirs = isolated / "open_quote_remark.csv"
    theirs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    user_error(cli(*quarterly(theirs, led)), str(theirs), "data row 1 has a field holding a line break")
    # after blank rows, the row is named by its place in the file
    theirs.write_text("\n".join([lines[0], "", ",,,,,,,,,", *lines[1:]]) + "\n", encoding="utf-8")
    res = cli(*quarterly(theirs, led))  # (with the warning that blank rows were skipped)
    assert res.exit_code == 2 and "data row 3 has a field holding a line break" in res.stderr.splitlines()[-1], res
    # a quote left open in the first column, the IDs after it: the swallowed field holds the row's
    # own ID before the break, and the next row's name after it (its ID then read as this row's)
    name_first = registry_frame(rows).select("name", pl.exclude("name")).write_csv().splitlines()
    name_first[1], name_first[2] = '"' + name_first[1], name_first[2].replace(",", '",', 1)
    f.write_text("\n".join(name_first) + "\n", encoding="utf-8")
    user_error(cli(*quarterly(f, led)), str(f), "data row 1 has a field holding a line break")
    # audit 18E: and so when the row left open has no valid ID (its row was lost: rows in 3 of 4)
    cols = name_first[0].split(",")
    broken = name_first[1].split(",")
    broken[cols.index("person_id")] = "320102195 003030025"
    f.write_text("\n".join([name_first[0], ",".join(broken), *name_first[2:]]) + "\n", encoding="utf-8")
    user_error(cli(*quarterly(f, led)), str(f), "data row 1 has a field holding a line break")
    # Audit 18C: a name quoted whole with a line break in it is one person's fault: quarantined
    # (BAD_NAME, as from a Parquet extract), not the whole night refused
    two_lines = isolated / "two_lines.csv"
    registry_frame(rows).with_columns(
        name=pl.when(pl.int_range(pl.len()) == 1).then(pl.lit("张\n三")).otherwise(pl.col("name"))
    ).write_csv(two_lines)
    got = ok_json(cli(*quarterly(two_lines, led, "--json", "--max-quarantine-share", "0.5")))
    assert got["registry"]["quarantine_by_reason"] == {"BAD_NAME": 1}, got["registry"]
    # audit 18F: a remark with a row's worth of commas on one line, a card number after its break,
    # and a name with commas before its break are values' faults (the name: BAD_NAME), not a swallow
    commas = isolated / "commas.csv"
    registry_frame(rows).with_columns(
        remark=pl.lit("a,b,c,d,e,f,g,h,i,j\n旧卡已注销 新卡 6217000012345678"),
        name=pl.when(pl.int_range(pl.len()) == 2).then(pl.lit("a,b,c,d,e,f,g,h,\ni")).otherwise(pl.col("name")),
    ).write_csv(commas)
    got = ok_json(cli(*quarterly(commas, led, "--json", "--max-quarantine-share", "0.5")))
    assert got["registry"]["quarantine_by_reason"] == {"BAD_NAME": 1}, got["registry"]
    # a remark naming an old card number, then a line break, is a remark (audit 18E: refused)
    card_remark = isolated / "card_remark.csv"
    registry_frame(rows).with_columns(remark=pl.lit("原卡号6217000012345678已挂失\n新卡已办")).write_csv(card_remark)
    assert ok_json(cli(*quarterly(card_remark, led, "--json")))["registry"]["clean"] == 4
    # but a remark that holds a line break of its own is another system's business (a second audit)
    remark = isolated / "remark.csv"
    frame.with_columns(remark=pl.lit("first line\nsecond line")).write_csv(remark)
    assert ok_json(cli(*quarterly(remark, led, "--json")))["registry"]["clean"] == 4


def test_a_utf16_csv_is_named_as_such(isolated: Path, led: Path) -> None:
    """Excel's "Unicode text" export is UTF-16: it was refused as a file missing every column."""
    text = registry_frame(sample_rows(2)).write_csv()
    for name, data in (("bom.csv", text.encode("utf-16")), ("plain.csv", text.encode("utf-16-le"))):
        f = isolated / name
        f.write_bytes(data)
        user_error(cli(*quarterly(f, led)), str(f), "UTF-16 text", "iconv -f UTF-16")


def test_an_extract_refused_for_its_dates_says_the_form_they_need(isolated: Path, led: Path) -> None:
    """An audit: dates written 2025/07/01 in every row were refused as 100 % BAD_DATE, not saying
    that YYYY-MM-DD is what is read."""
    frame = registry_frame(sample_rows(3)).with_columns(pl.col("birth_date").dt.strftime("%Y/%m/%d"))
    f = isolated / "slashes.csv"
    frame.write_csv(f)
    user_error(cli(*quarterly(f, led)), str(f), "BAD_DATE 3", "dates must be YYYY-MM-DD text")


def test_dates_written_as_another_system_s_null_are_refused_saying_so(isolated: Path, led: Path) -> None:
    """Audit 17B: a Hive or MySQL export writes no date as `\\N` or `NULL`. Such a date is not
    guessed to be empty (a death date never is), but the refusal says what was found."""
    frame = registry_frame(sample_rows(3)).with_columns(
        pl.lit("\\N").alias("hukou_out_date"), pl.lit("NULL").alias("death_date"))
    f = isolated / "hive.csv"
    frame.write_csv(f)
    user_error(cli(*quarterly(f, led)), "BAD_DATE 3", "no date is an empty field, not '\\N' or 'NULL'")
    plain = frame.with_columns(pl.lit("2025/07/01").alias(c) for c in ("hukou_out_date", "death_date"))
    plain.write_csv(f)
    assert "no date is" not in user_error(cli(*quarterly(f, led)), "BAD_DATE 3")


def test_a_two_digit_year_is_a_bad_date(isolated: Path, led: Path) -> None:
    """"25-06-20" was read as the year 25 and quarantined as DEATH_BEFORE_BIRTH, sending staff to
    the wrong fact (an audit); it is BAD_DATE, as any text that is not a YYYY-MM-DD date."""
    frame = registry_frame(sample_rows(3)).with_columns(pl.col("death_date").cast(pl.String))
    frame = frame.with_columns(death_date=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("25-06-20"))
                               .otherwise(pl.col("death_date")))
    f = isolated / "yy.csv"
    frame.write_csv(f)
    res = ok_json(cli(*quarterly(f, led, "--max-quarantine-share", "1", "--json")))
    assert res["registry"]["quarantine_by_reason"] == {"BAD_DATE": 1}


@pytest.mark.parametrize("name", ["registry.json", "registry.xlsx", "registry"])
def test_unknown_file_suffix(isolated: Path, led: Path, name: str) -> None:
    f = isolated / name
    f.write_text("{}", encoding="utf-8")
    user_error(cli(*quarterly(f, led)), str(f), "unknown extract format", ".parquet or .csv")


def test_registry_missing_a_column(isolated: Path, led: Path) -> None:
    f = isolated / "cols.parquet"
    registry_frame(sample_rows()).drop("channel").write_parquet(f)
    user_error(cli(*quarterly(f, led)), str(f), "missing column", "channel")


def test_a_header_not_as_spec_says_is_said_what_it_looks_like(isolated: Path, led: Path) -> None:
    """Columns are read only by their exact names; a header that is one column (another separator)
    or names them in capitals or padded says so, rather than only listing what is missing."""
    f = isolated / "cols.csv"
    frame = registry_frame(sample_rows())
    frame.write_csv(f, separator=";")
    user_error(cli(*quarterly(f, led)), "missing column", "the file looks separated by ';'; export it with commas")
    frame.write_csv(f, separator="\t")
    user_error(cli(*quarterly(f, led)), "missing column", "the file looks separated by tabs")
    frame.rename({"person_id": "PERSON_ID", "card_no": " card_no"}).write_csv(f)
    line = user_error(cli(*quarterly(f, led)), "missing column(s) person_id, card_no",
                      "found as 'PERSON_ID', ' card_no': names must match exactly")
    assert line.split("found as ")[1].split(":")[0] == "'PERSON_ID', ' card_no'", line  # only the missing ones


def test_not_a_parquet_file(isolated: Path, led: Path) -> None:
    f = isolated / "garbage.parquet"
    f.write_bytes(b"this is not parquet")
    user_error(cli(*quarterly(f, led)), str(f), "cannot read")


def _cut_in_the_middle(src: Path, dst: Path) -> None:
    """A copy that lost bytes in its middle, its footer whole (a transfer resumed badly)."""
    import struct

    data = src.read_bytes()
    footer = struct.unpack("<i", data[-8:-4])[0] + 8
    dst.write_bytes(data[:len(data) // 2] + data[-footer:])


def test_a_parquet_file_cut_short_is_one_line_not_a_panic(isolated: Path, led: Path) -> None:
    """An audit: a Parquet extract or bank return file cut in the middle, its footer whole, made
    polars panic (a BaseException, past every `except Exception`): a page of Rust and Python trace,
    and the scheduled job printed no result at all. Its footer is checked against its size first."""
    import json
    import subprocess
    import sys

    import pyarrow.parquet as pq

    big = isolated / "big.parquet"
    rows = [person(dt.date(1950, 1, 1) + dt.timedelta(days=i // 1000), seq=i % 1000, district_code="310104")
            for i in range(3000)]
    pq.write_table(registry_frame(rows).to_arrow(), big, row_group_size=300)
    cut = isolated / "cut.parquet"
    _cut_in_the_middle(big, cut)
    user_error(cli(*quarterly(cut, led)), str(cut), "the file is shorter than its footer says", "copy it again")
    job = subprocess.run([sys.executable, "-m", "pipelines.quarterly", "--quarter", "2025Q3", "--registry", str(cut),
                          "--as-of", "2025-07-01", "--ledger", str(led), "--out", str(isolated / "out")],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert job.returncode == 2 and "Traceback" not in job.stderr and "panicked" not in job.stderr, job.stderr
    assert "shorter than its footer says" in json.loads(job.stdout)["error"], job.stdout
    n = 2000
    returns = isolated / "returns.parquet"
    pq.write_table(pl.DataFrame({"line_id": [f"Q2025Q3-00000000-{i:08d}" for i in range(n)], "status": ["PAID"] * n})
                   .to_arrow(), returns, row_group_size=200)
    _cut_in_the_middle(returns, isolated / "returns-cut.parquet")
    user_error(cli("bank-returns", "import", isolated / "returns-cut.parquet", "--ledger", led),
               "returns-cut.parquet", "the file is shorter than its footer says")


def test_a_panic_that_still_escapes_is_one_line(isolated: Path, reg: Path, led: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Any other panic of polars (a BaseException) is an internal error in one line, as any bug's."""
    import allowance.cli.run

    def panics(*_a: object, **_k: object) -> None:
        raise pl.exceptions.PanicException("called `Option::unwrap()` on a `None` value")

    monkeypatch.setattr(allowance.cli.run, "draft_run", panics)
    res = cli(*quarterly(reg, led))
    assert res.exit_code == 1 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and "internal error: PanicException" in res.stderr


def test_a_ctrl_c_inside_a_duckdb_query_is_an_interruption_not_a_bug(reg: Path, led: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit 17A: DuckDB turns a Ctrl-C during a query into its own exception, which the CLI said
    was an internal error and the jobs logged as a crash with a trace; a Ctrl-C elsewhere ended a
    command with 130 and nothing said. Both are `Aborted!` and 130, as while the engine loads."""
    import duckdb

    import allowance.cli.run
    from pipelines._job import run_job

    def interrupted(*_a: object, **_k: object) -> dict[str, object]:
        raise duckdb.InterruptException("INTERRUPT Error: Interrupted!")

    def ctrl_c(*_a: object, **_k: object) -> dict[str, object]:
        raise KeyboardInterrupt

    def query_interrupted(*_a: object, **_k: object) -> dict[str, object]:
        raise RuntimeError("Query interrupted")  # DuckDB's, as a query is being written (audit 17E)

    def a_bug(*_a: object, **_k: object) -> dict[str, object]:
        raise RuntimeError("something else")

    monkeypatch.setattr(allowance.cli.run, "draft_run", a_bug)  # any other RuntimeError is still a bug
    assert "internal error: RuntimeError: something else" in cli(*quarterly(reg, led)).stderr
    for stop in (interrupted, ctrl_c, query_interrupted):  # typer said nothing of a plain Ctrl-C, exit 130
        monkeypatch.setattr(allowance.cli.run, "draft_run", stop)
        res = cli(*quarterly(reg, led))
        assert (res.exit_code, res.stdout, res.stderr) == (130, "", "Aborted!\n")
        assert run_job("nightly", stop) == 130


def test_a_night_older_than_a_published_batch_is_refused(isolated: Path) -> None:
    """An audit: a missed night rerun later, as of its own day with its archived extract (no death
    yet), took its window from the quarter published since, and paid a person that quarter knew to
    be dead for its three months again. A run never uses facts dated after its as-of (SPEC §4)."""
    from cli_helpers import published_sample

    led, _, bid = published_sample(isolated)  # 2025Q3, as of 2025-07-01
    reg = write_sample(isolated / "registry.parquet")
    for run in (("supplement",), ("quarterly", "--quarter", "2025Q3")):
        user_error(cli("run", *run, "--registry", reg, "--as-of", "2025-06-10", "--ledger", led),
                   f"--as-of 2025-06-10 is before 2025-07-01, the as-of of {bid}, already published")
    ok(cli("run", "supplement", "--registry", reg, "--as-of", "2025-07-01", "--ledger", led))  # that day itself


def test_ledger_defaults_from_env(isolated: Path, reg: Path) -> None:
    led = isolated / "env-ledger.duckdb"
    env = {"ALLOWANCE_LEDGER": str(led)}
    ok(cli("ledger", "open", "--opening-month", "2025-07", env=env))
    res = ok_json(cli("run", "quarterly", "--quarter", "2025Q3", "--registry", reg, "--as-of", "2025-07-01",
                      "--json", env=env))
    listed = ok_json(cli("batches", "list", "--ledger", led, "--json"))
    assert [b["batch_id"] for b in listed["batches"]] == [res["batch_id"]]


def test_supplement_before_any_publication_has_nothing_due(reg: Path, led: Path) -> None:
    res = ok_json(cli("run", "supplement", "--registry", reg, "--as-of", "2025-07-01", "--ledger", led, "--json"))
    assert {"batch_id", "lines", "amount_fen"} <= set(res)
    assert (res["lines"], res["amount_fen"]) == (0, 0)
    assert res["batch_id"].startswith("S20250701-")
    assert res["window"] is None
    text = ok(cli("run", "supplement", "--registry", reg, "--as-of", "2025-07-01", "--ledger", led)).stdout
    assert "nothing is due" in text


def test_supplement_errors(isolated: Path, reg: Path) -> None:
    led = isolated / "never.duckdb"
    user_error(cli("run", "supplement", "--registry", reg, "--as-of", "2025-07-01", "--ledger", led), "ledger open")


def test_rerun_of_a_draft_replaces_it(reg: Path, led: Path) -> None:
    a = ok_json(cli(*quarterly(reg, led, "--json")))
    b = ok_json(cli(*quarterly(reg, led, "--json")))
    assert a["batch_id"] == b["batch_id"]
    assert len(ok_json(cli("batches", "list", "--ledger", led, "--json"))["batches"]) == 1


def test_drafts_and_approvals_run_again_change_no_later_batch(isolated: Path, reg: Path) -> None:
    """Audit 17A: a batch id named the ledger's state by the last state event's sequence number,
    which every draft and approval before it moves; a draft run twice (or killed after its commit
    and run again), or a second approval, gave the next quarter another id, and so other line
    ids and bank files. Two ledgers, one with the extra commands, end with the same bytes."""
    later = write_registry(registry_frame(sample_rows()), isolated / "later.parquet")
    folders = {}
    for flow in ("once", "twice"):
        led, out = isolated / flow / "ledger.duckdb", isolated / flow / "out"
        ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
        q3 = ok_json(cli(*quarterly(reg, led, "--json")))["batch_id"]
        if flow == "twice":
            assert ok_json(cli(*quarterly(reg, led, "--json")))["batch_id"] == q3
            for _ in range(2):
                ok(cli("review", "approve", q3, "--district", "310101", "--by", "x", "--ledger", led))
        ok(cli("publish", q3, "--approved-by", "x", "--ledger", led, "--out", out))
        q4 = ok_json(cli("run", "quarterly", "--quarter", "2025Q4", "--registry", later, "--as-of", "2025-10-01",
                         "--ledger", led, "--json"))["batch_id"]
        ok(cli("publish", q4, "--approved-by", "x", "--ledger", led, "--out", out))
        folders[flow] = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.parquet"))}
    assert folders["once"] == folders["twice"]


def test_quarantine_is_counted_not_dropped(isolated: Path, led: Path) -> None:
    rows = sample_rows(30)
    bad = person("1944-04-04", seq=500)
    bad["person_id"] = bad["person_id"][:17] + ("0" if bad["person_id"][17] != "0" else "1")  # wrong check digit
    reg = write_registry([*rows, bad], isolated / "r.parquet")
    res = ok_json(cli(*quarterly(reg, led, "--max-quarantine-share", "0.1", "--json")))
    assert res["registry"]["rows_in"] == 31
    assert res["registry"]["clean"] + res["registry"]["quarantined"] == 31
    assert res["registry"]["quarantine_by_reason"] == {"ID_CHECKSUM": 1}
    assert pl.read_parquet(reg).height == 31


def test_force_needs_a_reason(reg: Path, led: Path) -> None:
    user_error(cli(*quarterly(reg, led, "--force")), "--force", "--reason")


def test_mass_stop_is_refused_unless_forced_with_a_reason(isolated: Path, reg: Path, led: Path) -> None:
    bid = ok_json(cli(*quarterly(reg, led, "--json")))["batch_id"]
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", isolated / "out"))
    rows = sample_rows(30)
    paid = [r for r in rows if r["channel"] is not None and r["birth_date"].year <= 1960]
    assert len(paid) >= 3
    for r in paid[:3]:  # three of last quarter's recipients died in August, reported in October
        r["death_date"] = dt.date(2025, 8, 20)
    later = write_registry(rows, isolated / "later.parquet")
    q4 = ["run", "quarterly", "--quarter", "2025Q4", "--registry", str(later), "--as-of", "2025-10-01",
          "--ledger", str(led)]
    user_error(cli(*q4), "refused", "stop payments", "--force --reason")
    res = ok_json(cli(*q4, "--force", "--reason", "deaths reported late by the registry", "--json"))
    assert res["recoveries"]["lines"] == 3  # September, paid in advance, is listed for recovery
    assert res["forced"]["reason"] == "deaths reported late by the registry"


def test_someone_back_after_a_night_missing_is_not_paid_twice(isolated: Path, led: Path) -> None:
    """The audit's case, through the CLI: a person missing from one extract has Q3 recovered; back
    the next night, the recovery is cancelled and nothing is paid; writing it off is then refused
    (nothing is owed), and the ledger agrees with itself."""
    rows = sample_rows(12)
    full = write_registry(rows, isolated / "full.parquet")
    gone = rows[1]
    short = write_registry([r for r in rows if r is not gone], isolated / "short.parquet")
    out = isolated / "out"
    q3 = ok_json(cli(*quarterly(full, led, "--json")))
    ok(cli("publish", q3["batch_id"], "--approved-by", "t", "--ledger", led, "--out", out))
    night = ok_json(cli("run", "supplement", "--registry", short, "--as-of", "2025-08-20", "--ledger", led,
                        "--force", "--reason", "extract glitch", "--json"))
    assert night["recoveries"]["lines"] == 1
    ok(cli("publish", night["batch_id"], "--approved-by", "t", "--ledger", led, "--out", out))
    back = cli("run", "supplement", "--registry", full, "--as-of", "2025-08-21", "--ledger", led)
    text = ok(back).stdout
    assert text.startswith("draft S20250821-") and ": 0 payment lines, 0.00 yuan" in text.splitlines()[0], text
    assert "recoveries cancelled (owed for months the person is due again; not paid twice): 1 lines, 1 people" in text
    bid = text.split()[1].rstrip(":")
    ok(cli("publish", bid, "--approved-by", "t", "--ledger", led, "--out", out))
    listed = ok_json(cli("recoveries", "list", "--ledger", led, "--json"))
    (rec,) = listed["recoveries"]
    assert rec["state"] == "cancelled" and rec["amount_fen"] == 0, rec
    user_error(cli("recoveries", "write-off", rec["line_id"], "--reason", "x", "--ledger", led), "already closed")
    assert ok_json(cli("ledger", "check", "--ledger", led, "--json"))["ok"]


def test_a_quarter_past_the_notices_end_names_its_first_uncovered_month(isolated: Path, led: Path) -> None:
    """沪府规〔2024〕1号 is valid until 2029-04-30: in 2029Q2, April is covered and May is the first month
    no rules version covers (SPEC §1.4), so that is the month the error names."""
    reg = write_sample(isolated / "r.parquet")
    res = cli("run", "quarterly", "--quarter", "2029Q2", "--registry", reg, "--as-of", "2029-04-01", "--ledger", led)
    user_error(res, "no rules version is in force in 2029-05")


def _full_disk(*_: object, **__: object) -> None:
    raise OSError(28, "No space left on device")


def test_a_full_disk_under_the_ledger_is_one_line_saying_where_and_saves_nothing(
    isolated: Path, reg: Path, led: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A seventh audit: a draft on a full disk said `internal error: OSError` without a path, and
    left an empty folder of the batch's files behind; a commit that could not write the WAL
    showed only the rollback's own error ("no transaction is active")."""
    import allowance.ledger

    def full_once_its_folder_exists(self: allowance.ledger.Ledger, batch_id: str, *_: object) -> None:
        (self.files / batch_id).mkdir(parents=True, exist_ok=True)
        _full_disk()

    before = ok_json(cli("ledger", "status", "--ledger", led, "--json"))
    with monkeypatch.context() as m:
        m.setattr(allowance.ledger.Ledger, "_write_part", full_once_its_folder_exists)
        user_error(cli(*quarterly(reg, led)), f"{led}.batches", "No space left on device", "nothing was saved", code=1)
    assert ok_json(cli("ledger", "status", "--ledger", led, "--json")) == before
    assert list((isolated / f"{led.name}.batches").iterdir()) == []
    # an error DuckDB met writing the ledger (its WAL on a full disk) is named, not hidden by the rollback
    import duckdb

    def wal_full(*_: object, **__: object) -> None:
        raise duckdb.TransactionException('Failed to commit: Could not write file "x.wal": No space left on device')

    with monkeypatch.context() as m:
        m.setattr(allowance.ledger.Ledger, "_store_parts", wal_full)
        user_error(cli(*quarterly(reg, led)), "the ledger could not be written", "No space left on device",
                   "a rerun is safe", code=1)
    assert ok_json(cli("ledger", "status", "--ledger", led, "--json")) == before
    ok(cli(*quarterly(reg, led)))


def test_an_out_folder_that_cannot_be_written_is_one_line_and_the_draft_is_kept(
    isolated: Path, reg: Path, led: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A seventh audit: `allowance run --out` on a read-only folder saved the draft, then said
    `internal error: OSError`; now a user error that says the draft is saved."""
    import allowance.runs

    monkeypatch.setattr(allowance.runs, "write_change_report", _full_disk)
    line = user_error(cli(*quarterly(reg, led, "--out", str(isolated / "out"))), "cannot write the change report",
                      "is saved")
    bid = line.split("the draft ")[1].split()[0]
    assert ok_json(cli("batches", "show", bid, "--ledger", led, "--json"))["status"] == "draft"


def test_an_extract_that_lost_its_death_dates_is_refused(isolated: Path, led: Path) -> None:
    """Audit 18C: the death_date column arriving empty (a join failed upstream) paid every dead
    person again, with arrears, and no breaker saw it (they are starts, not stops). The rows with a
    death date (or a hukou out date) may not fall by more than the shrink share, and 100 rows, from
    one run to the next; a death corrected in a small registry is no such fall."""
    rows = sample_rows(400)
    for i in range(1, 361, 3):  # 120 dead since 2024 (all with a card), never paid by this ledger
        rows[i]["death_date"] = dt.date(2024, 3, 1 + i % 28)
    whole = registry_frame(rows)
    reg = write_registry(whole, isolated / "whole.parquet")
    bid = ok_json(cli(*quarterly(reg, led, "--json")))["batch_id"]
    ok(cli("publish", bid, "--approved-by", "t", "--ledger", led, "--out", isolated / "out"))
    lost = write_registry(whole.with_columns(death_date=pl.lit(None, pl.Date)), isolated / "lost.parquet")
    night = ["run", "supplement", "--registry", str(lost), "--as-of", "2025-07-10", "--ledger", str(led),
             "--out", str(isolated / "out")]
    user_error(cli(*night), "0 rows with a death_date, 120 fewer than the 120 of the runs since", "--force")
    forced = ok_json(cli(*night, "--json", "--force", "--reason", "death dates withdrawn by the registry"))
    assert forced["payments"]["lines"] > 0, forced  # what the check stood between: the dead paid
    # a small registry: a death recorded in error and taken back is no lost column
    small = isolated / "small"
    small.mkdir()
    few = sample_rows(30)
    few[5]["death_date"] = few[8]["death_date"] = dt.date(2025, 5, 2)
    other = small / "ledger.duckdb"
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", other))
    bid = ok_json(cli(*quarterly(write_registry(few, small / "r.parquet"), other, "--json")))["batch_id"]
    ok(cli("publish", bid, "--approved-by", "t", "--ledger", other, "--out", small / "out"))
    few[8]["death_date"] = None
    ok_json(cli("run", "supplement", "--registry", str(write_registry(few, small / "r2.parquet")), "--as-of",
                "2025-07-10", "--ledger", str(other), "--out", str(small / "out"), "--json"))


def test_a_threshold_raised_is_kept_with_the_batch_and_said(reg: Path, led: Path) -> None:
    """Audit 18B: the breakers' thresholds set to 100 % let a night of mass recoveries through
    with no trace (forced: null, no log line), where --force needs a reason that is kept. A
    threshold above its default is kept in the batch summary (with any --reason) and logged."""
    res = cli(*quarterly(reg, led, "--json", "--max-stop-share", "1", "--max-quarantine-share", "0.2",
                         "--reason", "pilot district, registry being cleaned"))
    got = ok_json(res)
    raised = {"max_stop_share": 1.0, "max_quarantine_share": 0.2, "reason": "pilot district, registry being cleaned"}
    assert got["breakers_raised"] == raised, got
    assert '"event": "breakers_raised"' in res.stderr
    shown = ok_json(cli("batches", "show", got["batch_id"], "--ledger", led, "--json"))
    assert shown["summary"]["breakers_raised"] == raised, shown
    at_default = ok_json(cli(*quarterly(reg, led, "--json", "--max-stop-share", "0.02")))
    assert "breakers_raised" not in at_default


def test_a_refused_run_leaves_what_it_found_for_staff(isolated: Path, led: Path) -> None:
    """Audit 18B: a night refused for its quarantine share or by a breaker left nothing to look at
    (no quarantine file, no change report), only counts: "check the extract" with nothing to check.
    A refused run writes its report under reports/refused-…/ (the quarantined rows; for a breaker,
    the change report as well) and its one-line refusal says where."""
    rows = sample_rows(40)
    for r in rows[:4]:
        r["district_code"] = "319999"
    out = isolated / "out"
    line = user_error(cli(*quarterly(write_registry(rows, isolated / "bad.parquet"), led, "--out", str(out))),
                      "4 of 40 rows", "what it found, to check:")
    (folder,) = (out / "reports").glob("refused-quarterly-20250701-*")
    assert str(folder) in line
    bad = pl.read_parquet(folder / "quarantine.parquet")
    assert bad["person_id"].to_list() == [r["person_id"] for r in rows[:4]]
    assert set(bad["reason"]) == {"UNKNOWN_DISTRICT"}
    assert (folder / "summary.txt").read_text(encoding="utf-8").startswith("REFUSED, nothing drafted: ")
    # let through with the share raised, the run drafts, and the refusal's report goes (audit 18F)
    ok(cli(*quarterly(isolated / "bad.parquet", led, "--out", str(out), "--max-quarantine-share", "0.2")))
    assert not folder.exists()
    # a breaker: the change report says who would stop
    good = write_registry(sample_rows(40), isolated / "good.parquet")
    bid = ok_json(cli(*quarterly(good, led, "--json", "--out", str(out))))["batch_id"]
    ok(cli("publish", bid, "--approved-by", "t", "--ledger", led, "--out", out))
    shrunk = write_registry(sample_rows(40)[:30], isolated / "shrunk.parquet")
    line = user_error(cli("run", "supplement", "--registry", str(shrunk), "--as-of", "2025-07-10", "--ledger", str(led),
                          "--out", str(out)), "would stop payments", "what it found, to check:")
    (folder,) = (out / "reports").glob("refused-S20250710-*")
    assert str(folder) in line
    changes = pl.read_parquet(folder / "changes" / "**" / "*.parquet", hive_partitioning=False)
    assert changes.filter(pl.col("change") == "STOP_NOT_IN_EXTRACT").height > 0
    assert not any((out / "reports").glob("S20250710-*"))  # no draft, no report of one
    # forced, the run drafts, and its refusal's report is not left beside its own (audit 18E)
    forced = ok_json(cli("run", "supplement", "--registry", str(shrunk), "--as-of", "2025-07-10", "--ledger", str(led),
                         "--out", str(out), "--json", "--force", "--reason", "district merger checked"))
    assert (out / "reports" / forced["batch_id"]).is_dir() and not folder.exists()


def test_a_run_on_the_extract_of_an_earlier_day_says_so(isolated: Path, reg: Path, led: Path) -> None:
    """Audit 18B: the nightly job run on the same file as the night before (tonight's extract had not
    come) said nothing, paying as of a registry that knew nothing since. It is said (not refused)."""
    first = ok_json(cli(*quarterly(reg, led, "--json")))
    assert "same_extract_as" not in first
    ok(cli("publish", first["batch_id"], "--approved-by", "t", "--ledger", led, "--out", isolated / "out"))
    night = ["run", "supplement", "--registry", str(reg), "--as-of", "2025-07-10", "--ledger", str(led)]
    got = ok_json(cli(*night, "--json"))
    assert got["same_extract_as"] == {"batch_id": first["batch_id"], "as_of": "2025-07-01"}, got
    again = ok_json(cli(*night, "--json"))  # the same night run again: the same day's file, nothing to say
    assert "same_extract_as" not in again
    night[night.index("2025-07-10")] = "2025-07-11"
    assert "has tonight's extract not come?" in ok(cli(*night)).stdout


def test_death_dates_leaking_a_little_each_night_are_refused(isolated: Path, led: Path) -> None:
    """Audit 18D: the breaker compared with the night before only, so 99 death dates lost a night
    (under the 100-row floor) paid the dead night after night. Each count is held to the most it
    had since the last published quarter."""
    rows = sample_rows(400)
    dead = list(range(1, 361, 3))  # 120 dead since 2024, all with a card
    for i in dead:
        rows[i]["death_date"] = dt.date(2024, 3, 1 + i % 28)
    out = isolated / "out"
    bid = ok_json(cli(*quarterly(write_registry(rows, isolated / "r0.parquet"), led, "--json", "--out", str(out))))
    ok(cli("publish", bid["batch_id"], "--approved-by", "t", "--ledger", led, "--out", out))
    for night, lost in ((10, 60), (11, 120)):  # 60 lost, then 60 more: neither night 100 fewer than the last
        leaky = [{**r, "death_date": None} if i in dead[:lost] else r for i, r in enumerate(rows)]
        run = ["run", "supplement", "--registry", str(write_registry(leaky, isolated / f"r{night}.parquet")),
               "--as-of", f"2025-07-{night}", "--ledger", str(led), "--out", str(out)]
        if lost < 100:
            ok(cli(*run, "--max-stop-share", "1"))
        else:
            user_error(cli(*run), "0 rows with a death_date, 120 fewer than the 120 of the runs since the last")
    # let through with the shrink share raised and a reason (a purge), the counts are the new
    # baseline: the next night is not refused again at the default (audit 18F)
    ok(cli(*run, "--max-shrink-share", "1", "--max-stop-share", "1", "--reason", "registry purged its dead"))
    run[run.index("2025-07-11")] = "2025-07-12"
    ok(cli(*run, "--max-stop-share", "1"))


def test_sigterm_ends_a_command_and_a_job_as_a_ctrl_c_does(isolated: Path) -> None:
    """Audit 26C: SIGTERM (`systemctl stop`, a stop timeout, a shutdown) ended a command or the
    nightly job at once, exit 143 and nothing said: no job result, and a publication staged before
    its commit was left in the out folder. It now ends them as a Ctrl-C does, with its own word
    and status. Here a publication is stopped at its commit (the signal sent from inside it)."""
    import signal
    import subprocess
    import sys

    led = isolated / "ledger.duckdb"
    reg = write_sample(isolated / "registry.parquet")
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    bid = ok_json(cli("run", "quarterly", "--quarter", "2025Q3", "--registry", reg, "--as-of", "2025-07-01",
                      "--ledger", led, "--json"))["batch_id"]
    out = isolated / "out"
    stop_at_commit = (
        "import os, signal, time\n"
        "from allowance.ledger import Ledger\n"
        "def stopped(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(30)\n"
        "Ledger.record_publication = stopped\n"
    )
    command = stop_at_commit + (
        "from allowance.cli import main\n"
        f"import sys; sys.argv = ['allowance', 'publish', {bid!r}, '--approved-by', 't', '--ledger', {str(led)!r}, "
        f"'--out', {str(out)!r}]\n"
        "main()\n")
    res = subprocess.run([sys.executable, "-c", command], capture_output=True, text=True, timeout=60)
    assert res.returncode == 128 + signal.SIGTERM and res.stdout == "", res
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and "Terminated (SIGTERM)" in res.stderr, res
    assert not (out / f".{bid}.partial").exists() and not (out / bid).exists()
    assert ok_json(cli("batches", "show", bid, "--ledger", led, "--json"))["status"] == "draft"
    job = stop_at_commit + (  # the job stopped in its draft, as it reads the ledger's holdings
        "Ledger.holdings = stopped\n"
        "from allowance.cli.common import run_command\n"
        "from pipelines.nightly import main\n"
        f"import sys; sys.argv = ['nightly', '--registry', {str(reg)!r}, '--as-of', '2025-07-02', "
        f"'--ledger', {str(led)!r}, '--out', {str(out)!r}]\n"
        "run_command(main)\n")
    res = subprocess.run([sys.executable, "-c", job], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 128 + signal.SIGTERM, res
    result = json.loads(res.stdout)
    assert result["ok"] is False and "terminated (SIGTERM)" in result["error"], result


def test_a_sigterm_after_a_command_said_its_result_leaves_its_exit_code() -> None:
    """Audit 26D: once a job had printed `"ok": true`, a SIGTERM while the interpreter shut down
    killed it (status -15), where a Ctrl-C there is ignored: its exit code stands either way."""
    import subprocess
    import sys

    code = (
        "import atexit, os, signal, time, typer\n"
        "from allowance.cli.common import run_command\n"
        "def stop_while_closing() -> None:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(0.5)\n"
        "def job() -> None:\n"
        "    atexit.register(stop_while_closing)\n"
        "    print('{\"ok\": true}')\n"
        "run_command(job)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == '{"ok": true}', res
