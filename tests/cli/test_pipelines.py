"""The scheduled jobs (pipelines/): what they leave for staff."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import typer
from cli_helpers import write_sample
from typer.testing import CliRunner

from allowance.ledger import Ledger
from allowance.months import parse_month
from pipelines import nightly, quarterly


def _job(main: object, *args: str) -> dict[str, object]:
    app = typer.Typer()
    app.command()(main)  # type: ignore[arg-type]
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, (res.stdout, res.stderr)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _job_refused(main: object, *args: str | Path) -> dict[str, Any]:
    """A job's run that exits 2 (refused): its one JSON result."""
    app = typer.Typer()
    app.command()(main)  # type: ignore[arg-type]
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 2, (res.stdout, res.stderr)
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _published_quarter(tmp_path: Path, rows: list[dict[str, Any]]) -> tuple[Path, Path, Path, Path, dict[str, Any]]:
    """A ledger opened at 2025-07 with `rows`' 2025Q3 published by the quarterly job, and an empty
    inbox: (ledger, out, inbox, registry, the job's result)."""
    from allowance.testing import write_registry

    led, out, inbox = tmp_path / "l.duckdb", tmp_path / "out", tmp_path / "inbox"
    inbox.mkdir()
    Ledger.create(led, parse_month("2025-07")).close()
    reg = write_registry(rows, tmp_path / "registry.parquet")
    q = _job(quarterly.main, "--registry", reg, "--quarter", "2025Q3", "--as-of", "2025-07-01",
             "--ledger", led, "--out", out, "--publish-as", "tester")
    return led, out, inbox, reg, q


def test_quarterly_and_nightly_jobs_write_their_change_reports(tmp_path: Path) -> None:
    led, out = tmp_path / "l.duckdb", tmp_path / "out"
    Ledger.create(led, parse_month("2025-07")).close()
    reg = write_sample(tmp_path / "registry.parquet")
    q = _job(quarterly.main, "--registry", reg, "--quarter", "2025Q3", "--as-of", "2025-07-01",
             "--ledger", led, "--out", out, "--publish-as", "tester")
    assert q["ok"] and q["lines"] > 0  # type: ignore[operator]
    assert (out / "reports" / str(q["batch_id"]) / "summary.txt").is_file()
    assert "NEW_ENTRANT" in (out / "reports" / str(q["batch_id"]) / "summary.txt").read_text(encoding="utf-8")
    n = _job(nightly.main, "--registry", reg, "--as-of", "2025-08-15", "--ledger", led, "--out", out)
    assert n["ok"]
    assert (out / "reports" / str(n["batch_id"]) / "summary.txt").is_file()


def test_a_job_killed_after_the_commit_delivers_its_batch_when_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quarterly job with --publish-as, stopped between the ledger's commit and the rename of
    the batch folder, then rerun as cron would: the rerun finishes the first publication (its
    files in place, as the manifest lists them) and says so, then drafts and publishes as usual."""
    import allowance.runs
    from allowance.outputs import verify_batch

    led, out = tmp_path / "l.duckdb", tmp_path / "out"
    Ledger.create(led, parse_month("2025-07")).close()
    reg = write_sample(tmp_path / "registry.parquet")
    job = ["--registry", reg, "--quarter", "2025Q3", "--as-of", "2025-07-01", "--ledger", led, "--out", out,
           "--publish-as", "tester"]

    def killed(*_: object) -> None:
        raise OSError("killed")

    with monkeypatch.context() as m:
        m.setattr(allowance.runs, "finalize_batch", killed)
        app = typer.Typer()
        app.command()(quarterly.main)
        first = CliRunner().invoke(app, [str(a) for a in job])
    assert first.exit_code != 0
    with Ledger.use(led, read_only=True) as lg:
        (bid,) = lg.df("select batch_id from batches where status = 'published'")["batch_id"].to_list()
    assert not (out / bid).exists()
    again = _job(quarterly.main, *job)
    assert again["publications_finished"] == [bid] and again["lines"] == 0
    assert again["status"] == "draft" and again["publish_skipped"] == "nothing to pay, recover or cancel"
    assert verify_batch(out / bid) == []


def test_a_job_run_again_after_it_finished_publishes_no_empty_batch(tmp_path: Path) -> None:
    """An audit: the quarterly job (or the nightly) with --publish-as, run again once it had
    finished, published a second, empty batch for the quarter: a bank folder with nothing in it.
    A draft with nothing to pay, recover or cancel is left a draft."""
    led, out = tmp_path / "l.duckdb", tmp_path / "out"
    Ledger.create(led, parse_month("2025-07")).close()
    reg = write_sample(tmp_path / "registry.parquet")
    job = ["--registry", reg, "--quarter", "2025Q3", "--as-of", "2025-07-01", "--ledger", led, "--out", out,
           "--publish-as", "tester"]
    first = _job(quarterly.main, *job)
    assert first["status"] == "published" and first["lines"] > 0  # type: ignore[operator]
    again = _job(quarterly.main, *job)
    assert again["status"] == "draft" and again["lines"] == 0 and "publish_skipped" in again
    night = _job(nightly.main, "--registry", reg, "--as-of", "2025-07-02", "--ledger", led, "--out", out,
                 "--publish-as", "tester")
    assert night["status"] == "draft" and "publish_skipped" in night
    with Ledger.use(led, read_only=True) as lg:
        assert lg.df("select batch_id from batches where status = 'published'")["batch_id"].to_list() == [
            first["batch_id"]]
    assert sorted(p.name for p in out.iterdir() if p.name not in ("reports", ".ledgers")) == [first["batch_id"]]
    # A second audit: a night whose only news is an entrant with no card publishes, so that the
    # district's no-card list names them.
    from cli_helpers import sample_rows

    from allowance.testing import person, write_registry
    newcomer = person(dt.date(1950, 3, 4), seq=977, channel=None)
    tonight = write_registry([*sample_rows(), newcomer], tmp_path / "tonight.parquet")
    night = _job(nightly.main, "--registry", tonight, "--as-of", "2025-07-03", "--ledger", led, "--out", out,
                 "--publish-as", "tester")
    assert night["status"] == "published" and night["lines"] == 0, night
    with Ledger.use(led, read_only=True) as lg:
        listed = lg.df("select person_id from batch_no_card where batch_id = ?", [night["batch_id"]])
    assert newcomer["person_id"] in listed["person_id"].to_list()


def test_the_nightly_job_reads_an_inbox_and_the_quarterly_job_can_be_forced(tmp_path: Path) -> None:
    """An empty inbox folder is a night without bank files, not a failure; a folder's files are
    each imported once. The quarterly job refuses a tripped breaker and takes --force --reason."""
    import polars as pl
    from cli_helpers import sample_rows

    from allowance.testing import write_registry

    rows = sample_rows(40)
    led, out, inbox, reg, q = _published_quarter(tmp_path, rows)
    night = ["--registry", reg, "--returns", inbox, "--ledger", led, "--out", out]
    assert _job(nightly.main, *night, "--as-of", "2025-07-10")["bank_returns"] == []
    with Ledger.use(led, read_only=True) as lg:
        (line,) = lg.part(str(q["batch_id"]), "lines").sort("line_id")["line_id"].head(1).to_list()
    # a bank's upper-case .CSV counts; a folder named like a file, or a hidden file, does not
    pl.DataFrame({"line_id": [line], "status": ["PAID"]}).write_csv(inbox / "2025-07-16.CSV")
    (inbox / ".upload-in-progress").write_text("")
    (inbox / "archive.csv").mkdir()
    (done,) = _job(nightly.main, *night, "--as-of", "2025-07-17")["bank_returns"]  # type: ignore[misc]
    assert done["file"] == str(inbox / "2025-07-16.CSV") and done["new"] == 1
    # Audit 18B: a .parquet return was passed over, and so was a .csv.gz, the night saying ok, the
    # failed payments in them never re-issued. A .parquet is read, as `bank-returns import` reads
    # it; any other file is named as refused, and the job exits 2 so that the scheduler alerts.
    other = _lines(led, str(q["batch_id"]))[1]
    pl.DataFrame({"line_id": [other], "status": ["PAID"]}).write_parquet(inbox / "2025-07-17.parquet")
    (inbox / "2025-07-18.csv.gz").write_bytes(b"\x1f\x8b")
    (inbox / "2025-07-18b.csv").symlink_to(tmp_path / "share-not-mounted" / "b.csv")  # audit 18E: skipped unsaid
    said = _job_refused(nightly.main, *night, "--as-of", "2025-07-18")
    assert [b["file"] for b in said["bank_returns"]] == [str(inbox / "2025-07-16.CSV"),
                                                        str(inbox / "2025-07-17.parquet")]
    assert said["bank_returns"][1]["new"] == 1
    gz, link = said["refused"]
    assert str(inbox / "2025-07-18.csv.gz") in gz and "not read" in gz
    assert str(inbox / "2025-07-18b.csv") in link and "a link to nothing" in link
    (inbox / "2025-07-18.csv.gz").unlink()
    (inbox / "2025-07-18b.csv").unlink()

    # a quarter that would stop payments for a third of last quarter's recipients
    shrunk = write_registry(rows[: len(rows) * 2 // 3], tmp_path / "shrunk.parquet")
    quarter = ["--registry", shrunk, "--quarter", "2025Q4", "--as-of", "2025-10-01", "--ledger", led, "--out", out]
    app = typer.Typer()
    app.command()(quarterly.main)
    refused = CliRunner().invoke(app, [str(a) for a in quarter])
    assert refused.exit_code == 2 and "would stop payments" in refused.stdout, refused.stdout
    forced = _job(quarterly.main, *quarter, "--force", "--reason", "区县合并核对")
    assert forced["forced"]["reason"] == "区县合并核对"  # type: ignore[index]


def _lines(led: Path, batch_id: str) -> list[str]:
    with Ledger.use(led, read_only=True) as lg:
        return lg.part(batch_id, "lines").sort("line_id")["line_id"].to_list()


def test_a_refused_bank_file_is_named_and_the_nights_supplement_still_runs(tmp_path: Path) -> None:
    """A sixth audit: one bank file the ledger refuses (a correction marking a FAILED line PAID,
    an unknown line id) stopped every later night's supplement, without naming the file, so a
    person who got a card stayed unpaid. Now the file is named in `refused`, the other files are
    imported, the supplement is drafted, and the job exits 2 so that the scheduler alerts."""
    import polars as pl
    from cli_helpers import sample_rows

    from allowance.testing import write_registry

    led, out, inbox = tmp_path / "l.duckdb", tmp_path / "out", tmp_path / "inbox"
    inbox.mkdir()
    Ledger.create(led, parse_month("2025-07")).close()
    reg = write_registry(sample_rows(40), tmp_path / "registry.parquet")
    q = _job(quarterly.main, "--registry", reg, "--quarter", "2025Q3", "--as-of", "2025-07-01",
             "--ledger", led, "--out", out, "--publish-as", "tester")
    with Ledger.use(led, read_only=True) as lg:
        first, second = lg.part(str(q["batch_id"]), "lines").sort("line_id")["line_id"].head(2).to_list()
    pl.DataFrame({"line_id": ["Q2025Q3-00000000-00000099"], "status": ["PAID"]}).write_csv(inbox / "a-bad.csv")
    pl.DataFrame({"line_id": [first, second], "status": ["FAILED", "PAID"],
                  "reason": ["card closed", ""]}).write_csv(inbox / "b-good.csv")
    said = _job_refused(nightly.main, "--registry", reg, "--returns", inbox, "--ledger", led, "--out", out,
                        "--as-of", "2025-07-17")
    assert said["ok"] is False
    (refused,) = said["refused"]
    assert str(inbox / "a-bad.csv") in refused and "Q2025Q3-00000000-00000099" in refused
    (done,) = said["bank_returns"]
    assert done["file"] == str(inbox / "b-good.csv") and done["failed"] == 1
    # tonight's supplement was drafted all the same: it re-issues the failed line
    assert said["status"] == "draft" and said["lines"] == 1 and str(said["batch_id"]).startswith("S20250717")


def test_a_busy_ledger_is_not_a_refused_bank_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An eighth audit: a ledger held for a moment by another run made a good bank file appear
    under `refused`. Nothing is wrong with the file: the job fails as busy, to be run again."""
    import polars as pl

    from allowance.errors import LedgerBusy

    led, out, inbox = tmp_path / "l.duckdb", tmp_path / "out", tmp_path / "inbox"
    inbox.mkdir()
    Ledger.create(led, parse_month("2025-07")).close()
    reg = write_sample(tmp_path / "registry.parquet")
    pl.DataFrame({"line_id": ["Q2025Q3-00000000-00000001"], "status": ["PAID"]}).write_csv(inbox / "a.csv")

    def busy(*_: object, **__: object) -> None:
        raise LedgerBusy(f"{led}: ledger is busy (another run holds it); try again later")

    monkeypatch.setattr(Ledger, "import_bank_returns", busy)
    app = typer.Typer()
    app.command()(nightly.main)
    res = CliRunner().invoke(app, [str(a) for a in ["--registry", reg, "--returns", inbox, "--ledger", led,
                                                    "--out", out, "--as-of", "2025-07-17"]])
    said = json.loads(res.stdout.strip().splitlines()[-1])
    assert res.exit_code == 2 and said["ok"] is False and "ledger is busy" in said["error"]
    assert "refused" not in said


def test_a_night_refused_by_a_breaker_still_names_its_refused_bank_files(tmp_path: Path) -> None:
    """A tenth audit: when the supplement was refused (a breaker tripped), the job's JSON result
    said only that, and the bank files refused earlier that night were named in the log alone."""
    import polars as pl
    from cli_helpers import sample_rows

    from allowance.testing import write_registry

    led, out, inbox = tmp_path / "l.duckdb", tmp_path / "out", tmp_path / "inbox"
    inbox.mkdir()
    Ledger.create(led, parse_month("2025-07")).close()
    rows = sample_rows(40)
    reg = write_registry(rows, tmp_path / "registry.parquet")
    _job(quarterly.main, "--registry", reg, "--quarter", "2025Q3", "--as-of", "2025-07-01", "--ledger", led,
         "--out", out, "--publish-as", "tester")
    pl.DataFrame({"line_id": ["Q2025Q3-00000000-00000099"], "status": ["PAID"]}).write_csv(inbox / "bad.csv")
    shrunk = write_registry(rows[: len(rows) // 2], tmp_path / "shrunk.parquet")
    app = typer.Typer()
    app.command()(nightly.main)
    res = CliRunner().invoke(app, [str(a) for a in ["--registry", shrunk, "--returns", inbox, "--ledger", led,
                                                    "--out", out, "--as-of", "2025-07-17"]])
    said = json.loads(res.stdout.strip().splitlines()[-1])
    assert res.exit_code == 2 and said["ok"] is False
    assert "fewer than the previous run" in said["error"] or "would stop payments" in said["error"]
    assert str(inbox / "bad.csv") in said["error"] and "refused tonight" in said["error"]


def _night_that_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException) -> Any:
    """The nightly job on a fresh ledger, its draft raising `error`: the job's CliRunner result."""
    led = tmp_path / "l.duckdb"
    Ledger.create(led, parse_month("2025-07")).close()

    def raises(*_a: object, **_k: object) -> None:
        raise error

    monkeypatch.setattr(nightly, "draft_run", raises)
    app = typer.Typer()
    app.command()(nightly.main)
    return CliRunner().invoke(app, ["--registry", str(write_sample(tmp_path / "r.parquet")), "--as-of", "2025-07-05",
                                    "--ledger", str(led), "--out", str(tmp_path / "out")])


def test_a_panic_in_a_job_is_its_one_json_result_and_a_log_line(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """An audit: polars' panic (a BaseException) passed the job's `except Exception`, and the job
    printed a traceback, no JSON result and no log line: the scheduler saw nothing to alert on."""
    res = _night_that_raises(tmp_path, monkeypatch,
                             pl.exceptions.PanicException("assertion failed: range.end as u64 <= self.size"))
    assert res.exit_code == 1, (res.stdout, res.stderr)
    result = json.loads(res.stdout)
    assert not result["ok"] and result["error"].startswith("PanicException: assertion failed"), result
    assert '"event": "job_crashed"' in res.stderr, res.stderr


def test_a_full_disk_in_a_job_is_said_as_the_command_line_says_it(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """An audit: on a full disk the job logged `job_crashed` with a Python traceback and its
    result was the library's raw text; the command line says what to do, in one line."""
    import errno

    wal = tmp_path / "l.duckdb.wal"
    res = _night_that_raises(tmp_path, monkeypatch, OSError(errno.ENOSPC, "No space left on device", str(wal)))
    assert res.exit_code == 1, (res.stdout, res.stderr)
    assert json.loads(res.stdout)["error"] == (f"{wal}: No space left on device; free the space "
                                               "or fix the folder, then run again (a rerun is safe)")
    assert '"event": "job_failed"' in res.stderr and "job_crashed" not in res.stderr and "trace" not in res.stderr


def test_a_refused_night_says_the_bank_files_it_imported(tmp_path: Path) -> None:
    """Audit 18B: a night that imported a bank return (its failed line reversed, committed) and was
    then refused by a breaker said only the refusal; the next night called the file already
    recorded, so nobody was told it had been read. The refusal names the files imported."""
    from cli_helpers import sample_rows

    from allowance.testing import write_registry

    rows = sample_rows(40)
    led, out, inbox, _, q = _published_quarter(tmp_path, rows)
    pl.DataFrame({"line_id": [_lines(led, str(q["batch_id"]))[0]], "status": ["FAILED"],
                  "reason": ["card closed"]}).write_csv(inbox / "r.csv")
    shrunk = write_registry(rows[: len(rows) * 2 // 3], tmp_path / "shrunk.parquet")
    said = _job_refused(nightly.main, "--registry", shrunk, "--returns", inbox, "--ledger", led, "--out", out,
                        "--as-of", "2025-07-17")
    assert "would stop payments" in said["error"]
    assert (f"imported tonight all the same: {inbox / 'r.csv'} (1 new, 1 failed, 0 paid on a retry)"
            in said["error"]), said
    # the next night, refused again: the file recorded the night before is no news (audit 18E)
    again = _job_refused(nightly.main, "--registry", shrunk, "--returns", inbox, "--ledger", led, "--out", out,
                         "--as-of", "2025-07-18")
    assert "would stop payments" in again["error"] and "imported tonight" not in again["error"], again
