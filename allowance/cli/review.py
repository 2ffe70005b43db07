"""`allowance review …`: district staff hold, reject or release named people (五 资格审定)."""

from __future__ import annotations

from typing import Annotated

import typer

from allowance.cli.common import DEFAULT_LEDGER, JsonOpt, LedgerOpt, emit_json, errors_as_messages
from allowance.idcard import mask
from allowance.ledger import Ledger
from allowance.money import yuan

app = typer.Typer(help="Review a draft: hold, reject or release people.", no_args_is_help=True)

PersonOpt = Annotated[str, typer.Option("--person", help="The person's 18-character resident ID.")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (kept in the ledger).")]
ByOpt = Annotated[str, typer.Option("--by", help="Who decided (kept in the ledger).")]


def _decide(batch_id: str, person: str, action: str, reason: str, by: str, ledger: str, json_: bool) -> None:
    with Ledger.use(ledger) as led:
        b = led.review(batch_id, person.strip().upper(), action, reason, by)
    if json_:
        emit_json({"batch_id": batch_id, "action": action, "person": mask(person), "lines": b["lines"],
                   "amount_fen": b["amount_fen"]})
    else:
        typer.echo(f"{action.lower()} {mask(person)} in {batch_id}: now {b['lines']} payment lines, "
                   f"{yuan(b['amount_fen'])} yuan")


@app.command("hold")
@errors_as_messages
def hold(batch_id: Annotated[str, typer.Argument()], person: PersonOpt, reason: ReasonOpt, by: ByOpt,
         ledger: LedgerOpt = DEFAULT_LEDGER, json_: JsonOpt = False) -> None:
    """Hold a person's payment (pending a check) in this draft and every run until released."""
    _decide(batch_id, person, "HOLD", reason, by, str(ledger), json_)


@app.command("reject")
@errors_as_messages
def reject(batch_id: Annotated[str, typer.Argument()], person: PersonOpt, reason: ReasonOpt, by: ByOpt,
           ledger: LedgerOpt = DEFAULT_LEDGER, json_: JsonOpt = False) -> None:
    """Reject a person as not entitled (资格审定), from this draft on, until released."""
    _decide(batch_id, person, "REJECT", reason, by, str(ledger), json_)


@app.command("release")
@errors_as_messages
def release(batch_id: Annotated[str, typer.Argument(help="The draft the release is recorded against.")],
            person: PersonOpt, reason: ReasonOpt, by: ByOpt,
            ledger: LedgerOpt = DEFAULT_LEDGER, json_: JsonOpt = False) -> None:
    """Lift a hold or rejection; the next run pays what was held, as arrears."""
    _decide(batch_id, person, "RELEASE", reason, by, str(ledger), json_)


@app.command("list")
@errors_as_messages
def list_(batch_id: Annotated[str | None, typer.Argument()] = None, ledger: LedgerOpt = DEFAULT_LEDGER,
          json_: JsonOpt = False) -> None:
    """Every review decision (who, when, why), for one batch or all."""
    with Ledger.use(ledger, read_only=True) as led:
        df = led.decisions(batch_id)
    rows = [{**r, "person_id": mask(r["person_id"])} for r in df.to_dicts()]
    if json_:
        emit_json({"decisions": rows})
        return
    for r in rows:
        typer.echo(f"{r['decided_at']} {r['action']:<8} {r['person_id']} {r['batch_id'] or ''} "
                   f"by {r['decided_by']}: {r['reason']}")
