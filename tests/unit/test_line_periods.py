"""A line's `periods` (audits 20A, 20C): drafts stored before the column existed are reviewed and
published as they were: no column added, no refusal, their bank files without it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from allowance.ledger import Ledger
from allowance.testing import Scenario, person, rewrite_batch_file


def test_a_draft_stored_without_periods_is_reviewed_and_published_without_them(tmp_path: Path) -> None:
    sc = Scenario(tmp_path, opening_month="2025-07")
    late = person("1950-01-01", seq=1, hukou_since="2025-08-25")
    rows = [person("1950-05-05", seq=s) for s in range(2, 6)]
    sc.publish(sc.quarterly("2025Q3", rows, "2025-07-01"))
    sc.publish(sc.supplement([*rows, late], "2025-09-01"))  # August and September paid to `late`
    q4 = sc.quarterly("2025Q4", [*rows, {**late, "hukou_since": dt.date(2025, 6, 1)}], "2025-10-01")
    gapped = sc.lines(q4.batch_id).filter(pl.col("periods").is_not_null())
    assert gapped.select("person_id", "periods").rows() == [(late["person_id"], "2025-07,2025-10..2025-12")]
    # as a draft made before the column: its stored lines have none
    rewrite_batch_file(sc.ledger, q4.batch_id, "lines", lambda f: f.drop("periods"))
    with Ledger.use(sc.ledger) as led:
        led.review(q4.batch_id, rows[0]["person_id"], "HOLD", "资格审定", "区民政 王")
        assert "periods" not in led.part(q4.batch_id, "lines").columns  # the review's rewrite adds none
    sc.publish(q4.batch_id)
    pay = pl.read_parquet(sc.out / q4.batch_id / "payments" / "**" / "*.parquet", hive_partitioning=False)
    assert "periods" not in pay.columns and late["person_id"] in pay["person_id"].to_list()
