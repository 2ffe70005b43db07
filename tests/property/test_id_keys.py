"""The int64 ID key the engine joins and sorts on is exact: one key per text, text order kept.

The draft matches extract rows to ledger rows by `idcard.order_key_expr` and validation finds
duplicates by `parse_ids`' id_key; both must agree, and no two different texts may share a key.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import given
from hypothesis import strategies as st
from registry_strategies import PROPERTY

from allowance import idcard

ID_LIKE = st.one_of(
    # well-formed 18-character IDs (any check character), the common case
    st.text(alphabet="0123456789", min_size=17, max_size=17).flatmap(
        lambda body: st.sampled_from([body + c for c in "0123456789X"])),
    # near misses: wrong length, signs, spaces, lower-case x, other scripts
    st.text(alphabet="0123456789Xx+- ٣", min_size=15, max_size=19),
)


@PROPERTY
@given(st.lists(ID_LIKE, min_size=1, max_size=60))
def test_keys_are_exact_and_keep_text_order(ids: list[str]) -> None:
    frame = pl.DataFrame({"p": ids}).with_columns(k=idcard.order_key_expr("p"))
    by_parse = idcard.parse_ids(pl.Series(ids))
    for text, key, shape_ok, checksum_ok, parsed in zip(ids, frame["k"], by_parse["id_shape_ok"],
                                                       by_parse["id_checksum_ok"], by_parse["id_key"], strict=True):
        well_formed = len(text) == 18 and text[:17].isascii() and text[:17].isdigit() and text[17] in "0123456789X"
        assert (key is not None) == well_formed, text
        assert bool(shape_ok) == well_formed, text
        assert bool(checksum_ok) == (well_formed and idcard.check_digit(text[:17]) == text[17]), text
        assert (parsed is not None) == well_formed, text
        if well_formed:
            assert key == parsed, text
    keyed = frame.drop_nulls("k").unique()
    # one key per text and one text per key
    assert keyed["k"].n_unique() == keyed["p"].n_unique() == keyed.height
    # sorting by key sorts by text (X after the digits, as in ASCII)
    assert keyed.sort("k")["p"].to_list() == sorted(keyed["p"].to_list())
    # and the key gives back its text, character for character (leading zeros, X)
    assert keyed.select(idcard.id_from_key_expr("k"))["k"].to_list() == keyed["p"].to_list()


# Eight digits that are often not a date: month 0 or 13, day 0 or 32, 29 February of any year.
DATE_DIGITS = st.tuples(st.integers(1700, 2200), st.integers(0, 13), st.integers(0, 32)).map(
    lambda t: f"{t[0]:04d}{t[1]:02d}{t[2]:02d}")


def _real_date(digits: str) -> dt.date | None:
    try:
        day = dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None
    return day if day.year >= 1800 else None


@PROPERTY
@given(st.lists(st.tuples(st.text(alphabet="0123456789", min_size=6, max_size=6), DATE_DIGITS,
                          st.text(alphabet="0123456789", min_size=3, max_size=3), st.sampled_from("0123456789X")),
                min_size=1, max_size=60))
def test_birth_date_inside_the_id(parts: list[tuple[str, str, str, str]]) -> None:
    """parse_ids' id_birth (numpy day arithmetic) is the calendar date the ID spells, null if none."""
    ids = ["".join(p) for p in parts]
    parsed = idcard.parse_ids(pl.Series(ids))
    for (_, digits, _, _), ok, birth in zip(parts, parsed["id_date_ok"], parsed["id_birth"], strict=True):
        assert birth == _real_date(digits), digits
        assert bool(ok) == (birth is not None), digits


@PROPERTY
@given(st.lists(st.lists(st.one_of(st.none(), ID_LIKE), max_size=8), min_size=1, max_size=6), st.integers(0, 4))
def test_a_column_in_chunks_parses_as_one(chunks: list[list[str | None]], skip: int) -> None:
    """Validation reads the ID column in one chunk per Parquet row group, and the kernel is handed
    each chunk by itself: every row's result must land on that row, whatever the chunking, and a
    sliced chunk must be read from its own rows."""
    pieces = [pl.Series(c, dtype=pl.String) for c in chunks]
    chunked = pl.concat(pieces, rechunk=False).slice(skip)
    whole = pl.Series([v for c in chunks for v in c], dtype=pl.String).slice(skip)
    assert chunked.n_chunks() >= 1
    assert idcard.parse_ids(chunked).equals(idcard.parse_ids(whole))
    for text, key in zip(whole, idcard.parse_ids(chunked)["id_key"], strict=True):
        well_formed = (text is not None and len(text) == 18 and text[:17].isascii() and text[:17].isdigit()
                       and text[17] in "0123456789X")
        assert (key is not None) == well_formed, text
