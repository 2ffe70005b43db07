"""`allowance bank-returns …` and `allowance recoveries …`: what the bank and districts send back."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from allowance.cli.common import DEFAULT_LEDGER, JsonOpt, LedgerOpt, echo, emit_json, errors_as_messages
from allowance.errors import UserError
from allowance.idcard import mask
from allowance.ledger import Ledger
from allowance.money import yuan
from allowance.registry import file_sha256
from allowance.returns import read_bank_returns, read_line_ids

bank = typer.Typer(help="Bank return files (SPEC §8).", no_args_is_help=True)
recoveries = typer.Typer(help="The register of amounts to recover: open, recovered, written off.",
                         no_args_is_help=True)

STATES = ("open", "recovered", "written_off", "cancelled")  # a recovery register row's states
ByOpt = Annotated[str | None, typer.Option("--by", help="Who (default: the OS user).")]


@bank.command("import")
@errors_as_messages
def import_(file: Annotated[Path, typer.Argument(help="Parquet or CSV: line_id, status, reason, settled_at.")],
            ledger: LedgerOpt = DEFAULT_LEDGER, json_: JsonOpt = False) -> None:
    """Record PAID lines; reverse FAILED ones so the next run re-issues them (a PAID after the FAILED, a
    retry the bank paid, undoes it). Twice changes nothing."""
    df = read_bank_returns(file)
    with Ledger.use(ledger) as led:
        counts = led.import_bank_returns(df, file_sha256(file))
    if json_:
        emit_json({"file": str(file), **counts})
    else:
        # Reversed is not all re-issued: months of a failed payment that were since recovered owe
        # nothing either way, and their recoveries are cancelled instead.
        cancelled = (f"; {counts['recoveries_cancelled']} recoveries of those months cancelled"
                     if counts["recoveries_cancelled"] else "")
        echo(f"{file}: {counts['rows']} rows, {counts['new']} new ({counts['paid']} paid, "
                   f"{counts['failed']} failed, {yuan(counts['reversed_fen'])} yuan reversed{cancelled}; "
                   f"the next run re-issues what is still due), {counts['already_recorded']} already recorded")
        _say_what_changed(counts)


def _say_what_changed(counts: dict[str, Any]) -> None:
    """What an import (or a notice dated) did beyond reversing lines: retries, recoveries, refunds."""
    if counts["paid_on_retry"]:
        # a failure the bank then paid on a retry: nothing to re-issue (audit 20F: re-issued twice)
        echo(f"{counts['paid_on_retry']} line(s) failed at the bank and since paid on a retry: their "
             f"{yuan(counts['restored_fen'])} yuan count as delivered again, and are not re-issued (what a run "
             "re-issued already is recovered by the next run)")
    for r in counts["recoveries_restored"]:
        echo(f"recovery {r['line_id']} ({r['district_code']}): {yuan(r['restored_fen'])} yuan taken off it when "
             f"the payment failed is owed again (the bank paid it on a retry); it owes {yuan(r['owed_fen'])} yuan "
             f"({r['state']})")
    if (not_due := counts["refunds_not_due"])["fen"]:
        # less to refund on a line: a retry the bank paid, or a failure that counts a refund to
        # another recovery line now, the same money (audit 30E)
        lines = ", ".join(not_due["recovery_lines"])
        said = f"{not_due['people']} people's refund of {yuan(not_due['fen'])} yuan reported when those lines failed"
        moved = ("this file's failures count it to another recovery line now: the refund said below is the same "
                 "money, to refund once")
        if not counts["paid_on_retry"]:
            echo(f"{said} is not due on recovery line(s) {lines}: {moved}")
        elif not counts["recovered_but_never_delivered"]["fen"]:
            echo(f"{said} is not due: the bank delivered those months after all (recovery line(s) {lines}); if it "
                 "was refunded already, the district recovers it by hand")
        else:
            echo(f"{said} is not due on recovery line(s) {lines}: the bank delivered those months after all (if "
                 f"refunded already, the district recovers it by hand), or {moved}")
    for r in counts["recoveries_reduced"]:
        # each recovery that owes less now, for its district before it collects (audit 20A)
        owes = ("it owes nothing now (cancelled): the district collects nothing of it" if r["state"] == "cancelled"
                else f"it owes {yuan(r['owed_fen'])} yuan ({r['state']}): the district collects that, not what "
                "its recovery file listed")
        echo(f"recovery {r['line_id']} ({r['district_code']}): {yuan(r['cancelled_fen'])} yuan of months the bank "
             f"never delivered taken off; {owes}")
    if (back := counts["recovered_but_never_delivered"])["fen"]:
        echo(f"{back['people']} people had {yuan(back['fen'])} yuan of those months recovered (confirmed) though "
             "the bank never delivered them: no run pays it back; the district refunds it (recovery line(s) "
             f"{', '.join(back['recovery_lines'])} in `allowance recoveries list --state recovered`; "
             "`allowance recoveries refunds` lists every such refund)")


@bank.command("date")
@errors_as_messages
def date_(line_id: Annotated[str, typer.Argument(help="The payment line whose notice on record is dated.")],
          status: Annotated[str, typer.Option("--status", help="PAID or FAILED: which of its notices.")],
          settled_at: Annotated[str, typer.Option("--settled-at", help="When the bank says it settled, Shanghai "
                                                  "time: 'YYYY-MM-DD HH:MM' or 'YYYY-MM-DD HH:MM:SS'.")],
          reason: Annotated[str, typer.Option("--reason", help="The bank's confirmation, for the record.")],
          recorded: Annotated[str | None, typer.Option(
              "--recorded", help="Which notice, where the line has two of that status with no usable date: its "
              "settled_at as recorded, or `undated`.")] = None,
          by: ByOpt = None, ledger: LedgerOpt = DEFAULT_LEDGER, json_: JsonOpt = False) -> None:
    """Give a notice on record the settlement date the bank confirmed, where it has none to order by.

    A notice with no date (or a date alone, or another spelling) cannot be ordered against the
    line's next one, and the file bringing that one is refused until it can: this dates the notice
    on record (the notice itself stays as the bank sent it; a later date given corrects this one).
    If, so dated, the line's notices say it ended otherwise than the ledger holds, the ledger is
    put right as an import would; the same instant again changes nothing.
    """
    with Ledger.use(ledger) as led:
        res = led.date_bank_notice(line_id, status, settled_at, by or getpass.getuser(), reason, recorded)
    if json_:
        emit_json(res)
        return
    was = res["recorded"] or "undated"
    if res["failed"]:
        ended = (f"it is now the line's latest notice, and the line ended FAILED (the bank returned it after the "
                 f"credit): {yuan(res['reversed_fen'])} yuan reversed; the next run re-issues what is still due")
    elif res["paid_on_retry"]:
        ended = "it is no longer the line's latest notice, and the line ended PAID"
    elif res["changed"] and res["notices_end"] is None:
        # audit 25B: a correction that left the notices in no order said "unchanged"
        ended = ("the line's notices give no order now, so how it ended cannot be told: the ledger holds what it "
                 "held; give its other notice its date too")
    else:
        ended = "how the line ended is unchanged"
    echo(f"line {line_id}: its {res['status']} notice (recorded {was}) "
         + ("is now" if res["changed"] else "was already") + f" dated {res['settled_at']}; {ended}; the next import "
         "of its bank notices orders them by that date")
    _say_what_changed(res)


@recoveries.command("confirm")
@errors_as_messages
def confirm(file: Annotated[Path, typer.Argument(help="Parquet or CSV with a line_id column.")],
            by: ByOpt = None, ledger: LedgerOpt = DEFAULT_LEDGER, json_: JsonOpt = False) -> None:
    """Mark open recoveries as recovered (the district got the money back)."""
    ids = read_line_ids(file, "recovery confirmation file")
    with Ledger.use(ledger) as led:
        res = led.set_recovery_state(ids, "recovered", by or getpass.getuser(), f"confirmed by {file.name}")
    _say(res, "recovered", json_)


@recoveries.command("write-off")
@errors_as_messages
def write_off(line_ids: Annotated[list[str], typer.Argument(help="Recovery line ids.")],
              reason: Annotated[str, typer.Option("--reason", help="Why it cannot be recovered.")],
              by: ByOpt = None, ledger: LedgerOpt = DEFAULT_LEDGER, json_: JsonOpt = False) -> None:
    """Write off open recoveries that cannot be recovered, with a reason."""
    if not reason.strip():
        raise UserError("--reason must say why the recovery is written off")
    with Ledger.use(ledger) as led:
        res = led.set_recovery_state(line_ids, "written_off", by or getpass.getuser(), reason)
    _say(res, "written off", json_)


def _say(res: dict[str, Any], what: str, json_: bool) -> None:
    if json_:
        emit_json(res)
        return
    echo(f"{res['changed']} recovery line(s) {what}; {res['unchanged']} already so")
    for r in res["less_than_listed"]:
        # audit 20A: a recovery cut by a bank return was confirmed for less than its file listed, unsaid
        refund = (f"; if the district collected {yuan(r['listed_fen'])} yuan, it refunds "
                  f"{yuan(r['listed_fen'] - r['recorded_fen'])} yuan" if what == "recovered" else "")
        echo(f"recovery {r['line_id']} ({r['district_code']}): {yuan(r['recorded_fen'])} yuan {what}, less than the "
             f"{yuan(r['listed_fen'])} yuan its recovery file listed (the rest was cancelled since: "
             f"`allowance recoveries list --json` gives its notes){refund}")


@recoveries.command("list")
@errors_as_messages
def list_(state: Annotated[str | None, typer.Option(help=f"{', '.join(STATES)}.")] = None,
          ledger: LedgerOpt = DEFAULT_LEDGER, json_: JsonOpt = False) -> None:
    """The recoveries register (IDs masked)."""
    if state is not None and state not in STATES:  # a misspelt state listed nothing, with exit 0 (an audit)
        raise UserError(f"--state {state!r}: a recovery is {', '.join(STATES)}")
    with Ledger.use(ledger, read_only=True) as led:
        where, params = ("where state = ?", [state]) if state else ("", [])
        df = led.df(f"select * from recoveries {where} order by district_code, line_id", params)
    rows = [{**r, "person_id": mask(r["person_id"])} for r in df.to_dicts()]
    if json_:
        emit_json({"recoveries": rows, "lines": len(rows), "amount_fen": int(df["amount_fen"].sum())})
        return
    for r in rows:
        echo(f"{r['line_id']}  {r['district_code']}  {r['person_id']}  {r['months']} months  "
                   f"{yuan(r['amount_fen']):>12} yuan  {r['cause']:<16} {r['state']}")
    echo(f"{len(rows)} line(s), {yuan(int(df['amount_fen'].sum()))} yuan")


@recoveries.command("refunds")
@errors_as_messages
def refunds(ledger: LedgerOpt = DEFAULT_LEDGER, json_: JsonOpt = False) -> None:
    """Money families returned that the bank never delivered, for the districts to refund by hand.

    Each bank-return import that found months a confirmed recovery had got back of a payment the
    bank then said failed, with its recovery lines (`recoveries list --state recovered` shows
    them with their districts); and each that found the bank paid such a payment on a retry
    after all, its amount negative: not due. The list stands: it is read from the imports' events.
    """
    with Ledger.use(ledger, read_only=True) as led:
        df = led.refunds_reported()
        # (an import that both reports and withdraws refunds is two rows: audit 30E)
        total = {"imports": df.select("imported_at", "source", "file_sha256").n_unique(), **led.refunds_total(df)}
    if json_:
        emit_json({"refunds": [{**r, "imported_at": r["imported_at"].isoformat(),
                                "by_line": json.loads(r["by_line"]) if r["by_line"] else None}
                               for r in df.to_dicts()], **total})
        return
    for r in df.to_dicts():
        source = (f"return file {r['file_sha256'][:12]}" if r["file_sha256"] else
                  {"notice_dated": "a notice staff dated"}.get(r["source"], "schema-4 ledger upgraded"))
        echo(f"{r['imported_at']:%Y-%m-%d %H:%M}  {source}  {r['people']} people  "
             f"{yuan(r['fen']):>12} yuan  recovery line(s) {', '.join(r['recovery_lines'])}"
             + ("  (not due on these lines: a retry the bank paid, or counted to another line)"
                if r["fen"] < 0 else ""))
    echo(f"{total['imports']} import(s), {total['people']} people, {yuan(total['fen'])} yuan to refund by hand")
