"""What orders a bounce's credit before its return (SPEC §8; audits 20A, 20D): settled_at as a local
date, with a time of day or not, and nothing else."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from allowance.returns import line_fates, read_bank_returns, settled_before, unordered_in_file


@pytest.mark.parametrize(
    ("paid", "failed", "before"),
    [
        ("2025-07-16", "2025-07-20", True),
        ("2025-07-16 09:00", "2025-07-16 15:00:00", True),
        ("2025-07-16T09:00:00", "2025-07-16 15:00", True),
        ("2025-07-16 15:00", "2025-07-16 09:00", False),
        ("2025-07-16", "2025-07-16 15:00", False),  # a date beside a time that day: which came first is unknown
        ("2025-07-16 09:00", "2025-07-16", False),
        ("2025-07-16 09:00:00.000000", "2025-07-16 10:00:00.000000", True),  # a Parquet timestamp read as text
        ("2025-07-16 10:00:00.000500", "2025-07-16 10:00:00.000600", True),
        ("2025-07-16 10:00:00.000000", "2025-07-16 10:00:00", False),
        ("2025-07-16 10:00:00", "2025-07-16 10:00:00.000000", False),  # one instant spelled two ways (audit 20F)
        ("2025-07-16 10:00:00.1", "2025-07-16 10:00:00.10", False),
        ("2025-07-16 10:00:00.1", "2025-07-16 10:00:00.11", True),
        ("2025-07-16 10:00", "2025-07-16 10:00:00.5", True),
        ("2025-07-16 09:00:00.000000+08:00", "2025-07-16 10:00:00.000000+08:00", False),
        ("2025-07-16 09:99", "2025-07-16 10:00", False),  # no such time (audit 20E)
        ("2025-07-16 24:30", "2025-07-16 23:00", False),
        ("2025-07-16", "2025-07-16", False),
        ("2025-07-16T05:00:00Z", "2025-07-16T10:00:00+08:00", False),  # an offset: no order (audit 20D)
        ("2025-07-16T05:00:00+08:00", "2025-07-20", False),
        ("2025/07/16", "2025-07-20", False),
        ("20250716", "2025-07-20", False),
        (None, "2025-07-20", False),
        ("2025-07-16", None, False),
    ],
)
def test_a_paid_is_before_a_failure_only_when_its_settled_at_says_so(paid: str | None, failed: str | None,
                                                                      before: bool) -> None:
    frame = pl.DataFrame({"a": [paid], "b": [failed]}, schema={"a": pl.String, "b": pl.String})
    assert frame.select(settled_before("a", "b")).item() is before


def _file(tmp_path: Path, rows: list[tuple[str, str, str | None]]) -> Path:
    f = tmp_path / "returns.csv"
    pl.DataFrame(rows, schema={"line_id": pl.String, "status": pl.String, "settled_at": pl.String},
                 orient="row").write_csv(f)
    return f


def test_one_file_states_a_bounce_or_a_retry_only_in_a_known_order(tmp_path: Path) -> None:
    """The file's rows are all kept; a PAID and a FAILED of one line in no known order are the
    ledger's to refuse, among the rows not on record (unordered_in_file; audit 25A)."""
    ok = read_bank_returns(_file(tmp_path, [("L1", "PAID", "2025-07-16"), ("L1", "FAILED", "2025-07-20")]))
    assert ok.select("line_id", "status").rows() == [("L1", "PAID"), ("L1", "FAILED")]
    assert unordered_in_file(ok).height == 0
    retry = read_bank_returns(_file(tmp_path, [("L1", "PAID", "2025-07-20"), ("L1", "FAILED", "2025-07-16")]))
    assert retry.select("line_id", "status").rows() == [("L1", "PAID"), ("L1", "FAILED")]
    assert unordered_in_file(retry).height == 0
    for paid, failed in (("2025-07-16", "2025-07-16 10:00"), ("2025-07-16", "2025-07-16"),
                         ("2025-07-16T05:00:00Z", "2025-07-16T10:00:00+08:00"), ("2025/07/16", "2025-07-20"),
                         (None, "2025-07-20"), (None, None)):
        both = read_bank_returns(_file(tmp_path, [("L1", "PAID", paid), ("L1", "FAILED", failed)]))
        assert unordered_in_file(both).rows() == [("L1", paid, failed)]


def test_every_notice_of_a_line_is_kept_and_each_paid_is_ordered_with_each_failure(tmp_path: Path) -> None:
    """Audit 20D: of two PAID rows the first was kept, so whether it passed as a bounce's credit
    depended on the rows' order. Every row is kept now (a failed attempt, the retry's credit and
    its bounce may come in one file); the same row twice is one."""
    same = read_bank_returns(_file(tmp_path, [("L1", "PAID", "2025-07-16"), ("L1", "PAID", "2025-07-16")]))
    assert same.height == 1
    story = [("L1", "FAILED", "2025-07-09"), ("L1", "PAID", "2025-07-10"), ("L1", "FAILED", "2025-07-20")]
    assert read_bank_returns(_file(tmp_path, story)).select("status", "settled_at").rows() == [
        ("FAILED", "2025-07-09"), ("PAID", "2025-07-10"), ("FAILED", "2025-07-20")]
    assert unordered_in_file(story_df := read_bank_returns(_file(tmp_path, story))).height == 0, story_df
    late = read_bank_returns(_file(tmp_path, [*story, ("L1", "PAID", "2025-07-20")]))
    assert unordered_in_file(late).rows() == [("L1", "2025-07-20", "2025-07-20")]


def test_a_parquet_return_with_date_or_timestamp_settled_at_orders_a_bounce(tmp_path: Path) -> None:
    """A bank's Parquet file may hold settled_at as a date or a timestamp, read as text."""
    import datetime as dt

    for paid, failed in ((dt.date(2025, 7, 16), dt.date(2025, 7, 20)),
                         (dt.datetime(2025, 7, 16, 9), dt.datetime(2025, 7, 16, 15))):
        f = tmp_path / "returns.parquet"
        pl.DataFrame({"line_id": ["L1", "L1"], "status": ["PAID", "FAILED"], "settled_at": [paid, failed]}
                     ).write_parquet(f)
        assert read_bank_returns(f).select("status").to_series().to_list() == ["PAID", "FAILED"]


def _fates(recorded: list[tuple[str, str | None]], fresh: list[tuple[str, str | None]],
           was_reversed: bool) -> str | None:
    schema = {"status": pl.String, "settled_at": pl.String}
    def frame(rows: list[tuple[str, str | None]]) -> pl.DataFrame:
        return pl.DataFrame(rows, schema=schema, orient="row").select(line_id=pl.lit("L1"), status="status",
                                                                       settled_at="settled_at")
    out = line_fates(frame(recorded), frame(fresh), pl.DataFrame({"line_id": ["L1"] if was_reversed else []},
                                                                 schema={"line_id": pl.String}))
    assert out["line_id"].to_list() == ["L1"] and out["was_reversed"].to_list() == [was_reversed]
    return out["fate"][0]


@pytest.mark.parametrize(
    ("recorded", "fresh", "was_reversed", "fate"),
    [
        ([], [("PAID", "2025-08-10")], False, "PAID"),
        ([], [("FAILED", "2025-08-10")], False, "FAILED"),
        ([("FAILED", "2025-08-16")], [("PAID", "2025-08-20")], True, "PAID"),  # a retry the bank paid
        ([("FAILED", "2025-08-20")], [("PAID", "2025-08-10")], True, "FAILED"),  # a bounce's credit, read late
        ([("PAID", "2025-08-20")], [("FAILED", "2025-08-16")], False, "PAID"),  # an earlier attempt
        ([("PAID", "2025-08-20")], [("FAILED", "2025-08-25")], False, "FAILED"),  # a bounce
        ([("PAID", "2025-08-20")], [("FAILED", None)], False, "FAILED"),  # undated after a credit: a bounce
        ([("FAILED", "2025-08-20")], [("PAID", None)], True, None),  # undated after a failure: unknown
        ([("FAILED", "2025-08-20")], [("PAID", "2025-08-20")], True, None),  # one day, no time: unknown
        ([("FAILED", "2025-08-09"), ("PAID", "2025-08-10")], [("FAILED", None)], False, None),  # a retry's bounce?
        ([("FAILED", "2025-08-09"), ("PAID", "2025-08-10")], [("FAILED", "2025-08-20")], False, "FAILED"),
        ([("FAILED", "2025-08-09"), ("PAID", "2025-08-10")], [("FAILED", "2025-08-01")], False, "PAID"),
        ([("FAILED", "2025-08-09"), ("FAILED", "2025-08-20")], [("PAID", "2025-08-10")], True, "FAILED"),
        ([("PAID", None), ("FAILED", None)], [("PAID", "2025-07-01")], True, None),  # an undated row: no order
        # a bounce of no known order (recorded as one), and a notice before both: nothing new is latest
        ([("PAID", "2025-08-20"), ("FAILED", "2025-08-20 10:00")], [("FAILED", "2025-08-01")], True, "FAILED"),
        ([("PAID", "2025-08-20"), ("FAILED", "2025-08-20 10:00")], [("PAID", "2025-08-01")], True, "FAILED"),
        ([("PAID", None), ("FAILED", None)], [("PAID", "2025-08-25")], True, None),
        ([("FAILED", "2025-08-20")], [("FAILED", "2025-08-22")], True, "FAILED"),
    ],
)
def test_a_line_ends_as_its_latest_notice_says(recorded: list[tuple[str, str | None]],
                                                fresh: list[tuple[str, str | None]], was_reversed: bool,
                                                fate: str | None) -> None:
    """SPEC §8 with returns.line_fates: PAID then FAILED a bounce, FAILED then PAID a retry the bank
    paid; no known order is refused (None), except a new FAILED of a line never failed before,
    which is a bounce as it always was."""
    assert _fates(recorded, fresh, was_reversed) == fate


def test_lines_alone_and_lines_with_several_notices_in_one_import() -> None:
    """A quarter's file names each line once; the few lines with other notices (in the file or
    recorded before) are ordered pair by pair. Rows in any order."""
    schema = {"line_id": pl.String, "status": pl.String, "settled_at": pl.String}
    fresh = pl.DataFrame([("L4", "PAID", "2025-08-20"), ("L1", "PAID", "2025-08-10"), ("L2", "PAID", "2025-08-10"),
                          ("L3", "FAILED", "2025-08-25"), ("L1", "FAILED", "2025-08-09"), ("L5", "FAILED", None)],
                         schema=schema, orient="row")
    recorded = pl.DataFrame([("L3", "PAID", "2025-08-20"), ("L4", "FAILED", "2025-08-16"), ("L9", "PAID", None)],
                            schema=schema, orient="row")
    out = line_fates(recorded, fresh, pl.DataFrame({"line_id": ["L4"]})).sort("line_id")
    assert out.select("line_id", "was_reversed", "fate").rows() == [
        ("L1", False, "PAID"),  # a failed attempt and the retry's credit, in one file
        ("L2", False, "PAID"),
        ("L3", False, "FAILED"),  # a bounce
        ("L4", True, "PAID"),  # a retry the bank paid
        ("L5", False, "FAILED"),
    ]
    assert out.filter(pl.col("line_id") == "L3")["said"].to_list() == [["FAILED 2025-08-25", "PAID 2025-08-20"]]
