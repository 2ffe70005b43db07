"""Resident ID numbers (GB 11643-1999): check digit, legacy 15→18 upgrade, masking.

The polars expressions validate a whole column at once; the plain functions serve the
generator and tests.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
import pyarrow as pa

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


def mask(person_id: str | None) -> str:
    """Keep the first 6 and last 4 characters: what logs and consoles may show."""
    if not person_id:
        return ""
    if len(person_id) <= 10:
        return "*" * len(person_id)
    return person_id[:6] + "*" * (len(person_id) - 10) + person_id[-4:]


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


def id_shape_ok_expr(col: str = "person_id") -> pl.Expr:
    """18 characters: 17 digits then a digit or X (after normalisation)."""
    return pl.col(col).str.contains(r"^\d{17}[\dX]$")


def id_checksum_ok_expr(col: str = "person_id") -> pl.Expr:
    c = pl.col(col)
    return check_char_expr(c.str.slice(0, 17)) == c.str.slice(17, 1)


def id_birth_expr(col: str = "person_id") -> pl.Expr:
    """The birth date written inside the ID (null if it is not a real date)."""
    return pl.col(col).str.slice(6, 8).str.to_date("%Y%m%d", strict=False)


_W = np.array(WEIGHTS, dtype=np.int32)
_POW10_9 = 10 ** np.arange(8, -1, -1, dtype=np.int32)  # the first 9 digits, then the next 8
_POW10_8 = 10 ** np.arange(7, -1, -1, dtype=np.int32)
_CHECK = np.frombuffer(CHECK_CHARS.encode(), dtype=np.uint8)
_MDAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int32)
_CHUNK = 1 << 20  # rows per block: its temporaries stay small enough to be reused, not re-faulted


def _parse_block(m: np.ndarray) -> tuple[np.ndarray, ...]:
    """One block of IDs as an (rows, 18) byte matrix → shape, checksum, date checks, date parts, key."""
    d = np.ascontiguousarray(m.T) - np.uint8(48)  # (18, rows); bytes below '0' wrap above 9
    body = d[:17]
    digits_ok = (body <= 9).all(axis=0)
    b32 = body.astype(np.int32)
    total = _W @ b32  # the weighted digit sum of GB 11643, per row
    last = m[:, 17]
    shape_ok = digits_ok & ((d[17] <= 9) | (last == ord("X")))
    # The whole 18 characters as one integer (X = 10): a duplicate is the same ID to the letter,
    # so a row with a mistyped check character never takes the real person down with it.
    # Two int32 halves (each below 10^9) instead of an int64 copy of all 17 digit rows.
    high, low = (_POW10_9 @ b32[:9]).astype(np.int64), (_POW10_8 @ b32[9:]).astype(np.int64)
    key = (high * 100_000_000 + low) * 11 + np.where(last == ord("X"), 10, d[17].astype(np.int64))
    checksum_ok = shape_ok & (_CHECK[total % 11] == last)
    y = b32[6] * 1000 + b32[7] * 100 + b32[8] * 10 + b32[9]
    mo = b32[10] * 10 + b32[11]
    dd = b32[12] * 10 + b32[13]
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    mdays = _MDAYS[np.clip(mo, 0, 12)] + (leap & (mo == 2))
    date_ok = shape_ok & (y >= 1800) & (mo >= 1) & (mo <= 12) & (dd >= 1) & (dd <= mdays)
    return shape_ok, checksum_ok, date_ok, _days_from_civil(y, mo, dd), key


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm), as int32.

    Meaningful only where the date is real; elsewhere the inputs are clipped so nothing overflows.
    """
    y = np.clip(y, 0, 9999) - (m <= 2)
    m = np.clip(m, 1, 12)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((m + 9) % 12) + 2) // 5 + np.clip(d, 1, 31) - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def parse_ids(ids: pl.Series) -> pl.DataFrame:
    """Every check on normalised 18-character IDs at once, over the raw bytes (numpy, no loop over people).

    Returns, per input row: `id_shape_ok` (17 digits + digit/X), `id_checksum_ok`, `id_date_ok`
    when the birth date written inside is a real date and `id_birth` that date (null otherwise),
    and `id_key`, all 18 characters as one int64 (a cheap, exact key for finding duplicates). Rows
    that are null or not 18 bytes long have shape_ok false and nulls elsewhere.

    Rows that are not 18 bytes long (a few per thousand) are replaced by a placeholder first, so
    the column's bytes are one (rows, 18) matrix in row order: no filtered copy, and no scatter of
    the results back to their rows. The matrix is taken in blocks of a million IDs (two threads;
    numpy releases the GIL), each writing its rows of the results in place: the whole column at
    once made every temporary a fresh 60–120 MB allocation, and page faults cost more than the
    arithmetic.
    """
    n = ids.len()
    is18 = ids.str.len_bytes().fill_null(0) == 18
    whole = ids if is18.all() else pl.select(pl.when(is18).then(ids).otherwise(pl.lit("0" * 18))).to_series()
    arr = whole.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    offs = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    m = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offs[0] : offs[-1]].reshape(-1, 18)
    names = ("id_shape_ok", "id_checksum_ok", "id_date_ok", "id_birth", "id_key")
    dtypes = (pl.Boolean, pl.Boolean, pl.Boolean, pl.Int32, pl.Int64)
    out = [np.empty(n, dtype=np.bool_ if j < 3 else (np.int32 if j == 3 else np.int64)) for j in range(5)]

    def block(i: int) -> None:
        for o, r in zip(out, _parse_block(m[i : i + _CHUNK]), strict=True):
            o[i : i + _CHUNK] = r

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(block, range(0, n, _CHUNK)))
    if not is18.all():
        for j in range(3):
            out[j] &= is18.to_numpy()  # a placeholder is no ID
    return pl.DataFrame({k: pl.Series(c, dtype=t) for k, c, t in zip(names, out, dtypes, strict=True)}).select(
        *names[:3],
        pl.when(pl.col("id_date_ok")).then(pl.col("id_birth").cast(pl.Date)).alias("id_birth"),
        pl.when(pl.col("id_shape_ok")).then(pl.col("id_key")).alias("id_key"),
    )


def duplicated(keys: pl.Series) -> pl.Series:
    """True where a non-null integer key occurs more than once: sort once, then look up the few
    repeated keys (hashing 15 million keys costs several times the sort)."""
    k = np.sort(keys.drop_nulls().to_numpy())
    repeated = np.unique(k[1:][k[1:] == k[:-1]])
    return keys.is_in(pl.Series(repeated, dtype=keys.dtype).implode()).fill_null(False)


def order_key_expr(col: str | pl.Expr = "person_id") -> pl.Expr:
    """An int64 that sorts normalised 18-character IDs exactly as their text sorts (X after 9),
    and is the same exact key as `parse_ids`' id_key (null for anything else).

    Sorting millions of lines by this instead of by the string is what keeps line ids cheap.
    """
    c = pl.col(col) if isinstance(col, str) else col
    last = c.str.slice(17, 1)
    key = c.str.slice(0, 17).str.to_integer(strict=False) * 11 + pl.when(last == "X").then(10).otherwise(
        last.str.to_integer(strict=False)
    )
    # Null for anything but 18 bytes starting with a digit (no sign), so two different texts
    # never share a key: "+123…" and "0123…" would parse to the same number.
    return pl.when((c.str.len_bytes() == 18) & c.str.slice(0, 1).is_in(list("0123456789"))).then(key)


def id_from_key_expr(col: str | pl.Expr = "_k") -> pl.Expr:
    """The 18-character ID an `order_key_expr` key was made from (the key is exact: 17 digits × 11
    + the check character, X = 10). Building the text from the integer is cheaper than carrying
    the text through a join of millions of rows."""
    k = pl.col(col) if isinstance(col, str) else col
    check = k % 11
    return (k // 11).cast(pl.String).str.zfill(17) + pl.when(check == 10).then(pl.lit("X")).otherwise(
        check.cast(pl.String))

