"""Orders built by batch.place_order (two cheap sorts) must be those of a plain sort: the line order and
the change report's."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allowance import idcard
from allowance.batch import change_report, place_order
from allowance.idcard import make_id


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 10**18)), min_size=1, max_size=50,
                unique_by=lambda t: t[1]))
def test_place_order_is_the_two_column_sort(rows: list[tuple[int, int]]) -> None:
    group = pl.Series([g for g, _ in rows], dtype=pl.Int32)
    key = pl.Series([k for _, k in rows], dtype=pl.Int64)
    expected = pl.DataFrame({"g": group, "k": key}).select(pl.arg_sort_by("g", "k")).to_series().to_numpy()
    assert np.array_equal(place_order(group, key), expected)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["310115", "310101", "310104"]), st.sampled_from(["NEW", "BAND_CHANGE",
                                                                                          "CONTINUING"]),
                          st.integers(0, 999)), min_size=1, max_size=30, unique_by=lambda t: t[2]),
       st.lists(st.integers(0, 999), max_size=5, unique=True))
def test_the_change_report_is_by_district_change_and_person(lines: list[tuple[str, str, int]],
                                                             stopped: list[int]) -> None:
    """batch.change_report orders its rows by district, change code and person (the ID's text order)."""
    ids = {n: make_id("310101", dt.date(1950, 1, 1), n) for n in {n for _, _, n in lines} | set(stopped)}
    frame = pl.DataFrame(
        {"line_type": "PAYMENT", "district_code": [d for d, _, _ in lines], "person_id": [ids[n] for *_, n in lines],
         "channel": "senior_card", "card_no": "6200000000", "reason": [r for _, r, _ in lines],
         "amount_fen": [100 * n for *_, n in lines]})
    stops = pl.DataFrame({"person_id": [ids[n] for n in stopped], "cause": ["DEATH"] * len(stopped),
                          "last_fen": [7500] * len(stopped)},
                         schema={"person_id": pl.String, "cause": pl.String, "last_fen": pl.Int64}).with_columns(
        _k=idcard.order_key_expr("person_id"))
    people = frame.select("person_id", "district_code").with_columns(_k=idcard.order_key_expr("person_id"))
    switched = pl.DataFrame(schema={"_k": pl.Int64, "last_channel": pl.String, "last_card_no": pl.String})
    report = change_report(frame, stops, people, switched, "B1")
    rows = report.select("district_code", "change", "person_id").rows()
    assert rows == sorted(rows)
    expected = sum(r in ("NEW", "BAND_CHANGE") for _, r, _ in lines) + len(stopped)
    assert report.height == expected


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["310115", "310101", "999999"]), st.sampled_from(["NEW", "BAND_CHANGE",
                                                                                          "CONTINUING"]),
                          st.integers(0, 999), st.sampled_from(["PAYMENT", "RECOVERY"])),
                min_size=1, max_size=30, unique_by=lambda t: t[2]),
       st.lists(st.tuples(st.integers(0, 999), st.sampled_from(["DEATH", "MIGRATION", "NOT_IN_EXTRACT", "OTHER"])),
                max_size=5, unique_by=lambda t: t[0]),
       st.lists(st.integers(0, 999), max_size=8, unique=True))
def test_the_change_report_lists_each_change_once(lines: list[tuple[str, str, int, str]],
                                                   stopped: list[tuple[int, str]], switched: list[int]) -> None:
    """Every new entrant, band change, channel change and stop, with its district and amount, and
    nothing else: the rows a plain loop over the lines and stops gives (the test above holds the order)."""
    ids = {n: make_id("310101", dt.date(1950, 1, 1), n) for n in {n for *_, n, _ in lines} | {n for n, _ in stopped}
           | set(switched)}
    frame = pl.DataFrame(
        {"line_type": [t for *_, t in lines], "district_code": [d for d, *_ in lines],
         "person_id": [ids[n] for *_, n, _ in lines], "reason": [r for _, r, *_ in lines],
         "amount_fen": [100 * n for *_, n, _ in lines]},
        schema={"line_type": pl.String, "district_code": pl.String, "person_id": pl.String, "reason": pl.String,
                "amount_fen": pl.Int64})
    stops = pl.DataFrame({"person_id": [ids[n] for n, _ in stopped], "cause": [c for _, c in stopped],
                          "last_fen": [7500] * len(stopped)},
                         schema={"person_id": pl.String, "cause": pl.String, "last_fen": pl.Int64}).with_columns(
        _k=idcard.order_key_expr("person_id"))
    people = frame.select("person_id", "district_code").with_columns(_k=idcard.order_key_expr("person_id"))
    moved = pl.DataFrame({"p": [ids[n] for n in switched]}, schema={"p": pl.String}).select(
        idcard.order_key_expr("p").alias("_k"))
    report = change_report(frame, stops, people, moved, "B1")
    district = {ids[n]: d for d, _, n, _ in lines}
    expected = [(d, {"NEW": "NEW_ENTRANT", "BAND_CHANGE": "BAND_CHANGE"}[r], ids[n], 100 * n)
                for d, r, n, t in lines if t == "PAYMENT" and r in ("NEW", "BAND_CHANGE")]
    expected += [(d, "CHANNEL_CHANGE", ids[n], 100 * n) for d, _, n, t in lines if t == "PAYMENT" and n in switched]
    expected += [(district.get(ids[n], "unknown"), f"STOP_{c}", ids[n], 7500) for n, c in stopped]
    assert sorted(report.select("district_code", "change", "person_id", "fen").rows()) == sorted(expected)
    assert report["batch_id"].to_list() == ["B1"] * len(expected)


def test_place_order_refuses_a_group_too_large_for_its_radix_sort() -> None:
    with pytest.raises(ValueError, match="group values"):
        place_order(pl.Series([0, 1 << 15]), pl.Series([1, 2]))
