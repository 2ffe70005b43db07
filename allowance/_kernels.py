"""The compiled kernels (numba). Most read rows lo..hi-1 of an Arrow string-view column for
bytescan (and idcard, registry, ledger) and write their answers for them in place, among them
`chain_hash_rows`, the stable XXH64 a ledger keeps of what each person was paid with; two serve
batch: `runs_differ_rows` compares two sides' runs of months, `line_totals` totals pieces into lines,
and `numbered_rows` writes a string-view column (a batch's line ids).

A string-view column (the layout polars keeps its text in, handed over without a copy) has one
16-byte view per row: the text's length, then the text itself when it is 12 bytes or shorter,
else its first 4 bytes, the number of the data buffer holding it and its offset there. A kernel
is given the views (as int32, four per row), the address of the first view and the address of
each data buffer; `_row` turns a row into the address and length of its bytes. The caller keeps
the Arrow array alive while a kernel runs (bytescan.Views).

Compiled on first use and cached beside this file (about 2 s once per checkout). When no cache
folder can be written (a read-only install and home), they are compiled in memory each run
instead, with a warning, rather than failing. They run without the GIL, so two threads take
blocks of rows in turn (bytescan.over_rows). This module is imported only where a kernel is
called: importing numba costs about 0.3 s and 176 MB, which a publication does not pay (the
draft wrote its lines' hashes); `ledger check` does (it recomputes every payee's hashes), and
so does a review of a draft made before schema 4 (its rewritten lines get their hashes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

from allowance import log
from allowance.errors import first_line
from allowance.idcard import CHECK_CHARS, WEIGHTS

_WEIGHTS = np.array(WEIGHTS, dtype=np.int64)
_CHECK = np.frombuffer(CHECK_CHARS.encode(), dtype=np.uint8)
_MDAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _jit(fn: Callable[..., Any]) -> Any:
    """numba.njit(nogil, cached on disk); compiled in memory when no cache folder is writable.

    numba looks for a folder beside this file, then in the user's cache folder; with neither
    writable it refuses to build a cached function at all (RuntimeError), which would make every
    validation fail on a read-only install. Compiling each run costs about 2 s and changes
    nothing in the results.
    """
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError as e:
        log.get().warning("kernel_cache_unwritable", kernel=fn.__name__, error=first_line(e))
        return numba.njit(nogil=True)(fn)


@intrinsic
def _byte(typingctx: Any, addr: Any) -> Any:
    """The byte at memory address `addr` (an int64): Arrow's buffers are read where they are."""
    sig = types.uint8(types.int64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.load(builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.uint8))))

    return sig, codegen


@numba.njit(inline="always", nogil=True)
def _row(views: np.ndarray, first_view: int, buffers: np.ndarray, i: int) -> tuple[int, int]:
    """(address of row i's bytes, its length in bytes)."""
    n = np.int64(views[i, 0])
    if n <= 12:
        return first_view + 16 * i + 4, n
    return buffers[views[i, 2]] + np.int64(views[i, 3]), n


@_jit
def parse_id_rows(views: np.ndarray, first_view: int, buffers: np.ndarray, lo: int, hi: int,
                  shape_ok: np.ndarray, checksum_ok: np.ndarray, date_ok: np.ndarray, days: np.ndarray,
                  key: np.ndarray) -> None:
    """Rows lo..hi-1 of a column of IDs, each read once.

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
        at, n = _row(views, first_view, buffers, i)
        if n != 18:
            continue
        body = 0
        total = 0
        digits = True
        y = m = d = 0
        for j in range(17):
            v = np.int64(_byte(at + j)) - 48
            if v < 0 or v > 9:
                digits = False
                break
            body = body * 10 + v
            total += _WEIGHTS[j] * v
            if j == 9:
                y = body % 10_000
            elif j == 11:
                m = body % 100
            elif j == 13:
                d = body % 100
        last = np.int64(_byte(at + 17))
        if not digits or not (last == 88 or 48 <= last <= 57):  # 88: X
            continue
        shape_ok[i] = True
        key[i] = body * 11 + (10 if last == 88 else last - 48)
        checksum_ok[i] = _CHECK[total % 11] == last
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


@_jit
def digits_only_rows(views: np.ndarray, first_view: int, buffers: np.ndarray, lo: int, hi: int,
                     out: np.ndarray) -> None:
    """out[i]: row i is one or more ASCII digits 0-9."""
    for i in range(lo, hi):
        at, n = _row(views, first_view, buffers, i)
        ok = n > 0
        for j in range(n):
            b = _byte(at + j)
            if b < 48 or b > 57:
                ok = False
                break
        out[i] = ok


@numba.njit(inline="always", nogil=True)
def _is_space(cp: int) -> bool:
    """Unicode White_Space, what polars' strip_chars() trims (Rust's char::is_whitespace)."""
    return (9 <= cp <= 13 or cp == 32 or cp == 0x85 or cp == 0xA0 or cp == 0x1680 or 0x2000 <= cp <= 0x200A
            or cp == 0x2028 or cp == 0x2029 or cp == 0x202F or cp == 0x205F or cp == 0x3000)


@numba.njit(inline="always", nogil=True)
def _char_at(at: int, n: int, j: int) -> int:
    """The code point of the UTF-8 character starting at byte j of a text of n bytes at `at`."""
    b = np.int64(_byte(at + j))
    if b < 0x80:
        return b
    size, cp = (2, b & 0x1F) if b < 0xE0 else (3, b & 0x0F) if b < 0xF0 else (4, b & 0x07)
    for k in range(1, size):
        if j + k < n:
            cp = (cp << 6) | (np.int64(_byte(at + j + k)) & 0x3F)
    return cp


@_jit
def needs_trim_rows(views: np.ndarray, first_view: int, buffers: np.ndarray, lo: int, hi: int,
                    out: np.ndarray) -> None:
    """out[i]: row i is empty, or its first or last character is white space."""
    for i in range(lo, hi):
        at, n = _row(views, first_view, buffers, i)
        if n == 0:
            out[i] = True
            continue
        last = n - 1
        while last > 0 and (_byte(at + last) & 0xC0) == 0x80:  # back to the last character's first byte
            last -= 1
        out[i] = _is_space(_char_at(at, n, 0)) or _is_space(_char_at(at, n, last))


@numba.njit(inline="always", nogil=True)
def _is_invisible(cp: int) -> bool:
    """White space, or a character that prints as nothing: zero-width and joiner characters,
    the word joiner and invisible operators, the byte-order mark, the soft hyphen, the Mongolian
    vowel separator and free variation selectors, the Hangul fillers, the directional marks and
    isolates, and (audits 19A, 19C) the braille blank, the Khmer inherent vowels, the object
    replacement and interlinear annotation characters and the specials before them, variation
    selectors, the tag block, and the musical, shorthand, hieroglyph and Khitan format controls."""
    return (_is_space(cp) or 0x200B <= cp <= 0x200F or 0x202A <= cp <= 0x202E or 0x2060 <= cp <= 0x206F
            or cp == 0xFEFF or cp == 0xAD or cp == 0x34F or cp == 0x61C or 0x180B <= cp <= 0x180F
            or cp == 0x115F or cp == 0x1160 or cp == 0x3164 or cp == 0xFFA0 or cp == 0x2800
            or cp == 0x17B4 or cp == 0x17B5 or 0xFFF9 <= cp <= 0xFFFC or 0xFE00 <= cp <= 0xFE0F
            or 0xE0000 <= cp <= 0xE0FFF or 0xFFF0 <= cp <= 0xFFF8 or 0x1D173 <= cp <= 0x1D17A
            or 0x1BCA0 <= cp <= 0x1BCA3 or 0x13430 <= cp <= 0x1343F or cp == 0x16FE4)


@_jit
def bad_text_rows(views: np.ndarray, first_view: int, buffers: np.ndarray, lo: int, hi: int, max_bytes: int,
                  out: np.ndarray) -> None:
    """out[i]: row i is longer than max_bytes, or holds a control character: C0 (a byte below
    0x20) or DEL (0x7F), which in UTF-8 no byte of another character is; C1 (U+0080-U+009F: 0xC2
    then 0x80-0x9F); a line or paragraph separator (U+2028, U+2029: 0xE2 0x80 0xA8/0xA9); or the
    replacement character U+FFFD (0xEF 0xBF 0xBD), what a lossy decode upstream (GBK read as UTF-8)
    leaves of a name: no bank matches it (audit 18C). Or it says nothing: no character of it
    prints (zero-width spaces, a byte-order mark, a Hangul filler: `_is_invisible`), or it is
    an export's null marker, `NULL` in any case or `\\N` (audit 18C: such names were paid)."""
    for i in range(lo, hi):
        at, n = _row(views, first_view, buffers, i)
        bad = n > max_bytes
        j = 0
        while not bad and j < n:
            b = _byte(at + j)
            bad = b < 0x20 or b == 0x7F
            if b == 0xC2 and j + 1 < n:
                bad = 0x80 <= _byte(at + j + 1) <= 0x9F
            elif b == 0xE2 and j + 2 < n and _byte(at + j + 1) == 0x80:
                bad = _byte(at + j + 2) == 0xA8 or _byte(at + j + 2) == 0xA9
            elif b == 0xEF and j + 2 < n and _byte(at + j + 1) == 0xBF:
                bad = _byte(at + j + 2) == 0xBD
            j += 1
        # Then up to its first character that prints: a printable ASCII one, or one that starts at
        # j and prints (0xE4-0xEE lead U+4000-U+EFFF, Chinese among them: none is invisible).
        visible = False
        j = 0
        while not bad and not visible and j < n:
            b = _byte(at + j)
            visible = 0x21 <= b <= 0x7E or 0xE4 <= b <= 0xEE or (b >= 0xC2 and not _is_invisible(_char_at(at, n, j)))
            j += 1
        if not bad and n == 4:
            bad = ((_byte(at) | 0x20) == 110 and (_byte(at + 1) | 0x20) == 117 and (_byte(at + 2) | 0x20) == 108
                   and (_byte(at + 3) | 0x20) == 108)  # "null", any case
        if not bad and n == 2:
            bad = _byte(at) == 92 and _byte(at + 1) == 78  # "\\N"
        out[i] = bad or not visible


@_jit
def runs_differ_rows(pa: np.ndarray, fa: np.ndarray, ta: np.ndarray, va: np.ndarray, pb: np.ndarray,
                     fb: np.ndarray, tb: np.ndarray, vb: np.ndarray, top: int, out: np.ndarray) -> None:
    """out[p] for p in 0..top-1: person p's runs (from, to, value) on side a are not the same set
    as on side b. Side b's runs are put in order of person (a counting sort: one pass to count,
    one to place them); then each person's runs on side a are looked up among theirs on side b.
    Runs of one person are distinct, so the same count and every run of a found in b is the same
    set. Persons are the integers 0..top-1 (batch's pkey)."""
    start = np.zeros(top + 1, dtype=np.int64)
    for j in range(pb.size):
        start[pb[j] + 1] += 1
    for p in range(top):
        start[p + 1] += start[p]
    fill = start[:-1].copy()
    f_b = np.empty(pb.size, dtype=fb.dtype)
    t_b = np.empty(pb.size, dtype=tb.dtype)
    v_b = np.empty(pb.size, dtype=vb.dtype)
    for j in range(pb.size):
        k = fill[pb[j]]
        f_b[k], t_b[k], v_b[k] = fb[j], tb[j], vb[j]
        fill[pb[j]] += 1
    count_a = np.zeros(top, dtype=np.int64)
    out[:] = False
    for i in range(pa.size):
        p = pa[i]
        count_a[p] += 1
        found = False
        for y in range(start[p], start[p + 1]):
            if fa[i] == f_b[y] and ta[i] == t_b[y] and va[i] == v_b[y]:
                found = True
                break
        if not found:
            out[p] = True
    for p in range(top):
        if count_a[p] != start[p + 1] - start[p]:
            out[p] = True


@_jit
def line_totals(seq: np.ndarray, from_mi: np.ndarray, to_mi: np.ndarray, n: np.ndarray, diff_fen: np.ndarray,
                district_part: np.ndarray, reversed_: np.ndarray, held_fen: np.ndarray, ent_fen: np.ndarray,
                vbit: np.ndarray, pkey: np.ndarray, rec: np.ndarray, o1: np.ndarray, o3: np.ndarray,
                current_from: int, out_seq: np.ndarray, out_pkey: np.ndarray, out_rec: np.ndarray,
                out_o1: np.ndarray, out_o3: np.ndarray, lo: np.ndarray, hi: np.ndarray, months: np.ndarray,
                amount: np.ndarray, district: np.ndarray, any_reversed: np.ndarray, any_topup: np.ndarray,
                any_arrears: np.ndarray, ent_min: np.ndarray, ent_max: np.ndarray, vmask: np.ndarray,
                stop: np.ndarray) -> int:
    """batch.per_line for pieces in line order, where a line is a run of rows with the same `seq`:
    writes one row per line and returns how many. seq, pkey, rec, o1 and o3 are the line's
    first piece's; `stop` is the first month whose entitlement is 0, or -1 for none."""
    line = -1
    for i in range(seq.size):
        if i == 0 or seq[i] != seq[i - 1]:
            line += 1
            out_seq[line], out_pkey[line], out_rec[line] = seq[i], pkey[i], rec[i]
            out_o1[line], out_o3[line] = o1[i], o3[i]
            lo[line], hi[line] = from_mi[i], to_mi[i]
            months[line] = amount[line] = district[line] = vmask[line] = 0
            any_reversed[line] = any_topup[line] = any_arrears[line] = False
            ent_min[line] = ent_max[line] = ent_fen[i]
            stop[line] = -1
        lo[line] = min(lo[line], from_mi[i])
        hi[line] = max(hi[line], to_mi[i])
        months[line] += n[i]
        amount[line] += diff_fen[i] * n[i]
        district[line] += district_part[i]
        any_reversed[line] |= reversed_[i]
        any_topup[line] |= held_fen[i] > 0 and diff_fen[i] > 0
        any_arrears[line] |= from_mi[i] < current_from
        ent_min[line] = min(ent_min[line], ent_fen[i])
        ent_max[line] = max(ent_max[line], ent_fen[i])
        vmask[line] |= vbit[i]
        if ent_fen[i] == 0 and (stop[line] == -1 or from_mi[i] < stop[line]):
            stop[line] = from_mi[i]
    return line + 1


@_jit
def numbered_rows(prefix: np.ndarray, head: int, seq: np.ndarray, digits: int, lo: int, hi: int,
                  views: np.ndarray, data: np.ndarray) -> None:
    """Rows lo..hi-1 of a string-view column of `prefix` + seq[i] as `digits` zero-padded decimal
    digits, every row `w` = len(prefix) + digits bytes (more than 12: stored in data buffer 0, at
    i * w); `head` is the int32 a view keeps of a text's first 4 bytes. The caller has checked
    that every seq[i] is in 0 .. 10^digits - 1 and that (hi - 1) * w fits an int32."""
    w = prefix.size + digits
    for i in range(lo, hi):
        at = i * w
        for j in range(prefix.size):
            data[at + j] = prefix[j]
        v = seq[i]
        for j in range(w - 1, prefix.size - 1, -1):
            data[at + j] = 48 + v % 10
            v //= 10
        views[i, 0] = w
        views[i, 1] = head
        views[i, 2] = 0
        views[i, 3] = at


# XXH64 (Yann Collet's xxHash, 64-bit; the reference's constants and steps): a stable hash,
# the same on every machine and in every version, so a ledger may keep it (ledger.payees).
_P1 = np.uint64(0x9E3779B185EBCA87)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)
_P4 = np.uint64(0x85EBCA77C2B2AE63)
_P5 = np.uint64(0x27D4EB2F165667C5)


@numba.njit(inline="always", nogil=True)
def _rotl(x: np.uint64, r: int) -> np.uint64:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@numba.njit(inline="always", nogil=True)
def _le(at: int, n: int) -> np.uint64:
    """n (4 or 8) bytes at `at` as a little-endian unsigned integer."""
    v = np.uint64(0)
    for j in range(n - 1, -1, -1):
        v = (v << np.uint64(8)) | np.uint64(_byte(at + j))
    return v


@numba.njit(inline="always", nogil=True)
def _round(acc: np.uint64, lane: np.uint64) -> np.uint64:
    return _rotl(acc + lane * _P2, 31) * _P1


@numba.njit(nogil=True)
def xxh64(at: int, n: int, seed: np.uint64) -> np.uint64:
    """XXH64 of the n bytes at address `at`, with `seed`."""
    p, end = at, at + n
    if n >= 32:
        v1, v2, v3, v4 = seed + _P1 + _P2, seed + _P2, seed, seed - _P1
        while end - p >= 32:
            v1 = _round(v1, _le(p, 8))
            v2 = _round(v2, _le(p + 8, 8))
            v3 = _round(v3, _le(p + 16, 8))
            v4 = _round(v4, _le(p + 24, 8))
            p += 32
        h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
        for v in (v1, v2, v3, v4):
            h = (h ^ _round(np.uint64(0), v)) * _P1 + _P4
    else:
        h = seed + _P5
    h += np.uint64(n)
    while end - p >= 8:
        h = _rotl(h ^ _round(np.uint64(0), _le(p, 8)), 27) * _P1 + _P4
        p += 8
    if end - p >= 4:
        h = _rotl(h ^ (_le(p, 4) * _P1), 23) * _P2 + _P3
        p += 4
    while p < end:
        h = _rotl(h ^ (np.uint64(_byte(p)) * _P5), 11) * _P1
        p += 1
    return _avalanche(h)


@numba.njit(inline="always", nogil=True)
def _avalanche(h: np.uint64) -> np.uint64:
    h ^= h >> np.uint64(33)
    h *= _P2
    h ^= h >> np.uint64(29)
    h *= _P3
    return h ^ (h >> np.uint64(32))


@numba.njit(inline="always", nogil=True)
def _xxh64_null(seed: np.uint64) -> np.uint64:
    """XXH64 of the one byte 0xFF (what a null hashes as: no UTF-8 text contains that byte)."""
    return _avalanche(_rotl((seed + _P5 + np.uint64(1)) ^ (np.uint64(0xFF) * _P5), 11) * _P1)


@_jit
def chain_hash_rows(views: np.ndarray, first_view: int, buffers: np.ndarray, lo: int, hi: int,
                    valid: np.ndarray, h: np.ndarray) -> None:
    """h[i] = XXH64(row i's bytes, seed h[i]); a null row (valid[i] false) hashes as the one byte
    0xFF, which no UTF-8 text is. Called column after column, it hashes a tuple of texts."""
    for i in range(lo, hi):
        if valid[i]:
            at, n = _row(views, first_view, buffers, i)
            h[i] = xxh64(at, n, h[i])
        else:
            h[i] = _xxh64_null(h[i])
