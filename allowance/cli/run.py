"""`allowance run …`: make a draft batch (entitlement minus ledger)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from allowance import registry
from allowance.cli.common import (
    DEFAULT_LEDGER,
    DEFAULT_OUT,
    DEFAULT_RULES,
    JsonOpt,
    LedgerOpt,
    OutOpt,
    RulesOpt,
    echo,
    emit_json,
    errors_as_messages,
    load_rules,
)
from allowance.money import yuan
from allowance.months import as_of_or_today, parse_quarter
from allowance.runs import (
    DEFAULT_MAX_SHRINK_SHARE,
    DEFAULT_MAX_STOP_SHARE,
    Breakers,
    RunResult,
    draft_run,
)

app = typer.Typer(help="Make draft batches.", no_args_is_help=True)

RegistryOpt = Annotated[Path, typer.Option("--registry", help="Registry extract (.parquet or .csv).")]
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="As-of date YYYY-MM-DD (default: today, Asia/Shanghai).")]
MaxQOpt = Annotated[
    float,
    typer.Option("--max-quarantine-share", min=0.0, max=1.0, help="Refuse when more of the extract fails checks."),
]


ForceOpt = Annotated[bool, typer.Option("--force", help="Override a tripped circuit breaker (needs --reason).")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why the breakers are overridden (logged).")]
StopOpt = Annotated[float, typer.Option("--max-stop-share", min=0.0, max=1.0,
                                        help="Refuse to stop more of last quarter's recipients.")]
ShrinkOpt = Annotated[float, typer.Option("--max-shrink-share", min=0.0, max=1.0,
                                          help="Refuse an extract this much smaller than the last one.")]


def _report(res: RunResult, json_: bool) -> None:
    if json_:
        emit_json(res.as_json())
        return
    s = res.summary
    reg = s["registry"]
    for bid in res.finished:
        echo(f"finished the publication of {bid} first: the ledger held it as published, but an interruption "
             "had left its files unmoved (now in place, the same bytes)")
    echo(f"draft {res.batch_id}: {res.lines} payment lines, {yuan(res.amount_fen)} yuan")
    if ahead := s.get("as_of_after_today"):
        echo(f"  warning: as-of {ahead['as_of']} is {ahead['days']} day(s) after today (Shanghai); once this batch "
             "is published, every run as of an earlier day is refused: check the date before publishing")
    if same := s.get("same_extract_as"):
        echo(f"  warning: the extract is the very file {same['batch_id']} was drafted from, as of {same['as_of']}: "
             "has tonight's extract not come?")
    if s.get("window"):
        echo(f"  due months {s['window']['first']} … {s['window']['last']}")
    else:
        echo("  nothing is due (no quarter pre-disbursed yet)")
    echo(f"  registry {reg['rows_in']} rows: {reg['clean']} clean, {reg['quarantined']} quarantined "
               f"{reg['quarantine_by_reason']}, {reg['legacy_ids_upgraded']} legacy IDs upgraded")
    echo(f"  by reason {s['by_reason']}")
    echo(f"  recoveries {s['recoveries']['lines']} lines, {yuan(-s['recoveries']['amount_fen'])} yuan; "
               f"no card {s['no_card']['people']} people, {yuan(s['no_card']['amount_fen'])} yuan")
    cancelled = s.get("recoveries_cancelled") or {}
    if cancelled.get("fen"):
        echo(f"  recoveries cancelled (owed for months the person is due again; not paid twice): "
                   f"{cancelled['lines']} lines, {cancelled['people']} people, {yuan(cancelled['fen'])} yuan")
    exp = s.get("expired") or {}
    if exp.get("fen"):
        echo(f"  expired (older than the retroactive window, not paid): {exp['people']} people, "
                   f"{exp['months']} months, {yuan(exp['fen'])} yuan")
    over = s.get("overpaid_before_window") or {}
    if over.get("fen"):
        echo(f"  overpaid before the retroactive window (not recovered by a line; listed in the change report "
             f"as OVERPAID_BEFORE_WINDOW for the district): {over['people']} people, {over['months']} months, "
             f"{yuan(over['fen'])} yuan")
    if s.get("changes"):
        echo("  changes " + ", ".join(f"{k} {v['people']}" for k, v in s["changes"].items()))
    if s.get("change_report"):
        echo(f"  change report: {s['change_report']}")
    if carry := s.get("approvals_to_carry"):
        echo(f"  the earlier draft {carry['from']} of this run was approved by {len(carry['districts'])} district(s); "
             f"keep the approvals whose lists are unchanged: allowance review carry {res.batch_id} "
             f"--from {carry['from']} --by NAME")
    echo(f"  review, then: allowance publish {res.batch_id} --approved-by NAME")


@app.command("quarterly")
@errors_as_messages
def quarterly(
    quarter: Annotated[str, typer.Option(help="Quarter to pre-disburse, e.g. 2025Q3.")],
    registry_path: RegistryOpt,
    as_of: AsOfOpt = None,
    ledger: LedgerOpt = DEFAULT_LEDGER,
    rules: RulesOpt = DEFAULT_RULES,
    max_quarantine_share: MaxQOpt = registry.DEFAULT_MAX_QUARANTINE_SHARE,
    max_stop_share: StopOpt = DEFAULT_MAX_STOP_SHARE,
    max_shrink_share: ShrinkOpt = DEFAULT_MAX_SHRINK_SHARE,
    force: ForceOpt = False,
    reason: ReasonOpt = None,
    out: OutOpt = DEFAULT_OUT,
    json_: JsonOpt = False,
) -> None:
    """Quarterly pre-disbursement (四 按季度预拨): due months from the retroactive start to the quarter's end."""
    q = parse_quarter(quarter)
    day = as_of_or_today(as_of)
    br = Breakers(max_stop_share, max_shrink_share, force, reason)
    res = draft_run("quarterly", registry_path, ledger, load_rules(rules), day, q, max_quarantine_share, br, out)
    _report(res, json_)


@app.command("supplement")
@errors_as_messages
def supplement(
    registry_path: RegistryOpt,
    as_of: AsOfOpt = None,
    ledger: LedgerOpt = DEFAULT_LEDGER,
    rules: RulesOpt = DEFAULT_RULES,
    max_quarantine_share: MaxQOpt = registry.DEFAULT_MAX_QUARANTINE_SHARE,
    max_stop_share: StopOpt = DEFAULT_MAX_STOP_SHARE,
    max_shrink_share: ShrinkOpt = DEFAULT_MAX_SHRINK_SHARE,
    force: ForceOpt = False,
    reason: ReasonOpt = None,
    out: OutOpt = DEFAULT_OUT,
    json_: JsonOpt = False,
) -> None:
    """Nightly supplement: new entrants, band corrections, new cards, re-issues and recoveries, up to the
    end of the latest pre-disbursed quarter; months older than the retroactive window are reported as expired."""
    day = as_of_or_today(as_of)
    br = Breakers(max_stop_share, max_shrink_share, force, reason)
    res = draft_run("supplement", registry_path, ledger, load_rules(rules), day, None, max_quarantine_share, br, out)
    _report(res, json_)
