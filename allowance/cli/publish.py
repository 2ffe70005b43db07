"""`allowance publish`: write a reviewed draft for the bank and record it in the ledger."""

from __future__ import annotations

from typing import Annotated

import polars as pl
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
from allowance.money import yuan
from allowance.runs import publish_batch


def district_table(funding: pl.DataFrame) -> list[str]:
    """Per district: people paid, fen, municipal share, district share (七(二))."""
    rows = [f"{'district':<16}{'people':>10}{'yuan':>18}{'municipal':>18}{'district':>18}"]
    for r in funding.iter_rows(named=True):
        rows.append(
            f"{r['district_code']} {r['district_name']:<8}{r['lines']:>10,}{yuan(r['amount_fen']):>18}"
            f"{yuan(r['municipal_fen']):>18}{yuan(r['district_fen']):>18}"
        )
    t = funding.select(pl.col("lines", "amount_fen", "municipal_fen", "district_fen").sum()).row(0, named=True)
    rows.append(
        f"{'total':<16}{t['lines']:>10,}{yuan(t['amount_fen']):>18}{yuan(t['municipal_fen']):>18}"
        f"{yuan(t['district_fen']):>18}"
    )
    return rows


@errors_as_messages
def publish(
    batch_id: Annotated[str, typer.Argument(help="The draft batch to publish.")],
    approved_by: Annotated[str, typer.Option("--approved-by", help="Who approved it (kept in the ledger).")],
    ledger: LedgerOpt = DEFAULT_LEDGER,
    out: OutOpt = DEFAULT_OUT,
    require_district_approvals: Annotated[bool, typer.Option(
        "--require-district-approvals",
        help="Refuse unless every district in the draft has approved its list (review approve).")] = False,
    rewrite: Annotated[bool, typer.Option(
        "--rewrite", help="Write a published batch's files again after they were taken away (same bytes).")] = False,
    json_: JsonOpt = False,
) -> None:
    """五: publish an approved draft: bank files + ledger entries in one step; publishing twice is a no-op."""
    res = publish_batch(batch_id, approved_by, ledger, out, require_district_approvals, rewrite)
    if json_:
        emit_json(res.as_json())
        return
    if res.taken_away is not None:
        echo(f"{res.batch_id} was published before ({res.lines} payment lines, {yuan(res.amount_fen)} yuan); its files "
             f"were delivered to {res.taken_away} and have been taken away since: nothing written "
             f"(`allowance publish {res.batch_id} --rewrite` writes them again, the same bytes, if the bank asks)")
        return
    # published before this command: a no-op, or its files written again as its manifest lists them
    if before := res.summary.get("already_published") or res.summary.get("files_rewritten"):
        done = (f"nothing paid again, its files are in {res.out_dir}" if "already_published" in res.summary else
                f"its files written to {res.out_dir} as its manifest lists them; nothing paid again")
        other = "" if before["approved_by"] == approved_by else (
            f"; it stands as approved by {before['approved_by']}, not {approved_by}")
        echo(f"{res.batch_id} was published before ({res.lines} payment lines, {yuan(res.amount_fen)} yuan, approved "
             f"by {before['approved_by']} at {before['published_at']}): {done}{other}")
        return
    echo(f"published {res.batch_id}: {res.lines} payment lines, {yuan(res.amount_fen)} yuan")
    if ahead := res.summary.get("as_of_after_today"):
        echo(f"  warning: published as of {ahead['as_of']}, {ahead['days']} day(s) after today (Shanghai): every run "
             "as of an earlier day is now refused")
    if unapproved := res.summary.get("districts_not_approved"):
        echo(f"  note: {len(unapproved)} district(s) had not approved their list (五 资格审定), named in the manifest "
             f"as districts_not_approved: {', '.join(unapproved)}; --require-district-approvals refuses such a draft")
    if later := res.summary.get("later_draft"):
        echo(f"  warning: {later['batch_id']}, a later draft of this run (as of {later['as_of']}), is still a draft: "
             "what its extract says since (a death, a move) is paid or recovered by the next run")
    assert res.out_dir is not None
    for line in district_table(pl.read_parquet(res.out_dir / "funding.parquet")):
        echo("  " + line)
    echo(f"  files: {res.out_dir} (manifest.json lists every file with its SHA-256)")
