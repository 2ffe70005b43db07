"""The nightly job (SPEC §4 supplement): bank returns in, tonight's extract screened, a draft out.

    python -m pipelines.nightly --registry /data/extract-YYYYMMDD.parquet [--returns FILE|FOLDER ...]
        [--as-of DATE] [--ledger var/ledger.duckdb] [--out out] [--publish-as NAME]
        [--force --reason TEXT]

1. imports each bank return file given, or every .csv, .txt and .parquet in a folder given (any
   other file there is named as refused, not read, and its subfolders are not read; idempotent: a file
   imported before changes nothing); a file refused is named in the result's `refused`, the
   rest of the job still runs, and it exits 2 so that the scheduler alerts;
2. drafts the supplement: new entrants, band corrections, new cards, re-issues, recoveries;
   months older than the retroactive window are reported as expired; the change report goes to
   <out>/reports/<batch_id>/;
3. publishes it only with --publish-as (otherwise district staff review and publish it).

Exit codes: 0 ok, 1 failure, 2 refused by a check (quarantine share, circuit breakers, bad
input). Logs: structlog JSON lines on stderr; one JSON result on stdout.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from allowance import log, registry, rules
from allowance.cli.common import run_command
from allowance.errors import AllowanceError, LedgerBusy
from allowance.ledger import Ledger
from allowance.months import as_of_or_today
from allowance.registry import file_sha256
from allowance.returns import read_bank_returns
from allowance.runs import DEFAULT_MAX_SHRINK_SHARE, DEFAULT_MAX_STOP_SHARE, Breakers, draft_run
from pipelines._job import publish_unless_empty, run_job

# a --returns folder's files that are read (any case): what `bank-returns import` reads
INBOX_SUFFIXES = (".csv", ".parquet", ".txt")


def main(
    registry_path: Annotated[Path, typer.Option("--registry", help="Tonight's registry extract.")],
    returns: Annotated[
        list[Path] | None, typer.Option("--returns", help="Bank return file(s) to import first, or a folder: "
                                        "every .csv, .txt and .parquet in it, in name order.")
    ] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="YYYY-MM-DD, default today (Shanghai).")] = None,
    ledger: Annotated[Path, typer.Option(envvar="ALLOWANCE_LEDGER")] = Path("var/ledger.duckdb"),
    out: Annotated[Path, typer.Option(envvar="ALLOWANCE_OUT")] = Path("out"),
    rules_path: Annotated[Path, typer.Option("--rules", envvar="ALLOWANCE_RULES")] = rules.DEFAULT_RULES_DIR,
    publish_as: Annotated[str | None, typer.Option(help="Publish at once, approved by this name.")] = None,
    force: Annotated[bool, typer.Option(help="Override a tripped circuit breaker (needs --reason).")] = False,
    reason: Annotated[str | None, typer.Option(help="Why the breakers are overridden.")] = None,
    max_quarantine_share: Annotated[float, typer.Option()] = registry.DEFAULT_MAX_QUARANTINE_SHARE,
    max_stop_share: Annotated[float, typer.Option()] = DEFAULT_MAX_STOP_SHARE,
    max_shrink_share: Annotated[float, typer.Option()] = DEFAULT_MAX_SHRINK_SHARE,
) -> None:
    def body() -> dict[str, object]:
        day = as_of_or_today(as_of)
        imported = []
        # A folder is an inbox: a night with no new file imports nothing (a file imported before
        # changes nothing, so files may stay there until archived). It reads .csv, .txt and .parquet
        # files, as `bank-returns import` does; any other file (a .csv.gz, an .xlsx) is named as
        # refused, not passed over: a return file left unread leaves its failed payments never
        # re-issued (audit 18B: a .parquet and a .csv.gz in the inbox, and the night said ok).
        # Hidden files (an upload under way, .DS_Store) are left alone.
        # Anything else there that is not a hidden name or a folder (an archive of imported files;
        # a folder's files are not read, as the README says) is named too: a link to nothing (a
        # share not mounted), a pipe; none is read.
        named: list[tuple[Path, bool]] = []  # each file, and whether it was found in a folder
        not_files: list[Path] = []
        for p in returns or []:
            if not p.is_dir():
                named.append((p, False))
                continue
            for f in sorted(p.iterdir()):
                if f.name.startswith("."):
                    continue
                if f.is_file():
                    named.append((f, True))
                elif not f.is_dir():
                    not_files.append(f)
        files = [f for f, found in named if not found or f.suffix.lower() in INBOX_SUFFIXES]
        refused = [f"{f}: not a bank return file ({' or '.join(INBOX_SUFFIXES)}), not read: move it out of the inbox, "
                   "or convert it and import it with `allowance bank-returns import`"
                   for f, found in named if found and f.suffix.lower() not in INBOX_SUFFIXES]
        refused += [f"{f}: not a readable file (a link to nothing?), not read: restore what it names, or move it "
                    "out of the inbox" for f in not_files]
        for said in refused:
            log.get(job="nightly").error("bank_returns_refused", error=said)
        for f in files:
            # A file refused (unknown line ids, a PAID and a FAILED of one line in no known order, not a
            # return file) is named and left for staff; the other files and tonight's supplement
            # still run, and the job ends refused (exit 2) so that the scheduler alerts. Before
            # (found by an audit), one bad file in the inbox stopped every night's supplement,
            # without saying which file.
            try:
                df = read_bank_returns(f)
                with Ledger.use(ledger) as led:
                    imported.append({"file": str(f), **led.import_bank_returns(df, file_sha256(f))})
            except LedgerBusy:
                raise  # nothing wrong with the file: the whole job is tried again later
            except AllowanceError as e:
                said = str(e) if str(f) in str(e) else f"{f}: {e}"
                log.get(job="nightly", file=str(f)).error("bank_returns_refused", error=said)
                refused.append(said)
        br = Breakers(max_stop_share, max_shrink_share, force, reason)
        try:
            res = draft_run("supplement", registry_path, ledger, rules.load(rules_path), day, None,
                            max_quarantine_share, br, out)
        except AllowanceError as e:
            if not (refused or imported):
                raise
            # The night's error is the job's result: the files refused are said in it too (found
            # by an audit: with a breaker tripped, they were named only in the log), and so are
            # those imported, which stay imported (audit 18B: the next night said only that they
            # were already recorded).
            said = str(e)
            if fresh := [i for i in imported if i["new"]]:  # a file recorded on an earlier night is no news
                said += "; bank return file(s) imported tonight all the same: " + ", ".join(
                    f"{i['file']} ({i['new']} new, {i['failed']} failed, {i['paid_on_retry']} paid on a retry)"
                    for i in fresh)
            if refused:
                said += f"; and bank return file(s) refused tonight: {'; '.join(refused)}"
            raise type(e)(said) from None
        result = publish_unless_empty(res, publish_as, ledger, out) if publish_as else res.as_json()
        return {**result, "bank_returns": imported, **({"refused": refused} if refused else {})}

    raise typer.Exit(run_job("nightly", body))


if __name__ == "__main__":
    os.environ.setdefault("ALLOWANCE_LOG_LEVEL", "INFO")
    run_command(main)
