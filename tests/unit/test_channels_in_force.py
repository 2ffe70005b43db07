"""四: the rules version in force names the channels a payment goes through.

An audit (17B) gave the version in force one channel, social_security_card, and the engine still
paid senior cards: it accepted every version's channels at once. A payment is made now, so the
version in force on the run's as-of day decides, for back-paid months too; a channel that only
another version names is no card yet (the no-card list, paid with arrears once it is known).
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from allowance import rules as rules_mod
from allowance.errors import RulesError
from allowance.testing import Scenario, person


def _only_social_security_cards(tmp: Path) -> Path:
    folder = tmp / "rules"
    shutil.copytree(rules_mod.DEFAULT_RULES_DIR, folder)
    f = folder / "2024-hufugui-1.yaml"
    text = f.read_text(encoding="utf-8")
    old = "channels: {value: [senior_card, social_security_card],"
    assert text.count(old) == 1
    f.write_text(text.replace(old, "channels: {value: [social_security_card],"), encoding="utf-8")
    return folder


def test_a_channel_the_version_in_force_does_not_name_is_no_card_yet(tmp_path: Path) -> None:
    sc = Scenario(tmp_path, opening_month="2025-07", rules_path=_only_social_security_cards(tmp_path))
    assert sc.rules.channels(dt.date(2025, 7, 1)) == ("social_security_card",)
    assert sc.rules.channels() == ("senior_card", "social_security_card")  # what the extract is checked against
    senior = person("1950-05-05", seq=1, channel="senior_card")
    social = person("1950-06-06", seq=2, channel="social_security_card")
    q3 = sc.quarterly("2025Q3", [senior, social], "2025-07-01")
    assert sc.lines(q3.batch_id)["person_id"].to_list() == [social["person_id"]]
    waiting = sc.no_card(q3.batch_id)
    assert waiting.select("person_id", "months", "amount_fen").rows() == [(senior["person_id"], 3, 3 * 15000)]
    assert q3.summary["registry"]["quarantined"] == 0  # a channel a version names is no bad row
    sc.publish(q3)
    # Given a social security card, the next night pays the quarter, arrears and all.
    night = sc.supplement([{**senior, "channel": "social_security_card"}, social], "2025-08-10")
    lines = sc.lines(night.batch_id)
    assert lines.select("person_id", "channel", "months", "amount_fen", "reason").rows() == [
        (senior["person_id"], "social_security_card", 3, 3 * 15000, "NEW")]


def test_the_rules_shipped_pay_both_channels_now_and_only_senior_cards_before_2024_05() -> None:
    r = rules_mod.load(rules_mod.DEFAULT_RULES_DIR)
    assert r.channels(dt.date(2025, 7, 1)) == ("senior_card", "social_security_card")
    assert r.channels(dt.date(2024, 4, 30)) == ("senior_card",)
    assert r.channels() == ("senior_card", "social_security_card")  # every version's: the extract's check
    with pytest.raises(RulesError, match="no rules version is in force in 2040-01"):
        r.channels(dt.date(2040, 1, 1))


def _senior_cards_end_2025_06(tmp: Path) -> Path:
    """The 2024 notice until 2025-06, then a version naming social security cards only."""
    folder = tmp / "rules-later"
    shutil.copytree(rules_mod.DEFAULT_RULES_DIR, folder)
    f = folder / "2024-hufugui-1.yaml"
    text = f.read_text(encoding="utf-8")
    f.write_text(text.replace("effective_to: 2029-04-30", "effective_to: 2025-06-30"), encoding="utf-8")
    later = text.replace("id: hufugui-2024-1", "id: test-2025-07").replace(
        "effective_from: 2024-05-01", "effective_from: 2025-07-01").replace(
        "channels: {value: [senior_card, social_security_card],", "channels: {value: [social_security_card],")
    (folder / "2025-07-test.yaml").write_text(later, encoding="utf-8")
    return folder


def test_a_quarter_drafted_the_month_before_pays_through_the_channels_of_its_own_first_month(
        tmp_path: Path) -> None:
    """Audit 17D: Q3 drafted on 25 June took June's channels, though it is paid in July, under a
    version naming social security cards only."""
    sc = Scenario(tmp_path, opening_month="2025-04", rules_path=_senior_cards_end_2025_06(tmp_path))
    senior = person("1950-05-05", seq=1, channel="senior_card")
    social = person("1950-06-06", seq=2, channel="social_security_card")
    early = sc.quarterly("2025Q3", [senior, social], "2025-06-25")
    assert sc.lines(early.batch_id)["person_id"].to_list() == [social["person_id"]]
    assert sc.no_card(early.batch_id)["person_id"].to_list() == [senior["person_id"]]


def test_a_channel_no_longer_in_force_stops_its_recipients_and_the_breaker_counts_them(tmp_path: Path) -> None:
    """Audit 17D: a version naming one channel fewer moved everyone paid through the other to the
    no-card list with no stop counted: a rules file could stop 60 % of the payments unseen."""
    from allowance.errors import RefusedError
    from allowance.runs import Breakers

    sc = Scenario(tmp_path, opening_month="2025-04", rules_path=_senior_cards_end_2025_06(tmp_path))
    senior = person("1950-05-05", seq=1, channel="senior_card")
    social = person("1950-06-06", seq=2, channel="social_security_card")
    sc.publish(sc.quarterly("2025Q2", [senior, social], "2025-04-02"))
    # A night stops nothing of a recipient whose card went (the quarter's months stay paid).
    night = sc.supplement([{**senior, "channel": None, "card_no": None}, social], "2025-05-10")
    assert night.summary["stops"] == {"recipients": 2, "stopped": 0, "by_review": 0} and night.summary["changes"] == {}
    with pytest.raises(RefusedError, match="would stop payments for 1 of last quarter's 2 recipients"):
        sc.quarterly("2025Q3", [senior, social], "2025-07-02")
    q3 = sc.quarterly("2025Q3", [senior, social], "2025-07-02", breakers=Breakers(max_stop_share=1.0))
    assert q3.summary["stops"] == {"recipients": 2, "stopped": 1, "by_review": 0}
    assert q3.summary["changes"] == {"STOP_NO_CARD": {"people": 1, "fen": 15000}}
