"""bytescan.hash_columns: XXH64, stable, so that the ledger can keep it (payees.paid_with, card_with).

Checked two ways: values computed with the reference implementation (the `xxhash` package,
3.5.0, by hand once: they are constants here, so that a change of the kernel cannot pass), and a
plain-Python XXH64 written from the specification, against arbitrary texts."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from allowance.bytescan import hash_columns

# xxhash.xxh64_intdigest(text.encode(), 0): every branch of the algorithm (under 4, 4-7, 8-31,
# 32 and more bytes; a text inside its Arrow view and one in a data buffer).
REFERENCE = {
    "": 0xEF46DB3751D8E999,
    "a": 0xD24EC4F1A98C6E5B,
    "310115": 0xA185E7D569009B69,
    "senior_card": 0xA93DC6EE0362C51E,
    "6217999900000001": 0xC39D3E7FAF83943A,
    "x" * 31: 0x60DD0D01083B99F0,
    "y" * 32: 0x64DA1F1D3495CE66,
    "z" * 33: 0xC5241253C64E0268,
    "王小明" * 8: 0x5B687ED6C692D7E4,
}

M = (1 << 64) - 1
P1, P2, P3, P4, P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x85EBCA77C2B2AE63,
                      0x27D4EB2F165667C5)


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & M


def _round(acc: int, lane: int) -> int:
    return _rotl((acc + lane * P2) & M, 31) * P1 & M


def xxh64(data: bytes, seed: int = 0) -> int:
    """XXH64 as its specification states it, one step at a time."""
    n, p = len(data), 0
    if n >= 32:
        v = [(seed + P1 + P2) & M, (seed + P2) & M, seed, (seed - P1) & M]
        while n - p >= 32:
            v = [_round(v[i], int.from_bytes(data[p + 8 * i:p + 8 * i + 8], "little")) for i in range(4)]
            p += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & M
        for x in v:
            h = ((h ^ _round(0, x)) * P1 + P4) & M
    else:
        h = (seed + P5) & M
    h = (h + n) & M
    while n - p >= 8:
        h = (_rotl(h ^ _round(0, int.from_bytes(data[p:p + 8], "little")), 27) * P1 + P4) & M
        p += 8
    if n - p >= 4:
        h = (_rotl(h ^ (int.from_bytes(data[p:p + 4], "little") * P1 & M), 23) * P2 + P3) & M
        p += 4
    while p < n:
        h = _rotl(h ^ (data[p] * P5 & M), 11) * P1 & M
        p += 1
    h = (h ^ (h >> 33)) * P2 & M
    h = (h ^ (h >> 29)) * P3 & M
    return h ^ (h >> 32)


def chained(values: tuple[str | None, ...]) -> int:
    h = 0
    for v in values:
        h = xxh64(b"\xff" if v is None else v.encode(), h)
    return h


def test_the_kernel_and_the_plain_reference_give_the_reference_library_s_values() -> None:
    got = hash_columns([pl.Series(list(REFERENCE))])
    assert got.dtype == pl.UInt64
    assert got.to_list() == list(REFERENCE.values())
    assert [xxh64(t.encode()) for t in REFERENCE] == list(REFERENCE.values())


def test_columns_chain_and_a_null_is_not_an_empty_text() -> None:
    name, card = pl.Series(["张三", None, "", "z"]), pl.Series(["6217999900000001", "z", "z", None])
    got = hash_columns([name, card]).to_list()
    # the library's values for XXH64(card, seed=XXH64(name)), a null as the byte 0xFF
    assert got[0] == xxh64(b"6217999900000001", xxh64("张三".encode()))
    assert got[1] == 0x8C36FA68DEB5FC4A and got[3] == 0xC09EF39C93BA58EC
    assert len(set(got)) == 4  # (null, z), ("", z) and (z, null) all differ


def test_a_chunked_and_sliced_column_hashes_as_its_own_rows() -> None:
    long = "6" * 19
    s = pl.concat([pl.Series(["a", long + "x"]), pl.Series([long, None, "7"])], rechunk=False).slice(1, 3)
    assert hash_columns([s]).to_list() == [chained((long + "x",)), chained((long,)), chained((None,))]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.text(max_size=40)), st.one_of(st.none(), st.text(max_size=70))),
                max_size=30))
def test_any_texts_hash_as_the_plain_reference_does(rows: list[tuple[str | None, str | None]]) -> None:
    a = pl.Series("a", [r[0] for r in rows], dtype=pl.String)
    b = pl.Series("b", [r[1] for r in rows], dtype=pl.String)
    assert hash_columns([a, b]).to_list() == [chained(r) for r in rows]
