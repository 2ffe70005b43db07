"""The synthetic registry must look like Shanghai's and break only where it says it does."""

from __future__ import annotations

import datetime as dt
import pathlib

import numpy as np
import polars as pl
import pytest

from allowance.constants import CHANNELS, DISTRICTS, QUARANTINE_REASONS, REGISTRY_COLUMNS
from allowance.generator import BAD_KINDS, BAND_TARGETS, REFERENCE_PEOPLE, generate_registry, write_registry
from allowance.idcard import check_digit, id_birth_expr, id_checksum_ok_expr, id_shape_ok_expr, normalized_id_expr

AS_OF = dt.date(2025, 7, 1)
N = 200_000
SCHEMA = {
    "person_id": pl.String,
    "name": pl.String,
    "birth_date": pl.Date,
    "district_code": pl.String,
    "hukou_since": pl.Date,
    "hukou_out_date": pl.Date,
    "death_date": pl.Date,
    "channel": pl.String,
    "card_no": pl.String,
}


@pytest.fixture(scope="module")
def reg() -> pl.DataFrame:
    return generate_registry(N, 11, AS_OF)


def _age() -> pl.Expr:
    b = pl.col("birth_date")
    later = b.dt.month().cast(pl.Int32) * 100 + b.dt.day() > AS_OF.month * 100 + AS_OF.day
    return AS_OF.year - b.dt.year() - later.cast(pl.Int32)


def _reasons(df: pl.DataFrame) -> pl.Series:
    """First failing SPEC §3 check per row (null when clean): an independent mini-validator."""
    pid = normalized_id_expr()
    dates = pl.col("hukou_since", "hukou_out_date", "death_date")
    checks = {
        "MISSING_FIELD": pl.any_horizontal(pl.col("person_id", "name", "birth_date", "district_code").is_null()),
        "ID_FORMAT": ~id_shape_ok_expr("pid"),
        "ID_CHECKSUM": ~id_checksum_ok_expr("pid"),
        "BIRTH_MISMATCH": id_birth_expr("pid") != pl.col("birth_date"),
        "BIRTH_IN_FUTURE": pl.col("birth_date") > AS_OF,
        "DEATH_BEFORE_BIRTH": pl.col("death_date") < pl.col("birth_date"),
        "HUKOU_DATES": (pl.col("hukou_out_date") < pl.col("hukou_since"))
        | (pl.col("hukou_since") < pl.col("birth_date")),
        "FUTURE_FACT": pl.any_horizontal(dates > AS_OF),
        "UNKNOWN_DISTRICT": ~pl.col("district_code").is_in(list(DISTRICTS)),
        "BAD_CHANNEL": ~pl.col("channel").is_in(list(CHANNELS)),
        "CARD_MISSING": pl.col("channel").is_not_null() & pl.col("card_no").is_null(),
        "BAD_CARD": ~pl.col("card_no").str.contains(r"^\d{16,19}$"),
        "DUPLICATE_ID": pl.col("pid").is_duplicated(),
    }
    assert set(checks) <= set(QUARANTINE_REASONS)
    reason = pl.lit(None, dtype=pl.String)
    for code in reversed([c for c in QUARANTINE_REASONS if c in checks]):
        reason = pl.when(checks[code].fill_null(False)).then(pl.lit(code)).otherwise(reason)
    return df.with_columns(pid=pid).select(reason.alias("reason")).to_series()


def test_same_seed_same_frame_with_exact_schema() -> None:
    a = generate_registry(20_000, 5, AS_OF)
    assert a.equals(generate_registry(20_000, 5, AS_OF))
    assert not a.equals(generate_registry(20_000, 6, AS_OF))
    assert a.columns == list(REGISTRY_COLUMNS)
    assert dict(a.schema) == SCHEMA
    assert a.height == 20_000


def test_age_bands_match_shanghai(reg: pl.DataFrame) -> None:
    """The brief's figures count the living: the year's dead and moved out are left out."""
    living = reg["death_date"].is_null() & reg["hukou_out_date"].is_null()
    age = reg.filter(living).select(_age()).to_series()

    def expected(lo: int, hi: int) -> float:
        return sum(v for (a, b), v in BAND_TARGETS.items() if a >= lo and b <= hi) / REFERENCE_PEOPLE * N

    for lo, hi, tolerance in [(65, 200, 0.03), (80, 200, 0.03), (65, 69, 0.03), (70, 79, 0.03), (100, 200, 0.25)]:
        got = int(age.is_between(lo, hi).sum())
        assert abs(got / expected(lo, hi) - 1) < tolerance, (lo, hi, got, expected(lo, hi))
    everyone = reg.select(_age()).to_series()
    assert everyone.filter(reg["birth_date"] <= AS_OF).min() == 0
    assert everyone.max() <= 110


def test_districts(reg: pl.DataFrame) -> None:
    counts = reg.filter(pl.col("district_code").is_in(list(DISTRICTS)))["district_code"].value_counts(sort=True)
    assert counts["district_code"][0] == "310115"  # 浦东新区
    assert counts.height == 16
    small = generate_registry(1_000, 2, AS_OF)["district_code"]
    assert set(DISTRICTS) <= set(small)


def test_ids_are_valid_unique_and_carry_the_birthplace(reg: pl.DataFrame) -> None:
    clean = reg.filter(_reasons(reg).is_null())
    pid = clean.select(normalized_id_expr()).to_series()
    assert pid.str.len_chars().eq(18).all()
    assert pid.n_unique() == clean.height
    sample = pid.sample(2_000, seed=1)
    assert all(check_digit(p[:17]) == p[17] for p in sample)
    raw = clean["person_id"]
    assert 0.001 < raw.str.len_chars().eq(15).mean() < 0.006  # legacy 15-digit form
    assert 0.001 < raw.str.ends_with("x").mean() < 0.006  # lower-case check character
    same = (reg["person_id"].str.slice(0, 6) == reg["district_code"]).mean()
    assert 0.05 < same < 0.5
    assert reg["person_id"].str.starts_with("31").mean() == pytest.approx(0.6, abs=0.05)


def test_no_fact_after_as_of_except_future_births(reg: pl.DataFrame) -> None:
    future = reg.filter(pl.any_horizontal(pl.col("birth_date", "hukou_since", "hukou_out_date", "death_date") > AS_OF))
    assert future.height > 0
    assert (future["birth_date"] > AS_OF).all()
    assert future.select(pl.col("hukou_since", "hukou_out_date", "death_date").is_null().all()).row(0) == (
        True,
        True,
        True,
    )


def test_events_of_the_last_year(reg: pl.DataFrame) -> None:
    good = reg.filter(_reasons(reg).is_null()).with_columns(age=_age())
    year_ago = AS_OF - dt.timedelta(days=365)
    for col in ("death_date", "hukou_out_date"):
        assert (good[col].drop_nulls() > year_ago).all()
    band = pl.sum_horizontal([(pl.col("age") >= cut).cast(pl.Int8) for cut in (65, 70, 80, 90, 100)])
    deaths = good.group_by(band.alias("band")).agg(pl.col("death_date").is_not_null().mean())
    rates = deaths.sort("band")["death_date"].to_list()
    assert rates == sorted(rates) and rates[0] < 0.003 and rates[-1] > 0.2
    assert good["hukou_out_date"].is_not_null().mean() == pytest.approx(0.003, abs=0.0015)
    since = good["hukou_since"]
    assert (since > year_ago).mean() == pytest.approx(0.005 / 0.105, abs=0.01)
    assert since.is_not_null().mean() == pytest.approx(0.105, abs=0.01)


def test_cards(reg: pl.DataFrame) -> None:
    old = reg.filter(_age() >= 65)
    assert old["channel"].is_null().mean() == pytest.approx(0.01, abs=0.003)
    carded = old.filter(pl.col("channel").is_not_null())
    assert (carded["channel"] == "senior_card").mean() == pytest.approx(0.45, abs=0.02)
    assert reg["card_no"].drop_nulls().str.contains(r"^\d{16,19}$").all()


@pytest.mark.parametrize("people", [2_000, 6_000, N])
def test_bad_rows_stay_under_threshold_and_cover_every_reason_when_there_is_room(
    people: int, reg: pl.DataFrame
) -> None:
    df = reg if people == N else generate_registry(people, 3, AS_OF)
    counts = dict(_reasons(df).drop_nulls().value_counts().iter_rows())
    per, rem = divmod(round(people * 0.002), len(BAD_KINDS) + 1)
    want = {k: (per + (i < rem)) * (2 if k == "DUPLICATE_ID" else 1) for i, k in enumerate(BAD_KINDS)}
    assert counts == {k: v for k, v in want.items() if v}
    assert sum(counts.values()) / people <= 0.003  # under the engine's default 0.5 % at every size
    if people >= 6_000:
        assert set(counts) == set(BAD_KINDS)
    if people == N:
        bad = df.filter(_reasons(df).is_not_null() & (pl.col("birth_date") <= AS_OF))
        assert bad.select((_age() >= 60).all()).item()
    assert generate_registry(people, 3, AS_OF, bad_share=0)["person_id"].is_duplicated().sum() == 0


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_write_registry_round_trips(suffix: str, tmp_path: pathlib.Path) -> None:
    df = generate_registry(3_000, 9, AS_OF)
    path = tmp_path / f"registry{suffix}"
    write_registry(df, path)
    if suffix == ".parquet":
        assert pl.read_parquet(path).equals(df)
    else:
        back = pl.read_csv(path, try_parse_dates=False, infer_schema=False)
        assert back.equals(df.select(pl.all().cast(pl.String)))


def test_write_registry_refuses_other_suffixes(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match=r"\.parquet or \.csv"):
        write_registry(generate_registry(10, 1, AS_OF), tmp_path / "registry.xlsx")


def test_rejects_nonsense_arguments() -> None:
    with pytest.raises(ValueError):
        generate_registry(0, 1, AS_OF)
    with pytest.raises(ValueError):
        generate_registry(10, 1, AS_OF, bad_share=0.5)


def test_a_card_is_one_persons(reg: pl.DataFrame) -> None:
    # A bank account is one person's; the draws put several holders on one short number before
    # _redraw_shared_cards (some 1 500 rows of a million). The engine lists shared cards (CARD_SHARED).
    cards = reg["card_no"].drop_nulls()
    assert cards.len() > 0.9 * reg.height
    assert not cards.is_duplicated().any()


def test_only_the_later_holders_of_a_drawn_card_are_drawn_again() -> None:
    # Audit 19B: a number drawn again that landed on a later untouched row's card made that row give
    # it up. Half of one head's numbers are taken by untouched rows; between their two halves, 2 000
    # rows repeat numbers of the first half (the later holders, drawn again).
    from allowance.generator import _redraw_shared_cards

    rng = np.random.default_rng(5)
    taken = rng.choice(1_000_000, 500_000, replace=False)
    again = rng.choice(taken[:250_000], 2_000, replace=False)
    keys = np.concatenate([taken[:250_000], again, taken[250_000:]])
    head = np.zeros(len(keys), dtype=np.int32)
    mid, tail = (keys // 100).astype(np.int16), (keys % 100).astype(np.int32)
    _redraw_shared_cards(head, mid, tail, seed=1)
    got = mid.astype(np.int64) * 100 + tail
    assert (np.concatenate([got[:250_000], got[252_000:]]) == taken).all(), "every untouched row keeps its card"
    assert (got[250_000:252_000] != again).all() and len(np.unique(got)) == len(got)
