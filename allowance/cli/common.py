"""What every command shares: default paths, the error boundary, JSON output."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import duckdb
import polars as pl
import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError  # typer 0.29 vendors click
from typer.core import TyperCommand, TyperGroup

from allowance import rules as rules_mod
from allowance.constants import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_TERMINATED
from allowance.errors import AllowanceError, Terminated, first_line, os_reason
from allowance.idcard import mask_ids_deep, mask_ids_in

F = TypeVar("F", bound=Callable[..., Any])

LedgerOpt = Annotated[
    Path,
    typer.Option("--ledger", envvar="ALLOWANCE_LEDGER", help="Ledger file ($ALLOWANCE_LEDGER).", show_default=True),
]
OutOpt = Annotated[
    Path, typer.Option("--out", envvar="ALLOWANCE_OUT", help="Output folder ($ALLOWANCE_OUT).", show_default=True)
]
RulesOpt = Annotated[
    Path,
    typer.Option("--rules", envvar="ALLOWANCE_RULES", help="Rules file or folder ($ALLOWANCE_RULES).",
                 show_default=True),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout.")]

DEFAULT_LEDGER = Path("var/ledger.duckdb")
DEFAULT_OUT = Path("out")
DEFAULT_RULES = rules_mod.DEFAULT_RULES_DIR


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {mask_ids_in(message)}", err=True)
    return typer.Exit(code=code)


# The machine's, not a bug: a full disk, a read-only folder (met by the ledger, a commit that could
# not write its WAL is a TransactionException).
MACHINE_ERRORS = (OSError, duckdb.IOException, duckdb.TransactionException)


def machine_error(e: BaseException) -> str:
    """One of MACHINE_ERRORS as the one line a user acts on (the CLI's and the jobs' alike)."""
    if isinstance(e, OSError):
        what = (f"{e.filename}: " if e.filename else "") + os_reason(e)
    else:
        what = f"the ledger could not be written ({first_line(e)})"
    return f"{what}; free the space or fix the folder, then run again (a rerun is safe)"


def interrupted(e: BaseException) -> bool:
    """Is `e` a Ctrl-C: Python's, DuckDB's own inside a query, or the RuntimeError DuckDB raises
    when one lands as a query is being written (an audit: 'Query interrupted', an internal error)?"""
    return isinstance(e, KeyboardInterrupt | duckdb.InterruptException) or (
        isinstance(e, RuntimeError) and str(e).strip() == "Query interrupted")


def _aborted() -> typer.Exit:
    """Ctrl-C: one word and SIGINT's status, as while the engine loads (allowance/__init__).
    typer ended a command with 130 and nothing said, and DuckDB's own exceptions for it read as
    internal errors (an audit). Every command is safe to run again. SIGTERM (Terminated) alike,
    with its own word and status."""
    if TERMINATED.is_set():
        typer.echo("Terminated (SIGTERM): nothing it had not committed was kept; running it again is safe", err=True)
        return typer.Exit(EXIT_TERMINATED)
    typer.echo("Aborted!", err=True)
    return typer.Exit(EXIT_INTERRUPTED)


# Set by SIGTERM's handler: DuckDB turns the exception raised inside a query into its own.
TERMINATED = threading.Event()


def _terminate(signum: int, frame: object) -> None:
    TERMINATED.set()
    raise Terminated()


def errors_as_messages(fn: F) -> F:
    """The error boundary: a domain error is one line on stderr and its exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AllowanceError as e:
            raise fail(str(e), e.exit_code) from None
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            raise _aborted() from None
        except BrokenPipeError:  # the reader stopped early (`| head`): not an error of ours
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except MACHINE_ERRORS as e:
            raise fail(machine_error(e), EXIT_FAILURE) from None
        # a bug, not a user mistake: still one line, trace on demand. polars' panic is a
        # BaseException (pyo3), which `except Exception` let through as a page of trace (an audit)
        except (Exception, pl.exceptions.PanicException) as e:
            if interrupted(e):  # DuckDB's own word for a Ctrl-C
                raise _aborted() from None
            if os.environ.get("ALLOWANCE_DEBUG"):
                traceback.print_exc(file=sys.stderr)
            raise fail(f"internal error: {type(e).__name__}: {first_line(e)} (set ALLOWANCE_DEBUG=1 for details)",
                       EXIT_FAILURE) from None

    return wrapper  # type: ignore[return-value]


class _OneLineUsageErrors:
    """`main` of a Typer command or group: a mistyped command, a missing or bad option is one
    `error:` line on stderr and exit code 2, like every other user error, instead of Typer's usage
    box. `--help`, and a command group run with nothing after it, still print the help."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        except NoArgsIsHelpError:
            return super().main(*args, **kwargs)  # type: ignore[misc]  # the help, as Typer shows it
        except ClickException as e:
            ctx = getattr(e, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            typer.echo(f"error: {mask_ids_in(e.format_message())}{hint}", err=True)
            sys.exit(e.exit_code)
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(EXIT_FAILURE)
        # Not standalone, an Exit comes back as its code; a command that ended normally, as None.
        sys.exit(rv if isinstance(rv, int) else 0)


class OneLineGroup(_OneLineUsageErrors, TyperGroup):
    """The `allowance` command group (see _OneLineUsageErrors)."""


class OneLineCommand(_OneLineUsageErrors, TyperCommand):
    """A scheduled job's single command (see _OneLineUsageErrors)."""


def run_to_exit(app: Callable[[], Any]) -> None:
    """Run a command line to its exit. Once it has said its result and its exit code, a Ctrl-C or
    a SIGTERM while the interpreter shuts down (the ledger closing, threads joining) is ignored: it
    made a job that had printed `"ok": true` exit 130 without a word (an audit), its work done."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as a Ctrl-C: its exit code stands (audit 26D)


def run_command(fn: Callable[..., Any]) -> None:
    """`typer.run(fn)` with one-line usage errors: how the scheduled jobs start."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command(cls=OneLineCommand)(fn)
    run_to_exit(app)


def echo(text: str) -> None:
    """A line on stdout, every resident ID in it masked: what a command prints may quote text
    that people typed (a review's or an override's reason), and only bank files carry IDs whole."""
    typer.echo(mask_ids_in(text))


def emit_json(obj: dict[str, Any]) -> None:
    # masked value by value: in the JSON text an ID after a `\n` no longer stands alone
    typer.echo(json.dumps(mask_ids_deep(obj), ensure_ascii=False, default=str))


def load_rules(path: Path) -> rules_mod.Rules:
    return rules_mod.load(path)
