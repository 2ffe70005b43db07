"""Months as integer indexes (year*12 + month-1) and quarters.

SPEC §1: months are calendar months, stored as the date of their first day. Inside the engine
a month is an int so that ages, windows and ranges are plain integer arithmetic.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import polars as pl

from allowance.errors import UserError

Month = int | dt.date
SHANGHAI = ZoneInfo("Asia/Shanghai")


def month_index(d: Month) -> int:
    if isinstance(d, int):
        return d
    return d.year * 12 + d.month - 1


def month_start(m: Month) -> dt.date:
    mi = month_index(m)
    return dt.date(mi // 12, mi % 12 + 1, 1)


def month_end(m: Month) -> dt.date:
    return month_start(month_index(m) + 1) - dt.timedelta(days=1)


def fmt(m: Month) -> str:
    return f"{month_start(m):%Y-%m}"


def _plausible_year(year: int, what: str) -> None:
    """A month or quarter given by hand lies in 1900-2999: the scheme began in 2016, and year 0
    had no date at all (audit 31B: `ledger open --opening-month 0000-01` ended in an internal error)."""
    if not 1900 <= year <= 2999:
        raise UserError(f"{what} is outside the years 1900 to 2999")


def parse_month(text: str) -> int:
    """`YYYY-MM` → month index, or a one-line error."""
    m = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise UserError(f"month {text!r} is not of the form YYYY-MM (e.g. 2025-07)")
    _plausible_year(int(m.group(1)), f"month {text!r}")
    return int(m.group(1)) * 12 + int(m.group(2)) - 1


def parse_quarter(text: str) -> tuple[int, int]:
    """`2025Q3` → (first month index, last month index)."""
    m = re.fullmatch(r"(\d{4})[Qq]([1-4])", text.strip())
    if not m:
        raise UserError(f"quarter {text!r} is not of the form YYYYQn (e.g. 2025Q3)")
    _plausible_year(int(m.group(1)), f"quarter {text!r}")
    first = int(m.group(1)) * 12 + (int(m.group(2)) - 1) * 3
    return first, first + 2


def quarter_label(mi: int) -> str:
    return f"{mi // 12}Q{(mi % 12) // 3 + 1}"


def parse_date(text: str, what: str = "date") -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise UserError(f"{what} {text!r} is not a date of the form YYYY-MM-DD") from None


def today_shanghai() -> dt.date:
    """SPEC §4: --as-of defaults to today's date in Asia/Shanghai."""
    return dt.datetime.now(SHANGHAI).date()


def as_of_or_today(as_of: str | None) -> dt.date:
    """An `--as-of` option: the date given, or today (Shanghai) when none is; an empty one is not a
    date (audit 31B: a script's unset variable drafted a quarter as of today)."""
    return today_shanghai() if as_of is None else parse_date(as_of, "--as-of")


def month_index_expr(col: str | pl.Expr) -> pl.Expr:
    e = pl.col(col) if isinstance(col, str) else col
    return (e.dt.year().cast(pl.Int32) * 12 + e.dt.month().cast(pl.Int32) - 1).cast(pl.Int32)


def month_date_expr(col: str | pl.Expr) -> pl.Expr:
    """Month index → Date of its first day."""
    e = pl.col(col) if isinstance(col, str) else col
    return pl.date(e // 12, e % 12 + 1, 1)


def month_date_in(col: str | pl.Expr, first: int, last: int) -> pl.Expr:
    """month_date_expr for a column whose months all lie in first..last (a window): a gather
    from the window's own dates, 0.025 s for 4.4 million lines against pl.date's 0.2 s. A month
    outside the range is an error (out of bounds), never a wrong date."""
    e = pl.col(col) if isinstance(col, str) else col
    dates = pl.Series([month_start(m) for m in range(first, last + 1)], dtype=pl.Date)
    return pl.lit(dates).gather(e - first)
