"""A Parquet extract's date columns in types other than a date (audit five): an integer or a
categorical is read as text, so what is not a YYYY-MM-DD date is BAD_DATE, never no date at all
(a death read as null pays a dead person); a timestamp with a time zone is a Shanghai date (a
local midnight stored in UTC is 16:00 the day before, and its UTC date is a day early)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from allowance import registry, rules
from allowance.testing import person, registry_frame, write_registry

AS_OF = dt.date(2025, 7, 1)


def _validated(df: pl.DataFrame, tmp_path: Path) -> registry.Validated:
    path = write_registry(df, tmp_path / "extract.parquet")
    return registry.load_and_validate(path, AS_OF, rules.load(rules.DEFAULT_RULES_DIR).channels(),
                                      max_quarantine_share=1.0)


def test_an_integer_or_categorical_date_is_text_and_bad_if_not_a_date(tmp_path: Path) -> None:
    rows = [person("1950-01-01", seq=1), person("1950-01-02", seq=2, death_date=dt.date(2025, 2, 10)),
            person("1950-01-03", seq=3, hukou_out_date=dt.date(2025, 3, 31))]
    base = registry_frame(rows)
    as_int = base.with_columns(pl.col(c).dt.strftime("%Y%m%d").cast(pl.Int64) for c in ("death_date", "hukou_out_date"))
    as_cat = base.with_columns(pl.col(c).dt.strftime("%Y/%m/%d").cast(pl.Categorical)
                               for c in ("death_date", "hukou_out_date"))
    for df in (as_int, as_cat):
        v = _validated(df, tmp_path)
        assert v.clean["person_id"].to_list() == [rows[0]["person_id"]]
        assert v.quarantine.select("person_id", "reason").rows() == [
            (rows[1]["person_id"], "BAD_DATE"), (rows[2]["person_id"], "BAD_DATE")]
    # text in the right form, in a categorical, is read as the date it says
    good = base.with_columns(pl.col("death_date").dt.strftime("%Y-%m-%d").cast(pl.Categorical))
    v = _validated(good, tmp_path)
    assert v.quarantine.height == 0 and v.clean["death_date"].to_list() == [None, dt.date(2025, 2, 10), None]


def test_a_timestamp_with_a_time_zone_is_read_as_a_shanghai_date(tmp_path: Path) -> None:
    rows = [person("1950-01-01", seq=1, death_date=dt.date(2025, 7, 1)), person("1950-01-02", seq=2)]
    base = registry_frame(rows)
    dates = ("birth_date", "hukou_since", "hukou_out_date", "death_date")
    utc = base.with_columns(pl.col(c).cast(pl.Datetime("us")).dt.replace_time_zone("Asia/Shanghai")
                            .dt.convert_time_zone("UTC") for c in dates)
    assert utc["death_date"][0] == dt.datetime(2025, 6, 30, 16, 0, tzinfo=dt.UTC)  # as exports store it
    v = _validated(utc, tmp_path)
    assert v.quarantine.height == 0
    assert v.clean.select(dates).rows() == base.select(dates).rows()
    naive = base.with_columns(pl.col(c).cast(pl.Datetime("us")) for c in dates)
    assert _validated(naive, tmp_path).clean.select(dates).rows() == base.select(dates).rows()
