"""What orders a bounce's credit before its return (SPEC §8; audits 20A, 20D): settled_at as a local
date, with a time of day or not, and nothing else."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from allowance.errors import InputError
from allowance.returns import read_bank_returns, settled_before


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


def test_one_file_states_a_bounce_only_in_a_known_order(tmp_path: Path) -> None:
    ok = read_bank_returns(_file(tmp_path, [("L1", "PAID", "2025-07-16"), ("L1", "FAILED", "2025-07-20")]))
    assert ok.select("line_id", "status").rows() == [("L1", "PAID"), ("L1", "FAILED")]
    for paid, failed in (("2025-07-20", "2025-07-16"), ("2025-07-16", "2025-07-16 10:00"),
                         ("2025-07-16T05:00:00Z", "2025-07-16T10:00:00+08:00"), ("2025/07/16", "2025-07-20"),
                         (None, None)):
        with pytest.raises(InputError, match="is both PAID and FAILED in this file, and not as a bounce"):
            read_bank_returns(_file(tmp_path, [("L1", "PAID", paid), ("L1", "FAILED", failed)]))


def test_a_line_listed_twice_with_one_status_says_one_settled_at(tmp_path: Path) -> None:
    """Audit 20D: of two PAID rows the first was kept, so whether it passed as a bounce's credit
    depended on the rows' order."""
    same = read_bank_returns(_file(tmp_path, [("L1", "PAID", "2025-07-16"), ("L1", "PAID", "2025-07-16")]))
    assert same.height == 1
    with pytest.raises(InputError, match="line L1 is listed PAID more than once with different settled_at"):
        read_bank_returns(_file(tmp_path, [("L1", "PAID", "2025-07-16"), ("L1", "PAID", "2025-07-25")]))


def test_a_parquet_return_with_date_or_timestamp_settled_at_orders_a_bounce(tmp_path: Path) -> None:
    """A bank's Parquet file may hold settled_at as a date or a timestamp, read as text."""
    import datetime as dt

    for paid, failed in ((dt.date(2025, 7, 16), dt.date(2025, 7, 20)),
                         (dt.datetime(2025, 7, 16, 9), dt.datetime(2025, 7, 16, 15))):
        f = tmp_path / "returns.parquet"
        pl.DataFrame({"line_id": ["L1", "L1"], "status": ["PAID", "FAILED"], "settled_at": [paid, failed]}
                     ).write_parquet(f)
        assert read_bank_returns(f).select("status").to_series().to_list() == ["PAID", "FAILED"]
