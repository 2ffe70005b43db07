"""A Parquet extract's date columns in types other than a date (audit five): an integer or a
categorical is read as text, so what is not a YYYY-MM-DD date is BAD_DATE, never no date at all
(a death read as null pays a dead person); a timestamp with a time zone is a Shanghai date (a
local midnight stored in UTC is 16:00 the day before, and its UTC date is a day early)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from allowance import registry, rules
from allowance.errors import InputError
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


def test_dictionary_and_binary_text_is_trimmed_as_plain_text_is(tmp_path: Path) -> None:
    """An audit: names stored dictionary-encoded or as binary were never trimmed, so a blank name
    (spaces, an ideographic space) was paid instead of quarantined MISSING_FIELD, and a padded one
    went to the bank padded; padded dates in such a column were BAD_DATE."""
    rows = [person("1950-01-01", seq=1), person("1950-01-02", seq=2), person("1950-01-03", seq=3)]
    base = registry_frame(rows).with_columns(
        name=pl.Series(["   ", "\u3000", "\u3000武梅 "]),
        death_date=pl.Series([None, None, " 2025-06-10 "]))
    for dtype in (pl.Categorical, pl.Binary):
        v = _validated(base.with_columns(pl.col("name", "death_date").cast(dtype)), tmp_path)
        assert v.quarantine.select("person_id", "reason").rows() == [
            (rows[0]["person_id"], "MISSING_FIELD"), (rows[1]["person_id"], "MISSING_FIELD")], dtype
        assert v.clean.select("name", "death_date").rows() == [("武梅", dt.date(2025, 6, 10))], dtype


def test_a_naive_timestamp_holding_a_time_of_day_refuses_the_file(tmp_path: Path) -> None:
    """An audit: Spark's INT96 (and pandas' tz_convert(None)) write a Shanghai date as the UTC
    instant of its midnight, 16:00 the day before, with no time zone. Read as Shanghai time, a
    death on 1 July was 30 June and July went unpaid. Which zone it is in cannot be known: refused."""
    rows = [person("1950-01-01", seq=1, death_date=dt.date(2025, 7, 1)), person("1950-01-02", seq=2)]
    utc_instants = registry_frame(rows).with_columns(
        pl.col("death_date").cast(pl.Datetime("ns")).dt.replace_time_zone("Asia/Shanghai")
        .dt.convert_time_zone("UTC").dt.replace_time_zone(None))
    with pytest.raises(InputError, match=r"death_date holds times of day \(2025-06-30 16:00:00\), not dates"):
        _validated(utc_instants, tmp_path)


def test_a_time_just_past_midnight_is_named_with_its_fraction_of_a_second(tmp_path: Path) -> None:
    """Audit 19F: a death date 1 ns past midnight was refused naming the time as `00:00:00`, which
    reads as a midnight: the message shows the fraction that makes it a time of day."""
    rows = [person("1950-01-01", seq=1, death_date=dt.date(2025, 7, 1)), person("1950-01-02", seq=2)]
    frame = registry_frame(rows).with_columns(pl.col("death_date").cast(pl.Datetime("ns")) + pl.duration(nanoseconds=1))
    with pytest.raises(InputError, match=r"death_date holds times of day \(2025-07-01 00:00:00\.000000001\)"):
        _validated(frame, tmp_path)


def test_an_unknown_time_zone_label_is_one_message_naming_the_column(tmp_path: Path) -> None:
    """An audit: a timestamp column labelled 'CST' (or 'GMT+8'), even one the engine does not read,
    made polars panic while reading the schema: 240 lines of trace, not a message."""
    rows = [person("1950-01-01", seq=1)]
    table = registry_frame(rows).to_arrow()
    # 'localtime' and 'posix/...' are in the system's zone database, not polars': a second audit
    for col, tz in (("death_date", "CST"), ("exported_at", "GMT+8"), ("death_date", "localtime"),
                    ("death_date", "posix/Asia/Shanghai")):
        stamps = pa.array([dt.datetime(2025, 6, 30, 16)], pa.timestamp("us", tz=tz))
        t = (table.set_column(table.schema.get_field_index(col), col, stamps) if col in table.column_names
             else table.append_column(col, stamps))
        pq.write_table(t, tmp_path / "tz.parquet")
        with pytest.raises(InputError, match=re.escape(f"column {col} is labelled with time zone '{tz}'")):
            registry.load_and_validate(tmp_path / "tz.parquet", AS_OF, ("senior_card",))
    ok = table.append_column("exported_at", pa.array([dt.datetime(2025, 6, 30, 16)], pa.timestamp("us", tz="+08:00")))
    pq.write_table(ok, tmp_path / "tz.parquet")
    assert registry.load_and_validate(tmp_path / "tz.parquet", AS_OF, ("senior_card",)).rows_in == 1


def test_an_id_or_a_card_number_stored_as_numbers_refuses_the_file(tmp_path: Path) -> None:
    """An audit: card_no stored as integers was read, its leading zero gone for good, into the bank
    files (another account, or none). As integers an ID loses its check digit X; as floating point
    either loses digits. A district code stored as a number is read as its text."""
    rows = [person("1950-01-01", seq=1, district_code="310104"), person("1950-01-02", seq=2, district_code="310104")]
    base = registry_frame(rows).with_columns(card_no=pl.Series(["0217000000000101", "6217000000000102"]))
    for col, dtype in (("card_no", pl.Int64), ("card_no", pl.Float64), ("person_id", pl.Int64),
                       ("person_id", pl.Float64)):
        with pytest.raises(InputError, match=rf"column {col} is stored as numbers \({dtype}\), not text"):
            _validated(base.with_columns(pl.col(col).cast(dtype)), tmp_path)
    v = _validated(base.with_columns(pl.col("district_code").cast(pl.Int64)), tmp_path)
    assert v.quarantine.height == 0 and v.clean["district_code"].to_list() == ["310104", "310104"]
    assert v.clean["card_no"].to_list() == ["0217000000000101", "6217000000000102"]


def test_a_date_past_the_years_polars_formats_is_quarantined_not_a_refused_file(tmp_path: Path) -> None:
    """Audit 18C: one row's Parquet death date at date32's largest (or smallest) value, a sentinel
    some systems write, made polars panic formatting it for the quarantine, and the whole run was
    refused as a damaged file. The row is judged (a fact after the as-of, or a death before birth)
    and quarantined, its date shown as its day number."""
    rows = [person("1950-01-01", seq=1), person("1950-01-02", seq=2), person("1950-01-03", seq=3)]
    table = registry_frame(rows).to_arrow()
    days = [None, 2**31 - 1, -(2**31)]
    at = table.schema.get_field_index("death_date")
    table = table.set_column(at, "death_date", pa.array(days, pa.int32()).cast(pa.date32()))
    path = tmp_path / "extract.parquet"
    pq.write_table(table, path)
    v = registry.load_and_validate(path, AS_OF, rules.load(rules.DEFAULT_RULES_DIR).channels(),
                                   max_quarantine_share=1.0)
    assert v.clean["person_id"].to_list() == [rows[0]["person_id"]]
    assert v.quarantine["person_id"].to_list() == [rows[1]["person_id"], rows[2]["person_id"]]
    assert v.quarantine["death_date"].to_list() == [f"day {2**31 - 1}", f"day {-(2**31)}"]


def test_a_timestamp_that_gives_no_date_is_bad_date_not_no_date(tmp_path: Path) -> None:
    """Audit 18E: a death date stored as timestamp[ms] at the largest whole day the type holds (a
    sentinel) came out of the conversion as no date: the row was clean and the person alive. A
    timestamp that gives no date is BAD_DATE."""
    rows = [person("1950-01-01", seq=1), person("1950-01-02", seq=2), person("1950-01-03", seq=3)]
    table = registry_frame(rows).to_arrow()
    at = table.schema.get_field_index("death_date")
    biggest = (2**63 - 1) // 86_400_000 * 86_400_000
    table = table.set_column(at, "death_date", pa.array([None, biggest, None], pa.int64()).cast(pa.timestamp("ms")))
    path = tmp_path / "extract.parquet"
    pq.write_table(table, path)
    v = registry.load_and_validate(path, AS_OF, rules.load(rules.DEFAULT_RULES_DIR).channels(),
                                   max_quarantine_share=1.0)
    assert v.clean["person_id"].to_list() == [rows[0]["person_id"], rows[2]["person_id"]]
    assert v.quarantine.select("person_id", "reason").rows() == [(rows[1]["person_id"], "BAD_DATE")]


def test_a_time_zone_timestamp_that_gives_no_date_is_bad_date_not_a_refused_file(tmp_path: Path) -> None:
    """Audit 18F: the same sentinel in a timestamp labelled with its time zone made polars panic in
    the conversion, and the whole extract was refused as cut short. It is BAD_DATE too."""
    rows = [person("1950-01-01", seq=1), person("1950-01-02", seq=2)]
    table = registry_frame(rows).to_arrow()
    at = table.schema.get_field_index("death_date")
    biggest = (2**63 - 1) // 86_400_000 * 86_400_000
    for zone in ("UTC", "Asia/Shanghai"):
        stamped = pa.array([None, biggest], pa.int64()).cast(pa.timestamp("ms", tz=zone))
        path = tmp_path / f"extract-{zone.replace('/', '_')}.parquet"
        pq.write_table(table.set_column(at, "death_date", stamped), path)
        v = registry.load_and_validate(path, AS_OF, rules.load(rules.DEFAULT_RULES_DIR).channels(),
                                       max_quarantine_share=1.0)
        assert v.quarantine.select("person_id", "reason").rows() == [(rows[1]["person_id"], "BAD_DATE")], zone


def test_a_naive_timestamp_sentinel_is_bad_date_not_a_panic(tmp_path: Path) -> None:
    """Audit 19C: a naive timestamp at int64's largest value (not a midnight) made polars panic in
    the times-of-day check, and the whole extract was refused as undecodable, naming no column. It
    is BAD_DATE in its row; a real time of day in the same file is still refused, naming it."""
    rows = [person("1950-01-01", seq=1), person("1950-01-02", seq=2)]
    table = registry_frame(rows).to_arrow()
    at = table.schema.get_field_index("death_date")
    for unit in ("ms", "us"):
        stamped = pa.array([None, 2**63 - 1], pa.int64()).cast(pa.timestamp(unit))
        path = tmp_path / f"extract-{unit}.parquet"
        pq.write_table(table.set_column(at, "death_date", stamped), path)
        v = registry.load_and_validate(path, AS_OF, rules.load(rules.DEFAULT_RULES_DIR).channels(),
                                       max_quarantine_share=1.0)
        assert v.quarantine.select("person_id", "reason").rows() == [(rows[1]["person_id"], "BAD_DATE")], unit
    hours = 86_400_000_000 * 20_000 + 3_600_000_000 * 16  # 2024-10-04 16:00, beside the sentinel
    stamped = pa.array([hours, 2**63 - 1], pa.int64()).cast(pa.timestamp("us"))
    path = tmp_path / "extract-hours.parquet"
    pq.write_table(table.set_column(at, "death_date", stamped), path)
    with pytest.raises(InputError, match=r"death_date holds times of day \(2024-10-04 16:00:00\)"):
        registry.load_and_validate(path, AS_OF, rules.load(rules.DEFAULT_RULES_DIR).channels(),
                                   max_quarantine_share=1.0)


def test_nanosecond_dates_keep_their_range_and_a_birth_sentinel_is_bad_date(tmp_path: Path) -> None:
    """Audit 19F: nanosecond timestamps were bounded at 1<<62 (1823-2116), so a death dated 2200
    gave no date (BAD_DATE, not FUTURE_FACT); and a birth date at the type's largest value was
    MISSING_FIELD, not BAD_DATE."""
    rows = [person("1950-01-01", seq=1), person("1950-01-02", seq=2)]
    table = registry_frame(rows).to_arrow()
    channels = rules.load(rules.DEFAULT_RULES_DIR).channels()
    later = (dt.date(2200, 1, 1) - dt.date(1970, 1, 1)).days * 86_400 * 10**9
    for zone in (None, "UTC"):
        died = pa.array([None, later], pa.int64()).cast(pa.timestamp("ns", tz=zone))
        path = tmp_path / f"died-{zone}.parquet"
        pq.write_table(table.set_column(table.schema.get_field_index("death_date"), "death_date", died), path)
        v = registry.load_and_validate(path, AS_OF, channels, max_quarantine_share=1.0)
        assert v.quarantine.select("person_id", "reasons").rows() == [(rows[1]["person_id"], "FUTURE_FACT")], zone
        born = pa.array([None, 2**63 - 1], pa.int64()).cast(pa.timestamp("us", tz=zone))
        path = tmp_path / f"born-{zone}.parquet"
        pq.write_table(table.set_column(table.schema.get_field_index("birth_date"), "birth_date", born), path)
        v = registry.load_and_validate(path, AS_OF, channels, max_quarantine_share=1.0)
        assert v.quarantine.select("reason").to_series().to_list() == ["MISSING_FIELD", "BAD_DATE"], zone


def test_a_column_of_records_or_lists_refuses_the_file(tmp_path: Path) -> None:
    """Audit 31B: a name held as a record ({"x": ...}) was read as its text and written into the
    bank files as `{"x"}`. Any of SPEC §3's columns holding nested values refuses the file, naming it."""
    rows = [person("1950-01-01", seq=1), person("1950-01-02", seq=2)]
    base = registry_frame(rows)
    for col, nested in (("name", pl.struct(x=pl.col("name"))), ("card_no", pl.concat_list("card_no")),
                        ("birth_date", pl.concat_list("birth_date"))):
        with pytest.raises(InputError, match=rf"column {col} holds nested values \((Struct|List)"):
            _validated(base.with_columns(nested.alias(col)), tmp_path)
