"""四 追溯期: which version's `retro_months` sets a run's retroactive start (batch.window_for).

The version in force in the month the run pays in, as for the channels (batch.paid_in_month):
audit 26A found a quarter's window set by its last month's version, so on the same day, on the
same ledger, a night's run back-paid a person 24 months and the quarter's run 12, a raise with a
shorter window starting inside that quarter."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from allowance import rules as rules_mod
from allowance.batch import window_for
from allowance.months import fmt, parse_month, parse_quarter
from allowance.rules import Rules, Version

RAW = yaml.safe_load((rules_mod.DEFAULT_RULES_DIR / "2024-hufugui-1.yaml").read_text(encoding="utf-8"))


def _version(**changes: Any) -> Version:
    doc = dict(RAW)
    doc.update(changes)
    return Version.model_validate(doc)


RULES = Rules([
    _version(effective_to=dt.date(2026, 4, 30)),  # retro_months 24
    _version(id="raise-2026-05", effective_from=dt.date(2026, 5, 1), effective_to=None,
             retro_months={"value": 12, "cite": "test: a shorter window with a raise"}),
])


class _Ledger:
    opening_month = parse_month("2024-01")

    def __init__(self, latest_quarter_end: str | None) -> None:
        self._end = parse_month(latest_quarter_end) if latest_quarter_end else None

    def latest_published_as_of(self) -> None:
        return None

    def latest_published_quarter_end(self) -> int | None:
        return self._end


@pytest.mark.parametrize(("kind", "quarter", "as_of", "start"), [
    # paid in April, under the version with 24 months, though the quarter ends under the raise
    ("quarterly", "2026Q2", "2026-04-01", "2024-04"),
    # drafted the month before: paid in April, under 24 months, counted from its as-of month
    ("quarterly", "2026Q2", "2026-03-25", "2024-03"),
    ("supplement", None, "2026-04-01", "2024-04"),  # the same day's night: the same start
    ("supplement", None, "2026-05-02", "2025-05"),  # a night in May pays under the raise
    ("quarterly", "2026Q3", "2026-07-01", "2025-07"),
])
def test_the_retroactive_start_is_set_by_the_version_in_force_when_paid(
    kind: str, quarter: str | None, as_of: str, start: str
) -> None:
    window = window_for(kind, dt.date.fromisoformat(as_of), _Ledger("2026-03" if kind == "supplement" else None),
                        RULES, parse_quarter(quarter) if quarter else None)
    assert fmt(window.expired_before) == start
    assert fmt(window.first) == start


def test_months_before_every_version_are_not_asked_for_by_the_expired_report(tmp_path: Path) -> None:
    """Audit 26A: a ledger opened in 2024-01 with a rules folder whose first version starts
    2024-05 refused the 2026Q3 draft naming 2024-01, though every due month (from 2024-07) is
    covered: the report of months owed before the window computed entitlement from the opening
    month. Nothing was due before any version; the draft is made, and what it reports expired
    starts where the rules do."""
    import shutil

    from allowance.testing import Scenario, person

    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    shutil.copy(rules_mod.DEFAULT_RULES_DIR / "2024-hufugui-1.yaml", rules_dir)
    sc = Scenario(tmp_path, opening_month="2024-01", rules_path=rules_dir)
    # 70 since 2020, moved in 2024-02: owed from 2024-05 (the first version) to 2026-09; the
    # window (24 months before the as-of, 2024-07) pays from July, so May and June are expired
    res = sc.quarterly("2026Q3", [person("1950-03-03", seq=1, hukou_since="2024-02-10")], "2026-07-01")
    assert res.lines == 1 and res.amount_fen == 27 * 15000
    assert res.summary["expired"] == {"people": 1, "months": 2, "fen": 2 * 15000}
