"""The compiled kernels of bytescan (numba): each reads rows lo..hi-1 of an Arrow string column,
given as its bytes and int64 offsets, and writes its answers for them in place.

Compiled on first use and cached beside this file (about 1.5 s once per checkout); they run
without the GIL, so two threads take blocks of rows in turn (bytescan.in_blocks). This module is
imported only where a kernel is called: importing numba costs about 0.3 s, which commands that
validate nothing (publish, review, ledger check) do not pay.
"""

from __future__ import annotations

import numba
import numpy as np

from allowance.idcard import CHECK_CHARS, WEIGHTS

_WEIGHTS = np.array(WEIGHTS, dtype=np.int64)
_CHECK = np.frombuffer(CHECK_CHARS.encode(), dtype=np.uint8)
_MDAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


@numba.njit(cache=True, nogil=True)
def parse_id_rows(data: np.ndarray, offsets: np.ndarray, lo: int, hi: int, shape_ok: np.ndarray,
                  checksum_ok: np.ndarray, date_ok: np.ndarray, days: np.ndarray, key: np.ndarray) -> None:
    """Rows lo..hi-1 of an Arrow string column (its bytes and int64 offsets), each ID read once.

    An ID is well formed when it is 18 bytes: 17 digits, then a digit or X. Its key is all 18
    characters as one integer (the 17-digit body × 11 + the check value, X = 10). The check
    character must be CHECK_CHARS[Σ digit × weight mod 11] (GB 11643). The birth date is digits
    7–14, real and not before 1800; `days` is it as days since 1970-01-01 (H. Hinnant's
    days_from_civil).
    """
    for i in range(lo, hi):
        shape_ok[i] = checksum_ok[i] = date_ok[i] = False
        days[i] = 0
        key[i] = 0
        start = offsets[i]
        if offsets[i + 1] - start != 18:
            continue
        body = 0
        total = 0
        digits = True
        for j in range(17):
            d = np.int64(data[start + j]) - 48
            if d < 0 or d > 9:
                digits = False
                break
            body = body * 10 + d
            total += _WEIGHTS[j] * d
        last = np.int64(data[start + 17])
        if not digits or not (last == 88 or 48 <= last <= 57):  # 88: X
            continue
        shape_ok[i] = True
        key[i] = body * 11 + (10 if last == 88 else last - 48)
        checksum_ok[i] = _CHECK[total % 11] == last
        y, m, d = body // 10_000_000 % 10_000, body // 100_000 % 100, body // 1_000 % 100
        if y < 1800 or m < 1 or m > 12:
            continue
        leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
        if d < 1 or d > _MDAYS[m] + (1 if leap and m == 2 else 0):
            continue
        date_ok[i] = True
        y -= 1 if m <= 2 else 0
        era = y // 400
        yoe = y - era * 400
        doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
        days[i] = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


@numba.njit(cache=True, nogil=True)
def digits_only_rows(data: np.ndarray, offsets: np.ndarray, lo: int, hi: int, out: np.ndarray) -> None:
    """out[i]: row i is one or more ASCII digits 0-9."""
    for i in range(lo, hi):
        start, end = offsets[i], offsets[i + 1]
        ok = end > start
        for j in range(start, end):
            if data[j] < 48 or data[j] > 57:
                ok = False
                break
        out[i] = ok
