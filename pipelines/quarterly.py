"""The quarterly job (四 按季度预拨): draft the quarter for district review; publish on approval.

Scheduled early in January, April, July and October (see README); staff then review the
draft and publish it with `allowance publish BATCH --approved-by NAME`, or this job is run
again with --publish-as once approval is recorded elsewhere.

    python -m pipelines.quarterly --registry /data/extract.parquet [--quarter 2025Q3] [--as-of DATE]
        [--ledger var/ledger.duckdb] [--out out] [--publish-as NAME] [--force --reason TEXT]

A tripped circuit breaker (a shrunken extract, too many stops) refuses the draft (exit 2) unless
overridden with --force and a reason, as the nightly job and `allowance run` allow.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from allowance import registry, rules
from allowance.cli.common import run_command
from allowance.months import as_of_or_today, month_index, parse_quarter, quarter_label
from allowance.runs import DEFAULT_MAX_SHRINK_SHARE, DEFAULT_MAX_STOP_SHARE, Breakers, draft_run
from pipelines._job import publish_unless_empty, run_job


def main(
    registry_path: Annotated[Path, typer.Option("--registry", help="Tonight's registry extract.")],
    quarter: Annotated[str | None, typer.Option(help="Quarter, default: the quarter of --as-of.")] = None,
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
        q = parse_quarter(quarter or quarter_label(month_index(day)))
        # with its change report, as the nightly job's and `allowance run quarterly`'s (district staff review from it)
        br = Breakers(max_stop_share, max_shrink_share, force, reason)
        res = draft_run("quarterly", registry_path, ledger, rules.load(rules_path), day, q, max_quarantine_share,
                        br, out)
        return publish_unless_empty(res, publish_as, ledger, out) if publish_as else res.as_json()

    raise typer.Exit(run_job("quarterly", body))


if __name__ == "__main__":
    os.environ.setdefault("ALLOWANCE_LOG_LEVEL", "INFO")
    run_command(main)
