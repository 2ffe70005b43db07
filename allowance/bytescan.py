"""Scans over the bytes of a string column by compiled kernels (allowance._kernels, numba).

polars hands a column over as an Arrow array: one buffer of bytes and the offsets where each
row's text starts. A kernel reads each row's bytes once and writes its answer in place; the rows
are taken in blocks on two threads (numba releases the GIL). Used where a polars expression
costs several passes or a regular expression per row.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
import pyarrow as pa

BLOCK = 1 << 21  # rows per call of a kernel


def string_bytes(s: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, int64 offsets) of a string column: row i is bytes[offsets[i]:offsets[i + 1]]."""
    arr = s.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8) if n and arr.buffers()[2] else np.zeros(0, np.uint8)
    return data, offsets


def in_blocks(n: int, kernel: Callable[[int, int], None]) -> None:
    """kernel(lo, hi) over rows 0..n-1 in blocks, two threads."""
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda lo: kernel(lo, min(lo + BLOCK, n)), range(0, n, BLOCK)))


def digits_only(s: pl.Series) -> pl.Series:
    """True where the text is one or more ASCII digits 0-9 (a card number as the bank reads it);
    null where `s` is null. One pass over the bytes: the regular expression it replaced took
    0.6 s over 15 million card numbers."""
    data, offsets = string_bytes(s)
    out = np.empty(s.len(), dtype=np.bool_)
    from allowance._kernels import digits_only_rows  # numba is imported on first use

    in_blocks(s.len(), lambda lo, hi: digits_only_rows(data, offsets, lo, hi, out))
    ok = pl.Series(s.name, out, dtype=pl.Boolean)
    return ok if not s.null_count() else pl.select(pl.when(s.is_not_null()).then(ok)).to_series().alias(s.name)
