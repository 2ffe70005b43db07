"""Why a recovery line exists (its `cause`): what the district is told it is recovering."""

from __future__ import annotations

from pathlib import Path

from allowance import rules as rules_mod
from allowance.testing import Scenario, person

RAISE = Path(__file__).resolve().parents[1] / "cases" / "rules_raise"


def test_a_rules_table_corrected_after_payment_is_recovered_as_an_amount_correction(tmp_path: Path) -> None:
    """Paid 2025Q3 under a table with a raise from 2025-08; the raise is then withdrawn. The same
    person (same ID, same birth date) is still entitled, for less: not a birth correction."""
    sc = Scenario(tmp_path, opening_month="2025-07", rules_path=RAISE)
    rows = [person("1958-01-10", seq=1)]
    sc.publish(sc.quarterly("2025Q3", rows, "2025-07-01"))
    sc.rules = rules_mod.load(rules_mod.DEFAULT_RULES_DIR)
    res = sc.supplement(rows, "2025-07-05")
    lines = sc.lines(res.batch_id)
    assert lines["line_type"].to_list() == ["RECOVERY"], lines
    assert lines["cause"].to_list() == ["AMOUNT_CORRECTION"], lines
    assert lines["months"].to_list() == [2] and lines["amount_fen"].item() < 0, lines
