"""`allowance batches …`: what batches exist and what is in one."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from allowance.cli.common import DEFAULT_LEDGER, JsonOpt, LedgerOpt, echo, emit_json, errors_as_messages
from allowance.idcard import mask_ids_deep
from allowance.ledger import Ledger
from allowance.money import yuan
from allowance.months import fmt
from allowance.runs import as_of_after_today

app = typer.Typer(help="Batches in the ledger.", no_args_is_help=True)


@app.command("list")
@errors_as_messages
def list_(ledger: LedgerOpt = DEFAULT_LEDGER, json_: JsonOpt = False) -> None:
    """Every batch, newest first."""
    with Ledger.use(ledger, read_only=True) as led:
        df = led.df(
            "select batch_id, kind, quarter, as_of, status, lines, amount_fen, recovery_fen, approved_by "
            "from batches order by created_at desc, batch_id"
        )
    if json_:
        emit_json({"batches": df.to_dicts()})
        return
    for r in df.iter_rows(named=True):
        echo(f"{r['batch_id']:<22} {r['kind']:<10} {r['status']:<9} as-of {r['as_of']}  "
                   f"{r['lines']:>9,} lines {yuan(r['amount_fen']):>18} yuan  {r['approved_by'] or ''}")


@app.command("show")
@errors_as_messages
def show(
    batch_id: Annotated[str, typer.Argument()], ledger: LedgerOpt = DEFAULT_LEDGER, json_: JsonOpt = False
) -> None:
    """One batch's summary."""
    with Ledger.use(ledger, read_only=True) as led:
        b = led.batch(batch_id)
        # 五: which districts approved their list, and which have not yet
        approved = {a["district_code"]: a["approved_by"] for a in led.approvals(batch_id)}
        b["district_approvals"] = {d: approved.get(d) for d in led.districts_of(batch_id)}
        if ahead := as_of_after_today(b["as_of"]):
            b["as_of_after_today"] = ahead
        if b["status"] == "draft" and (earlier := led.earlier_approvals(batch_id)):
            b["approvals_to_carry"] = earlier  # a redraft: `allowance review carry` keeps the unchanged lists'
    b["summary"] = json.loads(b["summary"])
    b.pop("manifest", None)
    # the window's months as YYYY-MM, as every other output writes them (not the ledger's month index)
    b.update({k: fmt(b[k]) for k in ("first_month", "last_month") if b.get(k) is not None})
    b = mask_ids_deep(b)  # a reason in the summary may quote an ID (masked before it is printed as repr)
    if json_:
        emit_json({**b, "lines": b["lines"], "amount_fen": b["amount_fen"]})
        return
    for k, v in b.items():
        echo(f"{k:>16}: {v}")
