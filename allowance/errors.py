"""Errors a user or an input can cause. Each carries its exit code; the CLI prints one line."""

from __future__ import annotations

from allowance.constants import EXIT_FAILURE, EXIT_REFUSED


class AllowanceError(Exception):
    """Base of every error the engine expects; `str(e)` is the whole message for the user."""

    exit_code = EXIT_FAILURE


class UserError(AllowanceError):
    """A bad option, a missing file, an unknown batch: the user can fix it."""

    exit_code = EXIT_REFUSED


class RulesError(UserError):
    """A rules file that does not validate, or a month no version covers."""


class InputError(UserError):
    """An extract or return file that cannot be read at all."""


class LedgerError(UserError):
    """The ledger is not opened, already opened, busy, or does not know a batch."""


class LedgerBusy(LedgerError):
    """Another run holds the ledger: nothing is wrong with the input, try again later."""


class RefusedError(AllowanceError):
    """A safety check refused the run (quarantine share, mass stops, failed output checks)."""

    exit_code = EXIT_REFUSED


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (a library's can run to a page), or its type."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def os_reason(e: OSError) -> str:
    """What the system said of a failed file operation ("No space left on device"), or its type."""
    return e.strerror or type(e).__name__


class Terminated(KeyboardInterrupt):
    """SIGTERM (`systemctl stop`, a unit's stop timeout, a shutdown) while a command or job is at
    work, ended as a Ctrl-C is: what was not committed is undone (a staged publication's folder
    removed) and a job prints its result; exit 143. It ended them silently, with nothing undone
    and no result (audit 26C). Raised by the handler cli.common.run_to_exit installs."""
