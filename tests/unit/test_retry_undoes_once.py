"""A retry takes back its failure's cancellations once (SPEC §8; audit 21B).

ann's Q3 line L1 fails and a supplement re-issues the quarter (L2); her July death is recorded
and August and September are recovered (R, 300 yuan); the bank pays L1 on a retry, and the next
run recovers the re-issued quarter (R2, 450 yuan). Then one file fails both L1 and L2, which
cancels R and R2, and the bank pays each on a retry, one file after the other. As if neither had
failed: R owes 300 and R2 450, what their lines list. The second retry had undone the first's
cancellations again, and R2 owed 900 on a line that listed 450.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl

from allowance.ledger import Ledger
from allowance.runs import Breakers
from allowance.testing import Scenario, person

OPEN = Breakers(max_stop_share=1.0, max_shrink_share=1.0)


def _notices(sc: Scenario, rows: list[tuple[str, str, str]]) -> dict:
    df = pl.DataFrame(rows, schema={"line_id": pl.String, "status": pl.String, "settled_at": pl.String},
                      orient="row").with_columns(reason=pl.lit(None, pl.String))
    with Ledger.use(sc.ledger) as led:
        return led.import_bank_returns(df, hashlib.sha256(df.write_csv().encode()).hexdigest())


def test_two_lines_failed_in_one_file_and_paid_on_retries_restore_each_recovery_once(tmp_path: Path) -> None:
    sc = Scenario(tmp_path)
    ann, bob = person("1950-05-05", seq=1, name="ann"), person("1953-04-02", seq=2, name="bob")
    q3 = sc.quarterly("2025Q3", [ann, bob], "2025-07-02", breakers=OPEN)
    sc.publish(q3)

    def line_of(batch_id: str) -> str:
        lines = sc.lines(batch_id)
        return str(lines.filter((pl.col("person_id") == ann["person_id"]) & (pl.col("line_type") == "PAYMENT"))
                   ["line_id"][-1])

    l1 = line_of(q3.batch_id)
    _notices(sc, [(l1, "FAILED", "2025-07-10")])
    s1 = sc.supplement([ann, bob], "2025-07-11", breakers=OPEN)
    sc.publish(s1)
    l2 = line_of(s1.batch_id)
    ann = person("1950-05-05", seq=1, name="ann", death_date="2025-07-20")
    sc.publish(sc.supplement([ann, bob], "2025-08-05", breakers=OPEN))
    _notices(sc, [(l1, "PAID", "2025-08-06")])
    sc.publish(sc.supplement([ann, bob], "2025-08-07", breakers=OPEN))
    both = _notices(sc, [(l1, "FAILED", "2025-08-10"), (l2, "FAILED", "2025-08-10")])
    assert sorted(r["state"] for r in both["recoveries_reduced"]) == ["cancelled", "cancelled"], both
    _notices(sc, [(l1, "PAID", "2025-08-12")])
    _notices(sc, [(l2, "PAID", "2025-08-13")])
    with Ledger.use(sc.ledger, read_only=True) as led:
        owed = led.df("select r.line_id, r.state, r.amount_fen, -l.amount_fen as listed from recoveries r "
                      "join batch_lines l using (line_id) order by 1")
        assert led.check()["problems"] == []
    assert owed["state"].to_list() == ["open", "open"], owed
    assert owed["amount_fen"].to_list() == owed["listed"].to_list() == [30000, 45000], owed
    after = sc.supplement([ann, bob], "2025-08-14", breakers=OPEN)
    assert sc.lines(after.batch_id).height == 0
