"""STYLE: "never f-strings of personal data; mask IDs" — no full ID reaches a console or a log."""

from __future__ import annotations

import re
from pathlib import Path

from cli_helpers import cli, ok, ok_json, sample_rows, user_error

from allowance.testing import person, write_registry


def test_no_person_id_in_any_output(isolated: Path) -> None:
    rows = sample_rows(40)
    # A quarantined row (wrong check digit) and a legacy 15-digit ID are personal data too.
    broken = {**rows[0], "person_id": rows[0]["person_id"][:17] + ("1" if rows[0]["person_id"][17] != "1" else "2")}
    legacy = person("1950-05-06", seq=999, area="310104")
    legacy["person_id"] = legacy["person_id"][:6] + legacy["person_id"][8:17]
    rows = [*rows, broken, legacy]
    reg = write_registry(rows, isolated / "registry.parquet")
    secrets = {r["person_id"] for r in rows}
    assert all(len(s) in (15, 18) for s in secrets)

    led, out = isolated / "ledger.duckdb", isolated / "out"
    env = {"ALLOWANCE_LOG_LEVEL": "INFO"}
    run = ["run", "quarterly", "--quarter", "2025Q3", "--registry", str(reg), "--as-of", "2025-07-01",
           "--ledger", str(led), "--max-quarantine-share", "0.1"]
    results = [ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led, env=env))]
    results.append(ok(cli(*run, env=env)))
    results.append(ok(cli(*run, "--json", env=env)))
    bid = ok_json(results[-1])["batch_id"]
    results.append(ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out, env=env)))
    results.append(ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out, "--json",
                          env=env)))
    results.append(ok(cli("run", "supplement", "--registry", reg, "--as-of", "2025-07-02", "--ledger", led,
                          "--max-quarantine-share", "0.1", env=env)))
    results.append(ok(cli("batches", "show", bid, "--ledger", led, env=env)))
    results.append(ok(cli("batches", "list", "--ledger", led, env=env)))

    # The INFO log is on (so this test sees the logs), and the run did quarantine a row.
    assert any('"level": "info"' in r.stderr for r in results)
    assert '"quarantined": 2' in results[2].stdout or '"quarantined": 1' in results[2].stdout
    for r in results:
        text = r.stdout + r.stderr
        leaked = [s for s in secrets if s in text]
        assert leaked == [], (leaked, text)
        # Nor anything that looks like a full resident ID.
        assert not re.search(r"(?<!\d)\d{17}[\dX](?!\d)", text), text


def test_a_field_quoted_by_a_reader_error_is_left_out(isolated: Path) -> None:
    """A broken CSV row reached the user through the reader's own message, which quotes the field
    it could not parse (and, with a quote left open, the rows after it). The field is left out and
    its column named, on the console, in the job's log and in its JSON result, in one line: an
    audit had a card number there, which no mask caught (only IDs were masked)."""
    import typer
    from typer.testing import CliRunner

    from pipelines import nightly

    pid = person("1950-01-01", seq=81, area="310104")["person_id"]
    reg = isolated / "broken.csv"
    header = "person_id,name,birth_date,district_code,hukou_since,hukou_out_date,death_date,channel,card_no\n"
    reg.write_text(header + f'"{pid},held\n', encoding="utf-8")
    led = isolated / "ledger.duckdb"
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    run = ("run", "quarterly", "--quarter", "2025Q3", "--as-of", "2025-07-01", "--ledger", led)
    line = user_error(cli(*run, "--registry", reg), "cannot read the extract", "broken.csv")
    assert "column person_id (column 1) has a field that is not properly quoted" in line, line
    assert pid not in line and pid[-4:] not in line, line
    # a card number, whole or opened by a stray quote (the row after it, ID and all, follows)
    card, other = "6217000012345678", person("1951-01-01", seq=82, area="310104")["person_id"]
    for field in (f'"{card}"x', f'"{card}'):
        reg.write_text(header + f"{pid},A,1950-01-01,310104,,,,senior_card,{field}\n"
                       f"{other},B,1951-01-01,310104,,,,senior_card,6217000099999999\n", encoding="utf-8")
        line = user_error(cli(*run, "--registry", reg), "cannot read the extract", "broken.csv")
        assert "column card_no (column 9) has a field that is not properly quoted" in line, line
        assert card[-4:] not in line and "9999" not in line and other[:6] not in line, line
    reg.write_text(header + f'"{pid},held\n', encoding="utf-8")

    app = typer.Typer()
    app.command()(nightly.main)
    job = CliRunner().invoke(app, ["--registry", str(reg), "--as-of", "2025-07-02", "--ledger", str(led),
                                   "--out", str(isolated / "out")], env={"ALLOWANCE_LOG_LEVEL": "INFO"})
    assert job.exit_code != 0
    text = job.stdout + job.stderr
    assert "cannot read the extract" in text and "column person_id (column 1)" in text, text
    assert pid not in text and pid[-4:] not in text, text


def test_ids_typed_into_free_text_are_masked_wherever_it_is_printed(isolated: Path) -> None:
    """An ID a reviewer or an operator types into a reason is shown masked by every command and job
    that prints the reason back: review list, run --json, batches show, the nightly job's result;
    also after a newline or a tab, which JSON writes as `\\n` or `\\t` right before the ID."""
    import json

    import typer
    from typer.testing import CliRunner

    from pipelines import nightly

    amy, ben = person("1950-02-10", seq=51, area="310104"), person("1945-05-05", seq=52, area="310104")
    other = person("1944-04-04", seq=53, area="310104")["person_id"]
    led, out = isolated / "ledger.duckdb", isolated / "out"
    both, alone = write_registry([amy, ben], isolated / "r0.parquet"), write_registry([amy], isolated / "r1.parquet")
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    run = ["run", "quarterly", "--quarter", "2025Q3", "--as-of", "2025-07-01", "--ledger", led, "--json"]
    bid = ok_json(ok(cli(*run, "--registry", both)))["batch_id"]
    results = [ok(cli("review", "hold", bid, "--person", ben["person_id"], "--reason", f"same person as\n{other}?",
                      "--by", "d", "--ledger", led)),
               ok(cli("review", "list", "--ledger", led)),
               ok(cli("review", "list", "--ledger", led, "--json"))]
    forced = ok(cli(*run, "--registry", alone, "--force", "--reason", f"moved:\t{ben['person_id']} moved, see ticket"))
    results += [forced, ok(cli("batches", "show", ok_json(forced)["batch_id"], "--ledger", led)),
                ok(cli("batches", "show", ok_json(forced)["batch_id"], "--ledger", led, "--json"))]
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out))
    app = typer.Typer()
    app.command()(nightly.main)
    job = CliRunner().invoke(app, ["--registry", str(write_registry([ben], isolated / "r2.parquet")), "--as-of",
                                   "2025-07-05", "--force", "--reason", f"x\n{amy['person_id']} moved",
                                   "--ledger", str(led), "--out", str(out)])
    assert job.exit_code == 0 and json.loads(job.stdout)["ok"], job.stdout + job.stderr
    results.append(job)
    # each reason did reach the output, masked
    assert f"{other[:6]}********{other[-4:]}" in results[1].stdout
    assert f"{ben['person_id'][:6]}********{ben['person_id'][-4:]} moved" in results[4].stdout
    assert f"{amy['person_id'][:6]}********{amy['person_id'][-4:]} moved" in job.stdout
    for r in results:
        text = r.stdout + r.stderr
        assert not re.search(r"(?<![0-9])[0-9]{17}[0-9X](?![0-9])", text), text
