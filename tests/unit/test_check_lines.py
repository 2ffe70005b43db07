"""STYLE 10: the output checks refuse a batch with a bad line, naming what and where."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from allowance.batch import check_lines, repeated_rows
from allowance.errors import RefusedError
from allowance.idcard import make_id, order_key_expr

A = make_id("310101", dt.date(1950, 1, 1), 1)
B = make_id("310101", dt.date(1950, 1, 2), 2)


def lines(*rows: tuple[str, str, str, int, int, str | None]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"line_id": lid, "line_type": lt, "person_id": pid, "amount_fen": amt, "district_fen": amt // 2,
             "municipal_fen": amt - amt // 2 + extra, "channel": ch, "card_no": None if ch is None else "6217001"}
            for lid, lt, pid, amt, extra, ch in rows
        ],
        schema={"line_id": pl.String, "line_type": pl.String, "person_id": pl.String, "amount_fen": pl.Int64,
                "district_fen": pl.Int64, "municipal_fen": pl.Int64, "channel": pl.String, "card_no": pl.String},
    )


def test_good_lines_pass() -> None:
    check_lines(lines(("L1", "PAYMENT", A, 45000, 0, "bank"), ("L2", "RECOVERY", A, -15000, 0, None),
                      ("L3", "PAYMENT", B, 45000, 0, "bank")))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (("L9", "PAYMENT", B, 0, 0, "bank"), "1 payment line(s) not positive, e.g. L9"),
        (("L9", "RECOVERY", B, 100, 0, None), "1 recovery line(s) not negative, e.g. L9"),
        (("L9", "PAYMENT", B, 45000, 1, "bank"), "1 line(s) whose shares do not sum to the amount, e.g. L9"),
        (("L9", "PAYMENT", B, 45000, 0, None), "1 payment line(s) without a card, e.g. L9"),
        (("L9", "PAYMENT", A, 45000, 0, "bank"), "2 payment line(s) of a person paid twice in one batch"),
    ],
)
def test_each_bad_line_is_refused_by_name(bad: tuple[str, str, str, int, int, str | None], message: str) -> None:
    with pytest.raises(RefusedError, match="output checks failed") as e:
        check_lines(lines(("L1", "PAYMENT", A, 45000, 0, "bank"), bad))
    assert message in str(e.value)


def test_the_drafts_own_id_keys_judge_a_person_paid_twice() -> None:
    """A draft passes the ID keys it already has instead of parsing the IDs again: the same answers."""
    good = lines(("L1", "PAYMENT", A, 45000, 0, "bank"), ("L2", "RECOVERY", A, -15000, 0, None),
                 ("L3", "PAYMENT", B, 45000, 0, "bank"))
    check_lines(good, good.select(order_key_expr("person_id")).to_series())
    twice = lines(("L1", "PAYMENT", A, 45000, 0, "bank"), ("L9", "PAYMENT", A, 45000, 0, "bank"))
    with pytest.raises(RefusedError, match=r"2 payment line\(s\) of a person paid twice"):
        check_lines(twice, twice.select(order_key_expr("person_id")).to_series())


@given(st.lists(st.sampled_from([A, B, "310101195001011", "X", ""]) | st.none(), max_size=30))
def test_repeated_rows_counts_every_row_whose_text_recurs(texts: list[str | None]) -> None:
    seen = Counter(t for t in texts if t is not None)
    assert repeated_rows(pl.Series(texts, dtype=pl.String)) == sum(n for n in seen.values() if n > 1)


def test_a_hash_collision_is_not_a_person_paid_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every text hashed alike: only equal texts count."""
    monkeypatch.setattr(pl.Series, "hash", lambda s, *a, **k: pl.repeat(7, s.len(), dtype=pl.UInt64, eager=True))
    assert repeated_rows(pl.Series([A, B, A, "310101195001011"])) == 2
    check_lines(lines(("L1", "PAYMENT", A, 45000, 0, "bank"), ("L3", "PAYMENT", B, 45000, 0, "bank")))


def test_a_line_skipping_months_of_its_period_must_say_which() -> None:
    """Audits 20A, 20C: a line's period may hold months it does not pay (one line per person per
    batch); `periods` names them then, and only then."""
    base = lines(("L1", "PAYMENT", A, 60000, 0, "bank"), ("L2", "PAYMENT", B, 45000, 0, "bank")).with_columns(
        period_from=pl.lit(dt.date(2025, 7, 1)), period_to=pl.Series([dt.date(2025, 12, 1), dt.date(2025, 9, 1)]),
        months=pl.Series([4, 3], dtype=pl.Int32), periods=pl.Series(["2025-07,2025-10..2025-12", None]))
    check_lines(base)
    with pytest.raises(RefusedError, match=r"1 line\(s\) whose `periods` does not say that they skip months of "
                                           r"their period, e.g. L1"):
        check_lines(base.with_columns(periods=pl.lit(None, pl.String)))
    with pytest.raises(RefusedError, match=r"1 line\(s\) whose `periods`.*e.g. L2"):
        check_lines(base.with_columns(periods=pl.Series(["2025-07,2025-10..2025-12", "2025-07..2025-09"])))


@pytest.mark.parametrize("text", ["garbage", "", "2024-01..2024-12", "2025-10..2025-12,2025-07",
                                  "2025-07,2025-10..2025-11", "2025-07..2025-08,2025-09..2025-12",
                                  "2025-07,2025-10..2025-12,", "2025-7,2025-10..2025-12", "2025-07..2025-12"])
def test_periods_that_do_not_name_the_lines_months_are_refused(text: str) -> None:
    """Audit 20D: the checks read only whether `periods` was empty; its text must name the line's
    months: runs in order and apart, from its first month to its last, as many as `months`."""
    base = lines(("L1", "PAYMENT", A, 60000, 0, "bank")).with_columns(
        period_from=pl.lit(dt.date(2025, 7, 1)), period_to=pl.lit(dt.date(2025, 12, 1)),
        months=pl.lit(4, pl.Int32), periods=pl.lit("2025-07,2025-10..2025-12"))
    check_lines(base)
    with pytest.raises(RefusedError, match=r"1 line\(s\) whose `periods` does not name its months, e.g. L1"):
        check_lines(base.with_columns(periods=pl.lit(text)))


def test_the_months_of_a_period_are_counted_exactly_from_its_days() -> None:
    """check_lines counts a line's months from the days between two firsts of a month (integers,
    no calendar): exact for every pair of month starts 1900-2200 up to 50 years apart."""
    starts = pl.date_range(dt.date(1900, 1, 1), dt.date(2200, 12, 1), "1mo", eager=True)
    pairs = pl.DataFrame({"i": range(starts.len())}).join(pl.DataFrame({"k": range(601)}), how="cross").filter(
        pl.col("i") + pl.col("k") < starts.len())
    frame = pairs.select(
        "k", period_from=pl.lit(starts).gather(pl.col("i")), period_to=pl.lit(starts).gather(pl.col("i") + pl.col("k")))
    days = pl.col("period_to").cast(pl.Int64) - pl.col("period_from").cast(pl.Int64)
    assert frame.filter((days * 1_000_000 + 15_218_437) // 30_436_875 != pl.col("k")).height == 0
    assert frame.height == 1_990_512  # every pair


@pytest.mark.parametrize(("first", "last", "months", "text"), [
    (dt.date(2025, 12, 1), dt.date(2026, 2, 1), 2, "2025-12,2025-14"),
    (dt.date(2024, 12, 1), dt.date(2025, 2, 1), 2, "2025-00,2025-02"),
    (dt.date(2025, 7, 1), dt.date(2025, 9, 1), 2, "2025-07,\uff12\uff10\uff12\uff15-\uff10\uff18,2025-09"),
])
def test_periods_with_impossible_months_or_other_digits_are_refused(first: dt.date, last: dt.date, months: int,
                                                                      text: str) -> None:
    """Audit 20E: a month 14 or 00 was read as the next or the last year's, and a run in full-width
    digits was skipped as if it were not there."""
    line = lines(("L1", "PAYMENT", A, 30000, 0, "bank")).with_columns(
        period_from=pl.lit(first), period_to=pl.lit(last), months=pl.lit(months, pl.Int32), periods=pl.lit(text))
    with pytest.raises(RefusedError, match=r"1 line\(s\) whose `periods` does not name its months"):
        check_lines(line)
