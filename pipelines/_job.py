"""What the scheduled jobs share: JSON logs, exit codes 0 ok / 1 failure / 2 refused."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from allowance import log
from allowance.cli.common import MACHINE_ERRORS, TERMINATED, emit_json, interrupted, machine_error
from allowance.constants import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_REFUSED, EXIT_TERMINATED
from allowance.errors import AllowanceError
from allowance.ledger import Ledger
from allowance.runs import RunResult, publish_batch


def run_job(name: str, body: Callable[[], dict[str, Any]]) -> int:
    """Run a job body; log one JSON line per step; print one JSON result on stdout."""
    log.configure()
    lg = log.get(job=name)
    try:
        result = body()
    except KeyboardInterrupt:
        return _interrupted(name, lg)
    except AllowanceError as e:
        lg.error("job_refused" if e.exit_code == 2 else "job_failed", error=str(e), exit_code=e.exit_code)
        _print({"job": name, "ok": False, "error": str(e)})
        return e.exit_code
    except MACHINE_ERRORS as e:  # a full disk, a read-only folder: said as the CLI says it (an audit)
        error = machine_error(e)  # masked where it is printed and logged
        lg.error("job_failed", error=error, exit_code=EXIT_FAILURE)
        _print({"job": name, "ok": False, "error": error})
        return EXIT_FAILURE
    except (Exception, pl.exceptions.PanicException) as e:  # polars' panic is a BaseException (pyo3)
        if interrupted(e):  # DuckDB's own word for a Ctrl-C
            return _interrupted(name, lg)
        lg.error("job_crashed", error=f"{type(e).__name__}: {e}", trace=traceback.format_exc(limit=5))
        _print({"job": name, "ok": False, "error": f"{type(e).__name__}: {e}"})
        return EXIT_FAILURE
    if result.get("refused"):  # done, but some input was refused (named there): the scheduler must alert
        lg.error("job_refused_in_part", refused=result["refused"], exit_code=EXIT_REFUSED)
        _print({"job": name, "ok": False, **result})
        return EXIT_REFUSED
    lg.info("job_done", **{k: v for k, v in result.items() if isinstance(v, int | str | None) and k != "event"})
    _print({"job": name, "ok": True, **result})
    return EXIT_OK


def _interrupted(name: str, lg: Any) -> int:
    """Ctrl-C: an interruption, not a crash with a trace (an audit); the job's one result says
    so, with SIGINT's status, and a rerun is safe. SIGTERM (a stop, a shutdown) alike, with its
    own status: it ended the job silently, with no result (audit 26C)."""
    if TERMINATED.is_set():
        lg.error("job_interrupted", signal="SIGTERM", exit_code=EXIT_TERMINATED)
        _print({"job": name, "ok": False, "error": "terminated (SIGTERM); running the job again is safe"})
        return EXIT_TERMINATED
    lg.error("job_interrupted", exit_code=EXIT_INTERRUPTED)
    _print({"job": name, "ok": False, "error": "interrupted (Ctrl-C); running the job again is safe"})
    return EXIT_INTERRUPTED


def _print(result: dict[str, Any]) -> None:
    """The job's one JSON result on stdout, as every command's: every ID in it masked value by
    value (an error can quote a row of the extract, a result the reason someone typed)."""
    emit_json(result)
    sys.stdout.flush()


def publish_unless_empty(res: RunResult, publish_as: str, ledger: Path, out: Path) -> dict[str, Any]:
    """`--publish-as`: the job's draft published at once, unless it holds nothing to deliver: no
    payment, no recovery, no cancellation, and nobody on its no-card list who was not on the last
    published one. A job run again after it finished, or a quiet night, published a batch with
    nothing new in it each time (an audit); and a new entrant with no card is followed up from a
    published no-card list, so a night that has one publishes (a second audit). Returns the job's result."""
    s = res.summary
    if not (res.lines or s["recoveries"]["lines"] or s["recoveries_cancelled"]["lines"] or _new_no_card(res, ledger)):
        log.get(batch_id=res.batch_id).info("publish_skipped", why="nothing to pay, recover or cancel")
        return {**res.as_json(), "publish_skipped": "nothing to pay, recover or cancel"}
    # (keeping what the draft's run finished first: an interrupted publication)
    return replace(publish_batch(res.batch_id, publish_as, ledger, out), finished=res.finished).as_json()


def _new_no_card(res: RunResult, ledger: Path) -> bool:
    """Has the draft's no-card list someone the last published batch's list did not name?"""
    if not res.summary["no_card"]["people"]:
        return False
    with Ledger.use(ledger, read_only=True) as led:
        return led.new_no_card(res.batch_id) > 0
