"""structlog JSON lines on stderr. Key/values only; person ids never appear unmasked."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog


def configure(level: str | None = None, default: str = "INFO") -> None:
    name = level or os.environ.get("ALLOWANCE_LOG_LEVEL", default)
    lvl = getattr(logging, name.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get(**bind: Any) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger().bind(**bind)


# Library use (tests, notebooks) logs warnings only, to stderr; the CLI and jobs reconfigure.
configure(default="WARNING")
