"""`allowance rules …`: validate the tier tables and show the one in force."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from allowance.cli.common import DEFAULT_RULES, RulesOpt, echo, errors_as_messages, load_rules
from allowance.money import yuan
from allowance.months import parse_month

app = typer.Typer(help="The rules tables (rules/*.yaml).", no_args_is_help=True)


@app.command("check")
@errors_as_messages
def check(path: Annotated[Path | None, typer.Argument(help="Rules file or folder.")] = None,
          rules: RulesOpt = DEFAULT_RULES) -> None:
    """Validate rules YAML: bands contiguous, versions not overlapping, every value cited, fen integer."""
    r = load_rules(path or rules)
    for v in r.versions:
        echo(f"ok  {v.id}  {v.source}  {v.effective_from} … {v.effective_to or 'open'}  "
                   f"{len(v.bands)} bands")
    for first, last in r.gaps():  # allowed (SPEC §1.4: an error when asked for), but usually a typo
        echo(f"note: no version covers {first:%Y-%m} … {last:%Y-%m}: a run due in those months is refused")
    echo(f"tables sha256 {r.sha256()} (each batch's manifest names the tables it was drafted under)")


@app.command("show")
@errors_as_messages
def show(month: Annotated[str, typer.Option(help="Month YYYY-MM.")], rules: RulesOpt = DEFAULT_RULES) -> None:
    """Print the table in force in a month."""
    v = load_rules(rules).at(parse_month(month))
    echo(f"{month}: {v.id} — {v.source} ({v.effective_from} … {v.effective_to or 'open'})")
    for b in v.sorted_bands:
        ages = f"{b.min_age}–{b.max_age}" if b.max_age is not None else f"{b.min_age}+"
        echo(f"  {ages:>7}  {yuan(b.monthly_fen):>8} yuan  {b.monthly_fen:>6} fen   {b.cite}")
    echo(f"  paid in months {v.disbursement_months.value}, day {v.payment_day.value}; "
               f"funding municipal:district = {v.funding.municipal}:{v.funding.district}; "
               f"retroactive window {v.retro_months.value} months; channels {', '.join(v.channels.value)}; "
               f"exit month paid: {v.exit_month_paid.value}")
