"""The extract check (SPEC §3): rows in = clean + quarantined, and a mistyped ID never passes.

The check digit is recomputed here from GB 11643-1999 itself (weights 2^(17-i) mod 11,
check characters "10X98765432"), not taken from the engine.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
from hypothesis import given
from hypothesis import strategies as st
from registry_strategies import PROPERTY

from allowance.constants import CHANNELS, DISTRICT_CODES, MAX_AGE_ALIVE, QUARANTINE_REASONS, REGISTRY_COLUMNS
from allowance.idcard import make_id
from allowance.registry import validate

GB_WEIGHTS = [pow(2, 17 - i, 11) for i in range(17)]
GB_CHECK = "10X98765432"
STRING_SCHEMA = dict.fromkeys(REGISTRY_COLUMNS, pl.String)
AS_OF = dt.date(2025, 7, 1)


def gb_check_char(body17: str) -> str:
    return GB_CHECK[sum(int(c) * w for c, w in zip(body17, GB_WEIGHTS, strict=True)) % 11]


def is_valid_18(pid: str) -> bool:
    """ASCII digits only, 17 + check character, real date inside, check digit right."""
    if len(pid) != 18 or not pid.isascii() or not pid[:17].isdigit() or pid[17] not in "0123456789X":
        return False
    try:
        dt.datetime.strptime(pid[6:14], "%Y%m%d")
    except ValueError:
        return False
    return gb_check_char(pid[:17]) == pid[17]


def frame(rows: list[dict[str, Any]]) -> pl.LazyFrame:
    return pl.LazyFrame(rows, schema=STRING_SCHEMA)


def norm(text: str | None) -> str | None:
    """How the extract reader treats text: trimmed, empty = missing."""
    if text is None:
        return None
    s = text.strip()
    return s or None


# ---- messy raw rows -----------------------------------------------------------------------------

AREAS = st.one_of(st.sampled_from(["310101", "310103", "320102", "110105", "440301"]),
                  st.from_regex(r"[1-9][0-9]{5}", fullmatch=True))
BIRTHS = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2026, 12, 31))
BAD_DATES = st.sampled_from(["2025-02-30", "1950-13-01", "1950-00-10", "19500101", "1950/01/01", "abc", "", " ",
                             "2023-02-29", "0000-00-00", "1950-1-1"])
TEXT = st.text(max_size=20)  # any unicode, including other scripts' digits
DIGITS = st.from_regex(r"[0-9]{1,25}", fullmatch=True)


def mutate(draw: st.DrawFn, pid: str) -> str:
    i = draw(st.integers(0, len(pid) - 1))
    how = draw(st.sampled_from(["sub", "drop", "insert", "swap"]))
    c = draw(st.sampled_from("0123456789Xx "))
    if how == "sub":
        return pid[:i] + c + pid[i + 1:]
    if how == "drop":
        return pid[:i] + pid[i + 1:]
    if how == "insert":
        return pid[:i] + c + pid[i:]
    j = min(i + 1, len(pid) - 1)
    return pid[:i] + pid[j] + pid[i + 1:j] + pid[i] + pid[j + 1:] if j > i else pid


# The same digit in other scripts: fullwidth (what a Chinese IME types), Arabic-Indic, Devanagari.
LOOKALIKE_ZEROS = ("\uff10", "\u0660", "\u0966")


def lookalike(draw: st.DrawFn, pid: str) -> str:
    """A valid ID with one body digit typed in another script (same value, not an ASCII digit)."""
    i = draw(st.integers(0, 16))
    return pid[:i] + chr(ord(draw(st.sampled_from(LOOKALIKE_ZEROS))) + int(pid[i])) + pid[i + 1:]


@st.composite
def raw_rows(draw: st.DrawFn, tag: int) -> dict[str, Any]:
    birth = draw(BIRTHS)
    area = draw(AREAS)
    valid = make_id(area, birth, draw(st.integers(0, 999)))
    legacy_birth = birth if 1900 <= birth.year <= 1999 else birth.replace(year=1950, day=min(birth.day, 28))
    kind = draw(st.sampled_from(["valid", "valid", "valid", "lower", "padded", "mutated", "lookalike", "legacy",
                                 "shape", "text", "empty", "none"]))
    pid: str | None = {
        "valid": valid,
        "lower": valid.lower(),
        "padded": f"  {valid} ",
        "mutated": mutate(draw, valid),
        "lookalike": lookalike(draw, valid),
        "legacy": f"{area}{legacy_birth:%y%m%d}{draw(st.integers(0, 999)):03d}",
        "shape": draw(st.from_regex(r"[0-9]{17}[0-9Xx]", fullmatch=True)),
        "text": draw(TEXT),
        "empty": "",
        "none": None,
    }[kind]
    id_birth = legacy_birth if kind == "legacy" else birth
    birth_text = draw(st.one_of(
        st.just(id_birth.isoformat()), st.just(id_birth.isoformat()), st.just(f" {id_birth.isoformat()} "),
        BIRTHS.map(dt.date.isoformat), BAD_DATES, st.none(),
    ))
    fact = st.one_of(st.none(), st.none(), BIRTHS.map(dt.date.isoformat), BAD_DATES)
    channel = draw(st.one_of(st.none(), st.sampled_from([*CHANNELS, "bank", "SENIOR_CARD", ""]), TEXT))
    card = draw(st.one_of(st.none(), DIGITS, st.just("6217 0000 1234 5678"), TEXT, st.just(""),
                          DIGITS.map(lambda d: "".join(chr(0xFF10 + int(c)) for c in d))))
    return {
        "person_id": pid,
        "name": draw(st.sampled_from([f"r{tag}", f"r{tag}", f"r{tag}", f" r{tag} ", "", None])),
        "birth_date": birth_text,
        "district_code": draw(st.one_of(st.sampled_from(DISTRICT_CODES), st.sampled_from(["310103", "", "31011"]),
                                        TEXT, st.none())),
        "hukou_since": draw(fact),
        "hukou_out_date": draw(fact),
        "death_date": draw(fact),
        "channel": channel,
        "card_no": card,
    }


@st.composite
def messy_extracts(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 40))
    rows = [draw(raw_rows(i)) for i in range(n)]
    # Duplicates: copies of earlier rows (a person twice in one extract), anywhere in the file.
    for _ in range(draw(st.integers(0, 5))):
        src = dict(rows[draw(st.integers(0, len(rows) - 1))])
        rows.insert(draw(st.integers(0, len(rows))), src)
    # Re-tag names by final position, so a clean row tells which input row it came from.
    for i, r in enumerate(rows):
        if norm(r["name"]) is not None:
            r["name"] = r["name"].replace(r["name"].strip(), f"r{i}")
    return rows


@PROPERTY
@given(messy_extracts(), st.dates(min_value=dt.date(2020, 1, 1), max_value=dt.date(2026, 12, 31)))
def test_rows_in_equal_clean_plus_quarantined(rows: list[dict[str, Any]], as_of: dt.date) -> None:
    v = validate(frame(rows), as_of, CHANNELS)
    n = len(rows)
    assert v.rows_in == n
    assert v.clean.height + v.quarantine.height == n

    q = v.quarantine
    for r in q.iter_rows(named=True):
        reasons = r["reasons"].split(";")
        assert r["reason"] in QUARANTINE_REASONS, r
        assert set(reasons) <= set(QUARANTINE_REASONS), r
        assert r["reason"] == reasons[0], r
        assert reasons == sorted(reasons, key=QUARANTINE_REASONS.index), r
        # row_no points back at the row it came from (1-based).
        src = rows[r["row_no"] - 1]
        assert r["name"] == norm(src["name"]), (r, src)
        # the ID as read, trimmed as polars trims (an empty one shown as missing)
        trimmed = pl.select(pl.lit(src["person_id"], dtype=pl.String).str.strip_chars()).item()
        assert r["person_id"] == (trimmed or None), (r, src)
    assert sum(v.by_reason.values()) == q.height

    quarantined = q["row_no"].to_list()
    clean_rows = [int(name[1:]) + 1 for name in v.clean["name"].to_list()]
    assert len(set(quarantined)) == len(quarantined)
    assert len(set(clean_rows)) == len(clean_rows)
    assert set(quarantined).isdisjoint(clean_rows)
    assert set(quarantined) | set(clean_rows) == set(range(1, n + 1))

    # A clean row is really clean (SPEC §3).
    ids = v.clean["person_id"].to_list()
    assert len(set(ids)) == len(ids), "a person twice among the clean rows"
    for r in v.clean.iter_rows(named=True):
        assert is_valid_18(r["person_id"]), r
        assert r["birth_date"] == dt.datetime.strptime(r["person_id"][6:14], "%Y%m%d").date(), r
        assert r["birth_date"] <= as_of, r
        assert r["district_code"] in DISTRICT_CODES, r
        assert r["channel"] is None or r["channel"] in CHANNELS, r
        if r["channel"] is not None:
            assert r["card_no"] is not None and r["card_no"].isascii() and r["card_no"].isdigit(), r
        for c in ("hukou_since", "hukou_out_date", "death_date"):
            assert r[c] is None or r["birth_date"] <= r[c] <= as_of, r


# ---- mistyped IDs -----------------------------------------------------------------------------------

# area of first registration, birth date, sequence: the parts of a valid ID (make_id)
ID_PARTS = (
    st.from_regex(r"[1-9][0-9]{5}", fullmatch=True),
    # people of a plausible age at AS_OF (over MAX_AGE_ALIVE a row is AGE_IMPLAUSIBLE, the control
    # row too: a random draw born in 1904 failed the control, not a mutant)
    st.dates(min_value=dt.date(AS_OF.year - MAX_AGE_ALIVE + 1, 1, 1), max_value=AS_OF),
    st.integers(0, 999),
)


def single_errors(pid: str) -> set[str]:
    """Every one-digit substitution in the body and every adjacent transposition of differing characters."""
    out = {pid[:i] + d + pid[i + 1:] for i in range(17) for d in "0123456789" if d != pid[i]}
    out |= {pid[:i] + pid[i + 1] + pid[i] + pid[i + 2:] for i in range(17) if pid[i] != pid[i + 1]}
    return out


@PROPERTY
@given(*ID_PARTS)
def test_every_single_substitution_and_adjacent_transposition_is_rejected(area: str, birth: dt.date, seq: int) -> None:
    original = make_id(area, birth, seq)
    assert is_valid_18(original)
    mutants = sorted(single_errors(original))

    def row(pid: str) -> dict[str, Any]:
        return {"person_id": pid, "name": "张三", "birth_date": birth.isoformat(), "district_code": "310115",
                "hukou_since": None, "hukou_out_date": None, "death_date": None, "channel": None, "card_no": None}

    v = validate(frame([row(original), *[row(m) for m in mutants]]), AS_OF, CHANNELS)
    assert v.clean["person_id"].to_list() == [original]  # the control row passes, no mutant does
    q = v.quarantine.sort("row_no")
    assert q["row_no"].to_list() == list(range(2, len(mutants) + 2))
    assert q["person_id"].to_list() == mutants
    bad = q.filter(~pl.col("reason").is_in(["ID_CHECKSUM", "ID_FORMAT", "BIRTH_MISMATCH"]))
    assert bad.height == 0, bad.to_dicts()


@PROPERTY
@given(*ID_PARTS)
def test_a_digit_typed_in_another_script_is_never_clean(area: str, birth: dt.date, seq: int) -> None:
    """SPEC §3: the ID is GB 11643-1999's 17 digits and a check character — ASCII 0–9 and X only.

    A fullwidth "０" looks like "0" on a clerk's screen but is not the digit the bank and the
    other registries hold; such a row must be quarantined, never paid under a second identity.
    """
    original = make_id(area, birth, seq)
    mutants = sorted({original[:i] + chr(ord(z) + int(original[i])) + original[i + 1:]
                      for i in range(17) for z in LOOKALIKE_ZEROS})

    def row(pid: str) -> dict[str, Any]:
        return {"person_id": pid, "name": "张三", "birth_date": birth.isoformat(), "district_code": "310115",
                "hukou_since": None, "hukou_out_date": None, "death_date": None, "channel": None, "card_no": None}

    v = validate(frame([row(m) for m in mutants]), AS_OF, CHANNELS)
    assert v.clean["person_id"].to_list() == []
    assert v.quarantine.height == len(mutants)
    bad = v.quarantine.filter(~pl.col("reason").is_in(["ID_FORMAT", "ID_CHECKSUM"]))
    assert bad.height == 0, bad.to_dicts()


@PROPERTY
@given(
    st.from_regex(r"[0-9]{6,32}", fullmatch=True),
    st.sampled_from(LOOKALIKE_ZEROS),
    st.data(),
)
def test_a_card_number_with_a_non_ascii_digit_is_quarantined(card: str, zero: str, data: st.DataObject) -> None:
    """SPEC §3/§6: card_no is the account number in digits that the bank file carries."""
    i = data.draw(st.integers(0, len(card) - 1))
    typed = card[:i] + chr(ord(zero) + int(card[i])) + card[i + 1:]
    birth = dt.date(1950, 3, 4)
    rows = [
        {"person_id": make_id("310101", birth, n), "name": "张三", "birth_date": birth.isoformat(),
         "district_code": "310115", "hukou_since": None, "hukou_out_date": None, "death_date": None,
         "channel": "senior_card", "card_no": c}
        for n, c in enumerate([card, typed])
    ]
    v = validate(frame(rows), AS_OF, CHANNELS)
    assert v.clean["card_no"].to_list() == [card]
    assert v.quarantine["reason"].to_list() == ["BAD_CARD"]


@PROPERTY
@given(messy_extracts(), st.integers(1, 7))
def test_blocks_change_nothing(rows: list[dict[str, Any]], block: int) -> None:
    """Validation takes the extract a block of rows at a time; any block size gives the same
    clean rows, quarantine (row numbers, reasons, text as read) and counts as one block, even
    when a duplicate's two rows fall in different blocks."""
    whole = validate(frame(rows), AS_OF, CHANNELS)
    blocked = validate(frame(rows), AS_OF, CHANNELS, block_rows=block)
    assert blocked.clean.equals(whole.clean)
    assert blocked.quarantine.equals(whole.quarantine)
    assert blocked.summary() == whole.summary()
