"""`allowance`: the command line. One Typer app per command group; all of them thin."""

from __future__ import annotations

import typer

from allowance import log
from allowance.cli import batches, fixtures, ledger, money_back, publish, review, rules, run
from allowance.cli.common import OneLineGroup, run_to_exit

app = typer.Typer(
    cls=OneLineGroup,
    help="Shanghai elderly comprehensive allowance (老年综合津贴) payment engine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(rules.app, name="rules")
app.add_typer(ledger.app, name="ledger")
app.add_typer(run.app, name="run")
app.add_typer(review.app, name="review")
app.add_typer(money_back.bank, name="bank-returns")
app.add_typer(money_back.recoveries, name="recoveries")
app.add_typer(batches.app, name="batches")
app.add_typer(fixtures.app, name="fixtures")
app.command("publish")(publish.publish)


@app.callback()
def _main() -> None:
    # The console is for people; JSON logs are for the scheduled jobs (pipelines/), which log INFO.
    log.configure(default="WARNING")


def main() -> None:
    run_to_exit(app)
