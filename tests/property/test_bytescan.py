"""bytescan's compiled scans over a column's bytes (digits_only, needs_trim, bad_text) against plain Python.

Values of up to 12 bytes lie inside their Arrow view, longer ones in a data buffer: both are drawn."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from allowance.bytescan import bad_text, digits_only, needs_trim

CARD_LIKE = st.one_of(
    st.none(),
    st.text(alphabet="0123456789", max_size=34),
    st.text(alphabet="0123456789 -x٣０", max_size=20),  # spaces, a letter, an Arabic-Indic and a full-width digit
    st.text(max_size=8),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(CARD_LIKE, max_size=40))
def test_digits_only_is_one_or_more_ascii_digits(values: list[str | None]) -> None:
    got = digits_only(pl.Series("card_no", values, dtype=pl.String))
    assert got.name == "card_no" and got.dtype == pl.Boolean
    expected = [None if v is None else (v != "" and all("0" <= c <= "9" for c in v)) for v in values]
    assert got.to_list() == expected


def test_a_sliced_column_is_read_from_its_own_rows() -> None:
    s = pl.Series(["x", "123", "12a", "", "9"]).slice(1, 3)
    assert digits_only(s).to_list() == [True, False, False]



def test_chunked_and_sliced_columns_are_read_from_their_own_rows() -> None:
    long = "1" * 20
    s = pl.concat([pl.Series(["12a", long + "x"]), pl.Series([long, None, "7"])], rechunk=False).slice(1, 3)
    assert digits_only(s).to_list() == [False, True, None]


SPACES = " \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2000\u2005\u200a\u2028\u2029\u202f\u205f\u3000\u180e\u200b\ufeff"
NAME_LIKE = st.one_of(
    st.none(),
    # CJK, a 2- and a 4-byte character, spaces, U+FFFD and characters whose bytes start as its do
    st.text(alphabet=SPACES + "张王李a1é😀\ufffd\uffef\ufeff", max_size=8),
    # characters that print as nothing, a few that print next to them, and the null markers' letters
    st.text(alphabet="\u200b\u200d\u2060\u206f\u3164\uffa0\u00ad\u202e\u3000 李é\u2070NnUuLl\\"
                     "\u2800\u2801\ufffc\ufe0f\U000e0041\U000e0100\U0001d173\u17b4\u180b\U0001bca3\u1810"
                     "\U000e0fff\ufff0\U00013430\U00016fe4\U00013440",
            max_size=5),
    st.sampled_from(["NULL", "null", "NuLl", "\\N", "\\n", "N", "NULLS", " NULL"]),
    st.text(max_size=16),
)

# Unicode's White_Space (Rust's char::is_whitespace) and the characters that print as nothing: an
# independent list of bad_text's `_is_invisible`.
WHITE_SPACE = (set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000")
               | {chr(c) for c in range(0x2000, 0x200B)})
PRINTS_AS_NOTHING = (WHITE_SPACE | {chr(c) for c in range(0x200B, 0x2010)} | {chr(c) for c in range(0x202A, 0x202F)}
                     | {chr(c) for c in range(0x2060, 0x2070)} | {chr(c) for c in range(0x180B, 0x1810)}
                     | set("\ufeff\xad\u034f\u061c\u115f\u1160\u3164\uffa0\u2800\u17b4\u17b5")
                     | {chr(c) for c in (*range(0xFFF0, 0xFFFD), *range(0xFE00, 0xFE10), *range(0xE0000, 0xE1000),
                                         *range(0x1D173, 0x1D17B), *range(0x1BCA0, 0x1BCA4), *range(0x13430, 0x13440),
                                         0x16FE4)})


@settings(max_examples=400, deadline=None)
@given(st.lists(NAME_LIKE, max_size=40))
def test_needs_trim_is_where_strip_chars_changes_the_text(values: list[str | None]) -> None:
    s = pl.Series("name", values, dtype=pl.String)
    got = needs_trim(s)
    assert got.name == "name" and got.dtype == pl.Boolean
    # polars' trim (Rust's white space) is the reference: Python's str.strip also trims \x1c-\x1f.
    assert got.to_list() == ((s.str.strip_chars() != s) | (s == "")).to_list()


@settings(max_examples=400, deadline=None)
@given(st.lists(NAME_LIKE, max_size=40), st.integers(min_value=0, max_value=20))
def test_bad_text_is_a_control_character_too_many_bytes_or_says_nothing(values: list[str | None],
                                                                         max_bytes: int) -> None:
    s = pl.Series("name", values, dtype=pl.String)
    got = bad_text(s, max_bytes)
    assert got.name == "name" and got.dtype == pl.Boolean
    def control(c: str) -> bool:  # C0, DEL, C1, the line and paragraph separators, the replacement character
        return ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029\ufffd"

    def says_nothing(v: str) -> bool:  # no character that prints, or an export's null marker
        return all(c in PRINTS_AS_NOTHING for c in v) or v.lower() == "null" or v == "\\N"

    expected = [None if v is None
                else (len(v.encode()) > max_bytes or any(control(c) for c in v) or says_nothing(v)) for v in values]
    assert got.to_list() == expected
