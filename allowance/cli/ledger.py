"""`allowance ledger …`: open the ledger once; show its state."""

from __future__ import annotations

from typing import Annotated

import typer

from allowance.cli.common import (
    DEFAULT_LEDGER,
    DEFAULT_OUT,
    JsonOpt,
    LedgerOpt,
    OutOpt,
    echo,
    emit_json,
    errors_as_messages,
)
from allowance.constants import EXIT_FAILURE
from allowance.ledger import Ledger
from allowance.months import fmt, parse_month
from allowance.runs import bank_folder_problems

app = typer.Typer(help="The ledger of what was paid.", no_args_is_help=True)


@app.command("open")
@errors_as_messages
def open_(
    opening_month: Annotated[str, typer.Option(help="First month this engine pays, YYYY-MM.")],
    ledger: LedgerOpt = DEFAULT_LEDGER,
    json_: JsonOpt = False,
) -> None:
    """Open a new ledger. Earlier months belonged to the previous system. Refuses a second opening."""
    mi = parse_month(opening_month)
    Ledger.create(ledger, mi).close()
    if json_:
        emit_json({"ledger": str(ledger), "opening_month": fmt(mi)})
    else:
        echo(f"opened {ledger} with opening month {fmt(mi)}")


@app.command("status")
@errors_as_messages
def status(ledger: LedgerOpt = DEFAULT_LEDGER, json_: JsonOpt = False) -> None:
    """Opening month, batches and the person-months held."""
    with Ledger.use(ledger, read_only=True) as led:
        row = led.run(
            "select coalesce(sum(to_mi - from_mi + 1), 0), coalesce(sum(fen * (to_mi - from_mi + 1)), 0), "
            "count(distinct person_key), (select count(*) from entries) from holdings"
        )[0]
        nb = led.run("select status, count(*) from batches group by status order by status")
        refunds = led.refunds_reported()
        info = {
            "ledger": str(ledger),
            "opening_month": fmt(led.opening_month),
            "entries": int(row[3]),
            "person_months_held": int(row[0]),
            "net_fen": int(row[1]),
            "people": int(row[2]),
            "batches": {s: int(n) for s, n in nb},
            # money families returned that the bank never delivered (`recoveries refunds`)
            "refunds_reported": led.refunds_total(refunds),
        }
    if json_:
        emit_json(info)
    else:
        for k, v in info.items():  # a count per kind as words, not a Python dict (an audit)
            shown = (", ".join(f"{a} {b}" for a, b in v.items()) or "none") if isinstance(v, dict) else v
            echo(f"{k:>16}: {shown}")


@app.command("upgrade")
@errors_as_messages
def upgrade(ledger: LedgerOpt = DEFAULT_LEDGER, json_: JsonOpt = False) -> None:
    """Convert a ledger made by an earlier version of the engine to this one's schema, in one
    transaction (back up the ledger file and its .batches folder first). Twice is a no-op."""
    found, now, mended = Ledger.upgrade(ledger)
    if json_:
        emit_json({"ledger": str(ledger), "schema_was": found, "schema": now, "recovery_months_mended": mended})
    elif found == now and mended:
        echo(f"{ledger}: already at schema {now}; the months of {mended} recoveries set to those they still owe")
    elif found == now:
        echo(f"{ledger}: already at schema {now}; nothing to do")
    else:
        echo(f"upgraded {ledger} from schema {found} to {now}")


@app.command("check")
@errors_as_messages
def check(ledger: LedgerOpt = DEFAULT_LEDGER, out: OutOpt = DEFAULT_OUT, json_: JsonOpt = False) -> None:
    """Recompute the holdings from the journal and each published batch's totals; exit 1 on a difference."""
    with Ledger.use(ledger, read_only=True) as led:
        info = {"ledger": str(ledger), **led.check()}
        folders, problems = bank_folder_problems(led, out)
    info["bank_folders"] = folders
    info["problems"] += problems
    info["ok"] = not info["problems"]
    if json_:
        emit_json(info)
    else:
        for k, v in info.items():
            if k != "problems":
                echo(f"{k:>14}: {v}")
        for p in info["problems"]:
            echo(f"       problem: {p}")
    if not info["ok"]:
        raise typer.Exit(code=EXIT_FAILURE)
