"""Bank notices in any grouping and order of reading (SPEC §8; audit 20F).

A line's notices, each on its own day, told in random files read in a random order (a failed
attempt, a retry's credit, its bounce, re-sent notices, files read again): once all are read the
ledger holds the line's quarter exactly when the latest notice is PAID, never refuses (every pair
has a known order), and the next supplement leaves every person paid the quarter once. The
expectation is the plain reading of the notices, not the engine's rule (returns.line_fates).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allowance.ledger import Ledger
from allowance.returns import read_bank_returns
from allowance.testing import Scenario, person

PEOPLE = 3
QUARTER_FEN = 45_000  # three months at 150 yuan (aged 70-79)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]], list[str]]:
    """One ledger with 2025Q3 published to three people, copied for each example."""
    root = tmp_path_factory.mktemp("notices")
    sc = Scenario(root)
    rows = [person(f"195{i}-05-05", seq=i + 1, name=f"p{i}") for i in range(PEOPLE)]
    sc.publish(sc.quarterly("2025Q3", rows, "2025-07-02"))
    with Ledger.use(sc.ledger, read_only=True) as led:
        lines = led.df("select line_id from batch_lines where line_type = 'PAYMENT' order by person_id")
    return root, rows, lines["line_id"].to_list()


# Each line: up to four notices on distinct days of August (so every pair has a known order).
notices = st.lists(
    st.lists(st.tuples(st.integers(1, 28), st.sampled_from(["PAID", "FAILED"])), min_size=0, max_size=4,
             unique_by=lambda n: n[0]),
    min_size=PEOPLE, max_size=PEOPLE,
)


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(story=notices, data=st.data())
def test_a_line_ends_as_its_latest_notice_in_any_order_of_reading(
        published: tuple[Path, list[dict[str, Any]], list[str]], story: list[list[tuple[int, str]]],
        data: st.DataObject) -> None:
    root, rows, lines = published
    every = [(lines[i], day, status) for i, told in enumerate(story) for day, status in told]
    # into files: each notice to one of up to four files (some read twice), files read in a drawn order
    files: dict[int, list[tuple[str, int, str]]] = {}
    for n in every:
        files.setdefault(data.draw(st.integers(0, 3), label="file"), []).append(n)
    order = data.draw(st.permutations(sorted(files)), label="order")
    again = data.draw(st.lists(st.sampled_from(order), max_size=2), label="read again") if order else []
    with tempfile.TemporaryDirectory(prefix="notices-") as tmp:
        work = Path(tmp)
        shutil.copytree(root, work / "w")
        sc = Scenario.at(work / "w")
        for k in [*order, *again]:
            f = work / f"returns-{k}.csv"
            pl.DataFrame([(line, status, f"2025-08-{day:02d}") for line, day, status in files[k]],
                         schema={"line_id": pl.String, "status": pl.String, "settled_at": pl.String},
                         orient="row").write_csv(f)
            with Ledger.use(sc.ledger) as led:
                led.import_bank_returns(read_bank_returns(f), f"sha-{k}")
        held = sc.net().group_by("person_id").agg(pl.col("net_fen").sum())
        held_of = dict(held.iter_rows())
        for i, told in enumerate(story):
            pid = rows[i]["person_id"]
            latest = max(told)[1] if told else "PAID"
            want = QUARTER_FEN if latest == "PAID" else 0
            assert held_of.get(pid, 0) == want, f"p{i} told {sorted(told)}: held {held_of.get(pid, 0)}, want {want}"
        # the next run re-issues each failed quarter once, and pays nothing twice
        sc.publish(sc.supplement(rows, "2025-08-30"))
        held_of = dict(sc.net().group_by("person_id").agg(pl.col("net_fen").sum()).iter_rows())
        for i in range(PEOPLE):
            assert held_of.get(rows[i]["person_id"], 0) == QUARTER_FEN, f"p{i} after the supplement: {held_of}"
        with Ledger.use(sc.ledger, read_only=True) as led:
            assert led.check()["ok"]
