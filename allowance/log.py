"""structlog JSON lines on stderr. Key/values only; person ids never appear unmasked."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog


def _masked(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Every text value of a log line with resident IDs masked. The engine logs masked IDs or
    none; this also covers text it passes on, such as a reader's error quoting a row."""
    from allowance.idcard import mask_ids_deep

    return mask_ids_deep(event)  # type: ignore[no-any-return]


def configure(level: str | None = None, default: str = "INFO") -> None:
    name = level or os.environ.get("ALLOWANCE_LOG_LEVEL", default)
    lvl = getattr(logging, name.upper(), logging.INFO)
    structlog.configure(
        processors=[
            _masked,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        # sys.stderr is looked up at each call, not at configuration: a caller that swapped it
        # (a test runner, a daemon redirecting output) never leaves us writing to a closed file.
        logger_factory=lambda *_args: structlog.PrintLogger(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get(**bind: Any) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger().bind(**bind)


# Library use (tests, notebooks) logs warnings only, to stderr; the CLI and jobs reconfigure.
configure(default="WARNING")


class Laps:
    """Stage timings for profiling, logged at DEBUG as one line: `laps.done("draft_stages")`."""

    def __init__(self) -> None:
        import time

        self._clock = time.perf_counter
        self._t = self._clock()
        self.laps: dict[str, float] = {}

    def __call__(self, name: str) -> None:
        now = self._clock()
        self.laps[name] = round(now - self._t, 3)
        self._t = now

    def done(self, event: str, **kw: Any) -> None:
        get().debug(event, **kw, **self.laps)
