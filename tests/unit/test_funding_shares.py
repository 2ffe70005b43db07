"""七(二) municipal : district = 1 : 1, per month: the district's share is floored, the city takes
any odd fen, and that holds for the sum of every line a month is paid or recovered through."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from allowance import rules as rules_mod
from allowance.ledger import Ledger
from allowance.testing import Scenario, person


def _rules(tmp: Path, band1_fen: int) -> Path:
    """rules/*.yaml with the 2024 notice's 65–69 amount set to `band1_fen` (an odd amount no
    notice has had yet, which is where a rounding of the difference instead of the amount shows)."""
    folder = tmp / f"rules-{band1_fen}"
    shutil.copytree(rules_mod.DEFAULT_RULES_DIR, folder)
    f = folder / "2024-hufugui-1.yaml"
    text = f.read_text(encoding="utf-8")
    assert text.count("monthly_fen: 7500,") == 1
    f.write_text(text.replace("monthly_fen: 7500,", f"monthly_fen: {band1_fen},"), encoding="utf-8")
    return folder


@pytest.mark.parametrize(("first", "corrected"), [(7501, 7502), (7502, 7501), (7501, 7503), (7503, 7500)])
def test_a_months_shares_add_up_to_its_amounts_whatever_lines_paid_it(tmp_path: Path, first: int,
                                                                      corrected: int) -> None:
    """A sixth audit: paid 7 501 a month (district 3 750, city 3 751), then the table corrected to
    7 502, the top-up of 1 fen a month was split on the difference (district 1 // 2 = 0), so the
    quarter ended district 11 250 : city 11 256, where a fresh payment of 7 502 splits 11 253 :
    11 253. A line's share is now the move of the month's floored shares, up or down."""
    sc = Scenario(tmp_path, opening_month="2025-07", rules_path=_rules(tmp_path, first))
    rows = [person("1958-03-10", seq=1)]  # 67: the 65–69 band
    first_run = sc.publish(sc.quarterly("2025Q3", rows, "2025-07-01"))
    sc.rules = rules_mod.load(_rules(tmp_path, corrected))
    again = sc.publish(sc.supplement(rows, "2025-08-10"))
    lines = [sc.lines(r.batch_id) for r in (first_run, again)]
    assert lines[1]["line_type"].to_list() == ["PAYMENT" if corrected > first else "RECOVERY"]
    district = sum(int(ln["district_fen"].sum()) for ln in lines)
    municipal = sum(int(ln["municipal_fen"].sum()) for ln in lines)
    assert (district, municipal) == (3 * (corrected // 2), 3 * (corrected - corrected // 2))
    for ln in lines:
        assert (ln["district_fen"] + ln["municipal_fen"] == ln["amount_fen"]).all()
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert led.check()["problems"] == []
