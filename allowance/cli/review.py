"""`allowance review …`: district staff hold, reject or release named people (五 资格审定)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import polars as pl
import typer

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
from allowance.errors import InputError, UserError, os_reason
from allowance.idcard import mask
from allowance.ledger import Ledger
from allowance.money import yuan
from allowance.months import fmt, parse_month
from allowance.outputs import write_file

app = typer.Typer(help="Review a draft: hold, reject or release people; approve a district's list.",
                  no_args_is_help=True)

PersonOpt = Annotated[list[str] | None, typer.Option(
    "--person", help="The person's 18-character resident ID; given again, one more person each time.")]
PersonsFileOpt = Annotated[Path | None, typer.Option(
    "--persons-file", help="A text file of resident IDs, one per line (blank lines and # comments skipped): "
    "one decision each, one rewrite of the batch, all or nothing.")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (kept in the ledger).")]
ByOpt = Annotated[str, typer.Option("--by", help="Who decided (kept in the ledger).")]


def _people(person: list[str] | None, persons_file: Path | None) -> list[str]:
    """The IDs named by --person (each time it is given: audit 27F, a second --person replaced the
    first without a word) or --persons-file (exactly one of the two), trimmed and upper-cased."""
    if (not person) == (persons_file is None):
        raise UserError("name the people with either --person ID or --persons-file FILE (--person once per person)")
    if person:
        return list(dict.fromkeys(p.strip().upper() for p in person))
    assert persons_file is not None
    try:
        text = persons_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{persons_file}: cannot read the list of people ({type(e).__name__})") from None
    ids = [ln.strip().upper() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not ids:
        raise InputError(f"{persons_file}: names no one (one resident ID per line)")
    return list(dict.fromkeys(ids))  # each person once, in the file's order


_DONE = {"HOLD": "held", "REJECT": "rejected", "RELEASE": "released on this draft"}


def _decide(batch_id: str, people: list[str], action: str, reason: str, by: str, ledger: str, json_: bool,
            from_month: int | None = None, rules: Path | None = None) -> None:
    tables = load_rules(rules) if rules is not None and from_month is not None else None
    with Ledger.use(ledger) as led:
        b = led.review(batch_id, people, action, reason, by, from_month, tables)
        stale = led.draft_is_stale(batch_id)
    people = b["people"]  # as normalised: one person named in two forms is one decision
    who = mask(people[0]) if len(people) == 1 else f"{len(people)} people"
    if json_:
        named = {"person": mask(people[0])} if len(people) == 1 else {"people": len(people)}
        emit_json({"batch_id": batch_id, "action": action, **named, "lines": b["lines"], "amount_fen": b["amount_fen"],
                   "recovered_next_run": b["recovered_next_run"], "approvals_withdrawn": b["approvals_withdrawn"],
                   **({"kept_before_from": b["kept_before"]}
                      if from_month is not None or b["kept_before"] is not None else {}),
                   "already": len(b["already"]), "stale": stale})
    elif len(b["already"]) == len(people):
        echo(f"{who} already {_DONE[action]}: nothing recorded")
    else:
        echo(f"{action.lower()} {who} in {batch_id}: now {b['lines']} payment lines, "
                   f"{yuan(b['amount_fen'])} yuan")
        if b["already"]:
            echo(f"{len(b['already'])} of them already {_DONE[action]}: nothing recorded for them")
        if b["approvals_withdrawn"]:
            echo(f"approval of the list withdrawn for {', '.join(b['approvals_withdrawn'])} (it changed): "
                       f"allowance review approve {batch_id} --district CODE --by NAME")
        if b["recovered_next_run"]:
            since = f" from {fmt(from_month)}" if from_month is not None else ""
            echo(f"{b['recovered_next_run']} of them were paid for months of this draft's window{since}: the next "
                 "run (tonight's supplement) lists those months as recoveries (cause NOT_ENTITLED, or what the "
                 "extract says then: a death, a move out, an ID gone)")
        if from_month is not None:
            echo(f"the months before {fmt(from_month)} stay theirs: {_kept(b['kept_before'])}")
        elif b["kept_before"] is not None:  # a plain rejection: older months' recoveries stay cancelled
            echo(f"the months before what this draft pays them stay theirs: {_kept(b['kept_before'])}")
        if stale:
            echo(STALE.format(batch_id=batch_id))


def _kept(k: dict | None) -> str:
    """What a rejection from a month leaves of theirs in the draft, by kind (Ledger.review's kept_before)."""
    if not k:
        return "this draft has nothing of theirs before it"
    said = [f"{n['lines']} {what} line(s) ({yuan(n['amount_fen'])} yuan)"
            for what, n in (("payment", k["payments"]), ("recovery", k["recoveries"])) if n["lines"]]
    if k["recoveries_cancelled_fen"]:
        said.append(f"{yuan(k['recoveries_cancelled_fen'])} yuan of their recoveries cancelled")
    return f"this draft keeps {', '.join(said)}" if said else "this draft has nothing of theirs before it"


# An audit: a release made the draft it was recorded against stale, and the release's and the
# approvals' messages read as if it were still the one to publish, until publish refused it.
STALE = ("{batch_id} can no longer be published: the ledger changed since it was drafted (a release, a "
         "publication, a bank return); run the draft again and review the new batch, which pays what is due now")


@app.command("hold")
@errors_as_messages
def hold(batch_id: Annotated[str, typer.Argument()], reason: ReasonOpt, by: ByOpt, person: PersonOpt = None,
         persons_file: PersonsFileOpt = None, ledger: LedgerOpt = DEFAULT_LEDGER, json_: JsonOpt = False) -> None:
    """Hold people's payments (pending a check) in this draft and every run until released."""
    _decide(batch_id, _people(person, persons_file), "HOLD", reason, by, str(ledger), json_)


@app.command("reject")
@errors_as_messages
def reject(batch_id: Annotated[str, typer.Argument()], reason: ReasonOpt, by: ByOpt, person: PersonOpt = None,
           persons_file: PersonsFileOpt = None, ledger: LedgerOpt = DEFAULT_LEDGER, json_: JsonOpt = False,
           from_: Annotated[str | None, typer.Option(
               "--from", help="YYYY-MM: not entitled from this month of the draft's window on (default: its "
               "first month); the draft keeps the months before.")] = None,
           rules: RulesOpt = DEFAULT_RULES) -> None:
    """Reject people as not entitled (资格审定), from this draft on, until released."""
    from_month = parse_month(from_) if from_ is not None else None
    _decide(batch_id, _people(person, persons_file), "REJECT", reason, by, str(ledger), json_, from_month, rules)


@app.command("release")
@errors_as_messages
def release(batch_id: Annotated[str, typer.Argument(help="The draft the release is recorded against.")],
            reason: ReasonOpt, by: ByOpt, person: PersonOpt = None, persons_file: PersonsFileOpt = None,
            ledger: LedgerOpt = DEFAULT_LEDGER, json_: JsonOpt = False) -> None:
    """Lift a hold or rejection; the next run pays what was held, as arrears."""
    _decide(batch_id, _people(person, persons_file), "RELEASE", reason, by, str(ledger), json_)


@app.command("approve")
@errors_as_messages
def approve(batch_id: Annotated[str, typer.Argument()], by: ByOpt,
            district: Annotated[list[str], typer.Option("--district", help="A district code (repeat for several).")],
            note: Annotated[str | None, typer.Option("--note", help="Anything to keep with the approval.")] = None,
            ledger: LedgerOpt = DEFAULT_LEDGER, json_: JsonOpt = False) -> None:
    """A district approves its list in this draft (五 区民政部门资格审定), after its holds and rejections."""
    with Ledger.use(ledger) as led:
        done = led.approve(batch_id, district, by, note)
        left = [d for d in led.districts_of(batch_id) if d not in {a["district_code"] for a in done}]
        b = led.batch(batch_id)
        stale = led.draft_is_stale(batch_id)
    if json_:  # the fields every batch command's JSON has (README), then the approvals
        emit_json({"batch_id": batch_id, "status": b["status"], "lines": b["lines"], "amount_fen": b["amount_fen"],
                   "approved": [a["district_code"] for a in done], "not_yet": left, "stale": stale})
        return
    echo(f"{batch_id}: {len(done)} district(s) approved their list; "
               + (f"not yet: {', '.join(left)}" if left else "every district has approved"))
    if stale:
        echo(STALE.format(batch_id=batch_id))


@app.command("carry")
@errors_as_messages
def carry(batch_id: Annotated[str, typer.Argument(help="The new draft (a redraft).")], by: ByOpt,
          from_batch: Annotated[str, typer.Option("--from", help="The earlier draft of the same run.")],
          ledger: LedgerOpt = DEFAULT_LEDGER, out: OutOpt = DEFAULT_OUT, json_: JsonOpt = False) -> None:
    """Keep an earlier draft's district approvals in its redraft wherever a district's list is unchanged."""
    with Ledger.use(ledger) as led:
        got = led.carry_approvals(batch_id, from_batch, by, with_changes=True)
        b = led.batch(batch_id)
        stale = led.draft_is_stale(batch_id)
    changes: pl.DataFrame = got.pop("changes")
    # What changed in the lists to approve again, person by person, beside the change reports (a
    # districts' working list: whole IDs, as theirs): those districts review only that.
    people = dict(changes.group_by("district_code").agg(pl.col("person_id").n_unique()).sort("district_code")
                  .iter_rows())
    where = None
    if changes.height:
        try:
            where = write_file(changes, out / "reports" / f"{batch_id}-since-{from_batch}.parquet")
        except OSError as e:  # the carry is recorded: only the listing could not be written
            raise InputError(f"{out}: cannot write what changed ({os_reason(e)}); {len(got['carried'])} "
                             "approval(s) carried all the same: fix the folder and run again for the list") from None
    if json_:  # the fields every batch command's JSON has (README), then what was carried
        emit_json({"batch_id": batch_id, "status": b["status"], "lines": b["lines"], "amount_fen": b["amount_fen"],
                   "from": from_batch, **got, "changed_people": people,
                   "changes_file": str(where) if where else None, "stale": stale})
        return
    echo(f"{batch_id}: {len(got['carried'])} district approval(s) carried from {from_batch}, their lists "
         f"unchanged" + (f": {', '.join(got['carried'])}" if got["carried"] else ""))
    if got["changed"]:
        echo("list changed since approved, approve again: "
             + ", ".join(f"{d} ({people.get(d, 0)} people)" for d in got["changed"]))
    if got["emptied"]:
        echo("approved before, nothing left in this draft to approve: "
             + ", ".join(f"{d} (gone from its list: {people.get(d, 0)} person(s))" for d in got["emptied"]))
    if where:
        echo(f"  who changed, both sides (approved, now): {where}")
    if got["not_yet"]:
        echo(f"not approved in {from_batch} either: {', '.join(got['not_yet'])}")
    if stale:
        echo(STALE.format(batch_id=batch_id))


@app.command("list")
@errors_as_messages
def list_(batch_id: Annotated[str | None, typer.Argument()] = None, ledger: LedgerOpt = DEFAULT_LEDGER,
          json_: JsonOpt = False) -> None:
    """Every review decision (who, when, why), for one batch or all."""
    with Ledger.use(ledger, read_only=True) as led:
        if batch_id is not None:
            led.batch(batch_id)  # an unknown (mistyped) batch is refused, not listed as empty (audit 26G)
        df = led.decisions(batch_id)
    # months as YYYY-MM (audit 26D: a rejection's --from was shown nowhere, and as a month index in JSON)
    rows = [{**r, "person_id": mask(r["person_id"]),
             **{k: fmt(r[k]) if r[k] else None for k in ("from_month", "to_month")}}
            for r in df.to_dicts()]
    if json_:
        emit_json({"decisions": rows})
        return
    for r in rows:
        since = f" from {r['from_month']}" if r["action"] in ("HOLD", "REJECT") and r["from_month"] else ""
        echo(f"{r['decided_at']} {r['action']:<8} {r['person_id']}{since} {r['batch_id'] or ''} "
                   f"by {r['decided_by']}: {r['reason']}")
