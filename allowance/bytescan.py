"""Scans over the bytes of a string column by compiled kernels (allowance._kernels, numba).

polars keeps text as Arrow string views and hands a column over as such without copying it
(Views): a kernel reads each row's bytes once where they lie and writes its answer in place; the
rows are taken in blocks on two threads (numba releases the GIL). Used where a polars expression
costs several passes, a regular expression or a rewrite of every row: the ID parse, digits-only
card numbers, and which names need trimming. Handing the column over as one contiguous
large-string buffer instead cost a copy of it: 0.25–0.4 s per 15 million IDs. One kernel writes
a column instead, in the same layout: `numbered`, a batch's line ids.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

BLOCK = 1 << 18  # rows per call of a kernel (a 2M-row block of validation is 8 calls, on both threads)


@dataclass
class Views:
    """A string column as its kernels read it: `views` (int32, four per row), the address of the
    first view and of each data buffer. `array` holds the memory they point into."""

    array: pa.Array
    views: np.ndarray
    first_view: int
    buffers: np.ndarray

    @property
    def args(self) -> tuple[np.ndarray, int, np.ndarray]:
        return self.views, self.first_view, self.buffers


def string_views(s: pl.Series) -> Views:
    """The column's Arrow string views, as polars holds them (no text copied). polars hands a
    column of several chunks over as one array, copying every view into it: over_rows gives each
    chunk by itself."""
    arr = s.to_arrow(compat_level=pl.CompatLevel.newest())
    if arr.type != pa.string_view():
        arr = arr.cast(pa.string_view())
    bufs = arr.buffers()
    n = len(arr)
    if bufs[1] is None or n == 0:  # no rows: nothing for a kernel to read
        return Views(arr, np.zeros((0, 4), np.int32), 0, np.zeros(0, np.int64))
    views = np.frombuffer(bufs[1], dtype=np.int32).reshape(-1, 4)[arr.offset : arr.offset + n]
    buffers = np.array([b.address if b is not None else 0 for b in bufs[2:]], dtype=np.int64)
    return Views(arr, views, bufs[1].address + 16 * arr.offset, buffers)


def over_rows(s: pl.Series, kernel: Callable[..., None], outs: list[np.ndarray]) -> None:
    """kernel(views..., lo, hi, *outs) over every row of `s`, chunk by chunk, in blocks on two threads.

    polars holds a column read from Parquet as one chunk per row group; each chunk's views are
    handed over as they are, and the kernel writes into the slice of `outs` for that chunk's rows.
    Making one array of a column's chunks first cost a copy of every view: 0.2 s for 15 million
    IDs, 10-20 ms for each block of names and cards.
    """
    tasks: list[tuple[Views, int, int, list[np.ndarray]]] = []
    start = 0
    for chunk in s.get_chunks():
        n = chunk.len()
        v = string_views(chunk)
        mine = [o[start : start + n] for o in outs]
        tasks += [(v, lo, min(lo + BLOCK, n), mine) for lo in range(0, n, BLOCK)]
        start += n
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda t: kernel(*t[0].args, t[1], t[2], *t[3]), tasks))


def _flags(s: pl.Series, kernel: Callable[..., None]) -> pl.Series:
    """A boolean per row of `s` from a kernel over its views (null where `s` is null)."""
    out = np.empty(s.len(), dtype=np.bool_)
    over_rows(s, kernel, [out])
    ok = pl.Series(s.name, out, dtype=pl.Boolean)
    return ok if not s.null_count() else pl.select(pl.when(s.is_not_null()).then(ok)).to_series().alias(s.name)


def digits_only(s: pl.Series) -> pl.Series:
    """True where the text is one or more ASCII digits 0-9 (a card number as the bank reads it);
    null where `s` is null. One pass over the bytes: the regular expression it replaced took
    0.6 s over 15 million card numbers."""
    from allowance._kernels import digits_only_rows  # numba is imported on first use

    return _flags(s, digits_only_rows)


def needs_trim(s: pl.Series) -> pl.Series:
    """True where the text is empty or starts or ends with white space: where `strip_chars()`,
    and making an empty text null, would change it (null where `s` is null). One look at each
    end of each row: trimming 15 million names to find the few that change took 0.45 s."""
    from allowance._kernels import needs_trim_rows

    return _flags(s, needs_trim_rows)


def bad_text(s: pl.Series, max_bytes: int) -> pl.Series:
    """True where the text is longer than `max_bytes`, holds a control character (NUL, a tab,
    a line break, ...), has no character that prints, or is a null marker (`NULL`, `\\N`); null
    where `s` is null. One pass over the bytes, on both threads (`_kernels.bad_text_rows`)."""
    from allowance._kernels import bad_text_rows

    return _flags(s, lambda *a: bad_text_rows(*a[:5], max_bytes, *a[5:]))


def hash_columns(cols: list[pl.Series]) -> pl.Series:
    """A stable 64-bit hash of each row's tuple of texts: XXH64 of the first column's bytes (seed
    0), of the second's with that as seed, and so on; a null hashes as the byte 0xFF, which no
    UTF-8 text is. The same on every machine and in every version of polars (whose own `hash`
    may change between releases), so a ledger can keep it."""
    from allowance._kernels import chain_hash_rows

    n = cols[0].len() if cols else 0
    h = np.zeros(n, dtype=np.uint64)
    for s in cols:
        if s.len() != n or s.dtype != pl.String:
            raise ValueError(f"hash_columns: {s.name} is not a String column of {n} rows")
        valid = s.is_not_null().to_numpy()
        over_rows(s, chain_hash_rows, [valid, h])
    return pl.Series("hash", h, dtype=pl.UInt64)


def numbered_expr(prefix: str, seq: pl.Expr, digits: int) -> pl.Expr:
    """`prefix` followed by `seq` in decimal, zero-padded to `digits` (what `numbered` builds)."""
    return pl.lit(prefix) + seq.cast(pl.String).str.zfill(digits)


def numbered(prefix: str, seq: pl.Series, digits: int) -> pl.Series:
    """`numbered_expr` of a column, written straight into Arrow string views by a compiled kernel
    (`_kernels.numbered_rows`): 4.4 million line ids took 0.45 s as text operations, 0.05-0.2 s
    this way (most of it first touching the 180 MB of fresh memory). Where the kernel's layout
    does not fit (a null or negative number, one wider than `digits`, texts of 12 bytes or fewer,
    which a view keeps inline, a prefix shorter than the 4 bytes a view repeats, or more than 2 GB
    of text) the expression is used."""
    head = prefix.encode()
    w = len(head) + digits
    n = seq.len()
    fits = (
        n > 0 and seq.dtype.is_integer() and seq.null_count() == 0 and w > 12 and len(head) >= 4 and n * w < 1 << 31
        and 0 <= seq.min() and seq.max() < 10**digits  # type: ignore[operator]
    )
    if not fits:
        return seq.to_frame("seq").select(numbered_expr(prefix, pl.col("seq"), digits)).to_series().alias(seq.name)
    from allowance._kernels import numbered_rows

    values = seq.cast(pl.Int64).to_numpy()
    pre = np.frombuffer(head, dtype=np.uint8)
    first4 = int(np.frombuffer(head[:4], dtype=np.int32)[0])
    views = np.empty((n, 4), dtype=np.int32)
    data = np.empty(n * w, dtype=np.uint8)
    blocks = [(lo, min(lo + BLOCK, n)) for lo in range(0, n, BLOCK)]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda b: numbered_rows(pre, first4, values, digits, b[0], b[1], views, data), blocks))
    arr = pa.Array.from_buffers(pa.string_view(), n, [None, pa.py_buffer(views), pa.py_buffer(data)])
    return pl.Series(seq.name, arr, dtype=pl.String)


def warm_up() -> threading.Thread:
    """Import numba and load the cached kernels on a thread, while the caller reads the extract
    (polars reads without the GIL): about 0.5 s that is otherwise paid before the first kernel."""

    def load() -> None:
        try:
            digits_only(pl.Series(["1", None]))
            needs_trim(pl.Series([" 1"]))
            bad_text(pl.Series(["1"]), 1)
            from allowance import idcard

            idcard.parse_ids(pl.Series(["11010119900307123X"]))
            hash_columns([pl.Series(["x"])])
        except Exception:  # the caller's own first call raises it again, where it is handled
            pass

    t = threading.Thread(target=load, name="kernel-warm-up", daemon=True)
    t.start()
    return t
