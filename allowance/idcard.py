"""Resident ID numbers (GB 11643-1999): check digit, legacy 15→18 upgrade, masking.

The polars expressions validate a whole column at once; the plain functions serve the
generator and tests.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

WEIGHTS: tuple[int, ...] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"  # index = (sum of weighted digits) mod 11


def check_digit(body17: str) -> str:
    """The 18th character for a 17-digit body."""
    total = sum(int(c) * w for c, w in zip(body17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


def make_id(area: str, birth: dt.date, seq: int) -> str:
    """A valid 18-character ID: 6-digit area of first registration, birth date, 3-digit sequence."""
    body = f"{area}{birth:%Y%m%d}{seq % 1000:03d}"
    return body + check_digit(body)


def upgrade_15(id15: str) -> str:
    """Legacy 15-digit ID (area, YYMMDD, seq; all born 19xx) to its 18-character form."""
    body = id15[:6] + "19" + id15[6:]
    return body + check_digit(body)


def mask(person_id: str | None) -> str:
    """Keep the first 6 and last 4 characters: what logs and consoles may show."""
    if not person_id:
        return ""
    if len(person_id) <= 10:
        return "*" * len(person_id)
    return person_id[:6] + "*" * (len(person_id) - 10) + person_id[-4:]


def mask_expr(col: str | pl.Expr) -> pl.Expr:
    """Vectorised `mask` for console tables."""
    e = pl.col(col) if isinstance(col, str) else col
    n = e.str.len_chars()
    return pl.when(n > 10).then(
        pl.concat_str(e.str.slice(0, 6), pl.lit("*").repeat_by(n - 10).list.join(""), e.str.slice(-4))
    ).otherwise(e)


def normalized_id_expr(col: str = "person_id") -> pl.Expr:
    """Trim, upper-case the check character (`x` → `X`) and upgrade legacy 15-digit IDs."""
    s = pl.col(col).cast(pl.String).str.strip_chars().str.to_uppercase()
    body17 = s.str.slice(0, 6) + pl.lit("19") + s.str.slice(6, 9)
    upgraded = body17 + check_char_expr(body17)
    return pl.when(s.str.contains(r"^\d{15}$")).then(upgraded).otherwise(s)


def check_char_expr(body17: pl.Expr) -> pl.Expr:
    """The check character computed over a column of 17-digit bodies (null where not digits)."""
    total = pl.sum_horizontal(
        [body17.str.slice(i, 1).cast(pl.Int32, strict=False) * w for i, w in enumerate(WEIGHTS)]
    )
    return pl.lit(pl.Series(list(CHECK_CHARS))).gather(total % 11)


def is_legacy_expr(col: str = "person_id") -> pl.Expr:
    return pl.col(col).cast(pl.String).str.strip_chars().str.contains(r"^\d{15}$")


def id_shape_ok_expr(col: str = "person_id") -> pl.Expr:
    """18 characters: 17 digits then a digit or X (after normalisation)."""
    return pl.col(col).str.contains(r"^\d{17}[\dX]$")


def id_checksum_ok_expr(col: str = "person_id") -> pl.Expr:
    c = pl.col(col)
    return check_char_expr(c.str.slice(0, 17)) == c.str.slice(17, 1)


def id_birth_expr(col: str = "person_id") -> pl.Expr:
    """The birth date written inside the ID (null if it is not a real date)."""
    return pl.col(col).str.slice(6, 8).str.to_date("%Y%m%d", strict=False)
