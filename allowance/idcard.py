"""Resident ID numbers (GB 11643-1999): check digit, legacy 15→18 upgrade, masking.

The polars expressions validate a whole column at once; the plain functions serve the
generator and tests.
"""

from __future__ import annotations

import bisect
import datetime as dt
import re
from pathlib import PurePath
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from allowance.bytescan import over_rows

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


# A resident ID in free text: 18 characters (17 digits and a digit or X) or a legacy 15-digit
# number, as a whole run of digits, ASCII or full-width (typed with a Chinese input method). Letters
# may touch it: staff type "ID3101…" or "op3101…" (an audit found such IDs printed whole when the
# pattern asked for a boundary at letters too). Any run of 16 digits or more is masked the same
# way: a card number (16-19 digits; a bank return keyed on cards was refused quoting them whole,
# an audit), or an ID typed without its check character. Shorter runs are left: a 14-digit time
# stamp names many a bank's and scheduler's files (`out-20250701023000`: a second audit found the
# `out_dir` of `publish --json` masked into a folder that does not exist), and no amount the engine
# prints is that long (10^13 fen is a hundred billion yuan).
_DIGITS = "0-9\uff10-\uff19"
_X = "Xx\uff38\uff58"
_ID_IN_TEXT = re.compile(
    rf"(?<![{_DIGITS}])(?:[{_DIGITS}]{{17}}[{_DIGITS}{_X}]|[{_DIGITS}]{{15}}|[{_DIGITS}]{{16,}})(?![{_DIGITS}])")
# ... and one typed in groups (three audits): `310101 19370408 5304`, with hyphens, dots,
# underscores, slashes, ideographic spaces (U+3000, a Chinese input method's) or two of them between
# groups, a letter touching it (`ID310101 1937…`), the last group split (`53 04`), or groups of
# other lengths (`310101-194910281896`, `31010119491028 1896`: audit 31B). A run of groups is
# masked only when it has an ID's shape (17 or 18 characters, a birth year 18xx-20xx after the
# first 6, and either a first group of 6 or a valid check character and birth date) or a card's
# (16-19 digits in groups of 4). Anything else is left as it is: dates (`2025-07-01 2025-09-30`),
# district lists (`310101 310104 310105`), batch and line ids (`S20260515-95712345`, whose hash
# part can be all digits), time-stamped file names (`PAYRET_20250701_235959`).
_SEP = "[ \u3000\\-\uff0d.\u00b7_/]{1,2}"
_GROUPED = re.compile(
    rf"(?<![{_DIGITS}])[{_DIGITS}]{{1,14}}(?:{_SEP}[{_DIGITS}]{{1,14}}){{1,6}}[{_X}]?(?![{_DIGITS}])")
_GROUP = re.compile(rf"[{_DIGITS}]+[{_X}]?")
_ASCII = str.maketrans("０１２３４５６７８９Ｘｘ", "0123456789Xx")
# The word a match is in: a hash written in hex (a file's SHA-256: 64 characters; 32 or 40 for
# others) may hold 16 digits or more in a row, and is left as it is, as long as it holds a letter.
# The ledger's store files are named by 16 hex characters (`lines-<16 hex>.parquet`), all digits
# once in a few thousand: left as they are.
_WORD = re.compile(r"[0-9A-Za-z\uff10-\uff19\uff38\uff58]*")
_HASH = re.compile(r"(?=.*[a-fA-F])(?:[0-9a-fA-F]{64}|[0-9a-fA-F]{40}|[0-9a-fA-F]{32})")
_STORE_FILE = re.compile(r"-[0-9]{16}\.parquet")


def _id_or_card_shaped(groups: list[str]) -> bool:
    """Do these digit groups, typed apart, make an ID or a card number?"""
    whole = "".join(groups).translate(_ASCII).upper()
    if len(whole) in (17, 18) and whole[6:8] in ("18", "19", "20"):
        if len(groups[0]) == 6:
            return True
        if (len(whole) == 18 and whole[:17].isdigit() and check_digit(whole[:17]) == whole[17]
                and "01" <= whole[10:12] <= "12" and "01" <= whole[12:14] <= "31"):
            return True
    return (16 <= len(whole) <= 19 and whole.isdigit() and len(groups[0]) == 4
            and all(len(g) == 4 for g in groups[1:-1]))


def mask_ids_in(text: str) -> str:
    """Every resident ID and card number in a message masked (`mask`): for text the engine did
    not write itself, such as a reader's error quoting a row of the extract, or a reason staff
    typed."""
    words: list[tuple[int, int]] = []  # the text's words, found once (each match looked back to its
    # word's start: quadratic, 75 s for a 120 KB word, an audit)

    def masked(m: re.Match[str]) -> str:
        if len(m.group(0)) == 16 and _STORE_FILE.match(text, m.start() - 1):
            return m.group(0)
        if not words:
            words.extend(w.span() for w in _WORD.finditer(text) if w.group(0))
        start, end = words[bisect.bisect_right(words, (m.start(), len(text))) - 1]
        if _HASH.fullmatch(text, start, end):
            return m.group(0)
        return mask(m.group(0))

    def grouped(m: re.Match[str]) -> str:
        groups = _GROUP.findall(m.group(0))
        return mask("".join(groups)) if _id_or_card_shaped(groups) else m.group(0)

    return _GROUPED.sub(grouped, _ID_IN_TEXT.sub(masked, text))


def mask_ids_deep(value: Any) -> Any:
    """`value` (JSON-like: dicts, lists, texts, numbers) with every text's IDs masked, before it is
    serialised: each text is searched as it is, not as a JSON or repr text escapes it (a
    newline before an ID written as `\\n`, a full-width digit as `\\uff13`)."""
    if isinstance(value, str | PurePath):  # a path can name a file after a person's ID
        return mask_ids_in(str(value))
    if isinstance(value, dict):
        return {k: mask_ids_deep(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_ids_deep(v) for v in value]
    return value


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


def normalized_typed(ids: list[str]) -> pl.DataFrame:
    """IDs a person typed (a review's --person): typed, person_id (`normalized_id_expr`: trimmed,
    `x` → `X`, a legacy 15-digit ID upgraded, as the extract's are) and ok (18 characters with a
    real birth date and the right check character; a typo is never matched to nobody silently)."""
    return (pl.DataFrame({"typed": ids}, schema={"typed": pl.String})
            .with_columns(person_id=normalized_id_expr("typed"))
            .with_columns(ok=(id_shape_ok_expr() & id_checksum_ok_expr() & id_birth_expr().is_not_null())
                          .fill_null(False)))


def id_birth_expr(col: str = "person_id") -> pl.Expr:
    """The birth date written inside the ID (null if it is not a real date)."""
    return pl.col(col).str.slice(6, 8).str.to_date("%Y%m%d", strict=False)


ID_FIELDS = ("id_shape_ok", "id_checksum_ok", "id_date_ok", "id_birth", "id_key")


def parse_ids(ids: pl.Series) -> pl.DataFrame:
    """Every check on normalised 18-character IDs at once, over the column's bytes (no Python loop).

    Returns, per input row: `id_shape_ok` (17 digits + digit/X), `id_checksum_ok`, `id_date_ok`
    when the birth date written inside is a real date and `id_birth` that date (null otherwise),
    and `id_key`, all 18 characters as one int64 (a cheap, exact key for finding duplicates). Rows
    that are null or not 18 bytes long have shape_ok false and nulls elsewhere.
    """
    return id_frame(parse_id_arrays(ids))


def parse_id_arrays(ids: pl.Series) -> list[np.ndarray]:
    """`parse_ids` as numpy arrays, one per name of ID_FIELDS (id_birth as days since 1970; a
    value where its flag is false means nothing). A caller can mend rows in place before
    `id_frame` (validation re-parses the few IDs it repairs), with no copy of a 15-million column.

    Each ID is read once by a compiled kernel (`_kernels.parse_id_rows`), writing its row of the results in
    place, in blocks on two threads. It replaced numpy over an (rows, 18) byte matrix, whose
    temporaries and copies took 2.2 s of validation at 15 million rows (now about 0.5 s).
    """
    from allowance._kernels import parse_id_rows  # numba is imported on first use, not by every command

    n = ids.len()
    out = [np.empty(n, dtype=np.bool_) for _ in range(3)] + [np.empty(n, dtype=np.int32), np.empty(n, dtype=np.int64)]
    over_rows(ids, parse_id_rows, out)
    if ids.null_count():
        present = ids.is_not_null().to_numpy()
        for flag in out[:3]:
            flag &= present  # a null's bytes (if any) are no ID
    return out


def id_frame(arrays: list[np.ndarray]) -> pl.DataFrame:
    """The frame `parse_ids` returns, from `parse_id_arrays`' arrays (the numbers are not copied:
    the date and the key are handed to polars with their flags as the null mask)."""
    shape_ok, checksum_ok, date_ok, days, key = arrays
    return pl.DataFrame({
        "id_shape_ok": pl.Series(shape_ok, dtype=pl.Boolean),
        "id_checksum_ok": pl.Series(checksum_ok, dtype=pl.Boolean),
        "id_date_ok": pl.Series(date_ok, dtype=pl.Boolean),
        "id_birth": _masked(days, date_ok, pa.date32()),
        "id_key": _masked(key, shape_ok, pa.int64()),
    })


def _masked(values: np.ndarray, valid: np.ndarray, dtype: pa.DataType) -> pl.Series:
    """`values` as a polars column, null where `valid` is false, its numbers used where they lie."""
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pl.Series(pa.Array.from_buffers(dtype, len(values), [bitmap, pa.py_buffer(values)]))


def repeated_keys(keys: np.ndarray) -> np.ndarray:
    """The keys that occur more than once in `keys` (int64; not changed), ascending.

    Sorted by polars (on both cores), not numpy: at 15.3M keys numpy's sort took 0.2 s on an
    Intel Xeon but 1.0 s on an AMD EPYC of the same size (no vectorised sort there); polars'
    takes 0.25-0.4 s on either."""
    srt = pl.Series(keys).sort().to_numpy()
    return np.unique(srt[1:][srt[1:] == srt[:-1]])


def duplicated(keys: pl.Series, repeated: np.ndarray | None = None) -> pl.Series:
    """True where a non-null integer key occurs more than once: sort once, then look up the few
    repeated keys (hashing 15 million keys costs several times the sort). `repeated` is
    `repeated_keys` of the same keys, when the caller has them (validation, from the parse)."""
    if repeated is None:
        repeated = repeated_keys(keys.drop_nulls().to_numpy())
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

