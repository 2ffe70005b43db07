"""A released review decision stops the person's retroactive clock (batch.released_reach; 四 追溯期
with 五 资格审定; README "A district's review stops the person's clock").

The rule, by hand: a month m before the run's window is due to someone a released decision kept
waiting when m + (the stopped months at or after m) reaches the window's first month, and m is
not before the first month a released decision covered. Stopped months run from the as-of month
of the draft the decision was placed on to the month before the as-of of the first batch
published after its release (this run's, while none has been); each counted once.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from allowance import idcard
from allowance import rules as rules_mod
from allowance.batch import Window, released_reach
from allowance.errors import LedgerError
from allowance.ledger import Ledger
from allowance.months import month_index, parse_month
from allowance.runs import Breakers
from allowance.testing import Scenario, person

RULES = rules_mod.load(Path(__file__).resolve().parents[2] / "rules")
ANN = idcard.make_id("310115", dt.date(1950, 5, 5), 11)
BOB = idcard.make_id("310115", dt.date(1951, 6, 6), 21)
M = parse_month
OPEN = Breakers(max_stop_share=1.0, max_shrink_share=1.0)  # a few people: any stop is "more than 2 %"


def _three_month_rules(tmp_path: Path) -> Path:
    """The shipped rules tables with a three-month retroactive window (四 追溯期), so a story of a
    few months crosses it."""
    folder = tmp_path / "rules3"
    shutil.copytree(rules_mod.DEFAULT_RULES_DIR, folder)
    for f in folder.glob("*.yaml"):
        f.write_text(f.read_text(encoding="utf-8").replace("retro_months: {value: 24", "retro_months: {value: 3"),
                     encoding="utf-8")
    return folder


def window(as_of: dt.date, retro: int = 24) -> Window:
    first = month_index(as_of) - retro
    return Window("supplement", first, M("2027-03"), M("2027-01"), None, first)


def clean(*ids: str) -> pl.DataFrame:
    return pl.DataFrame({"person_id": list(ids)}).with_columns(
        _k=idcard.order_key_expr("person_id")).with_row_index("pkey")


def released(*rows: tuple[str, str, dt.date, dt.date | None]) -> pl.DataFrame:
    return pl.DataFrame(
        {"person_id": [r[0] for r in rows], "from_mi": [M(r[1]) for r in rows],
         "decided_as_of": [r[2] for r in rows], "paid_as_of": [r[3] for r in rows]},
        schema={"person_id": pl.String, "from_mi": pl.Int32, "decided_as_of": pl.Date, "paid_as_of": pl.Date})


NONE_BLOCKED = pl.DataFrame(schema={"person_id": pl.String, "from_mi": pl.Int32, "to_mi": pl.Int32,
                                    "action": pl.String})


def reach(rel: pl.DataFrame, as_of: dt.date, blocked: pl.DataFrame = NONE_BLOCKED,
          people: pl.DataFrame | None = None) -> dict[str, str]:
    got = released_reach(rel, blocked, window(as_of), as_of, RULES, clean(ANN, BOB) if people is None else people)
    ids = clean(ANN, BOB)
    # the clock's reach is one run of months each, from the first due month to the window's start
    assert got["_k"].is_unique().all() and (got["to_mi"] == window(as_of).first - 1).all()
    return {pid: f"{m // 12}-{m % 12 + 1:02d}" for pid, m in
            got.join(ids.select("_k", "person_id"), on="_k").select("person_id", "from_mi").iter_rows()}


def test_the_first_run_after_a_release_reaches_the_decisions_first_month() -> None:
    # held on a draft as of 2026-10-02 (window from 2024-10), released, this run 2026-11-06
    rel = released((ANN, "2024-10", dt.date(2026, 10, 2), None))
    assert reach(rel, dt.date(2026, 11, 6)) == {ANN: "2024-10"}


def test_after_the_payer_the_window_reaches_back_by_the_months_it_stood() -> None:
    rel = released((ANN, "2024-10", dt.date(2026, 10, 2), dt.date(2026, 11, 6)))
    # two months later the window starts 2025-01; one month stood: 2024-12
    assert reach(rel, dt.date(2027, 1, 5)) == {ANN: "2024-12"}
    # once the window itself starts after it, nothing more
    assert reach(rel, dt.date(2026, 11, 20)) == {ANN: "2024-10"}


def test_decisions_one_after_another_add_up_and_overlapping_ones_count_once() -> None:
    rel = released((ANN, "2024-10", dt.date(2026, 10, 2), dt.date(2026, 11, 6)),
                   (ANN, "2024-11", dt.date(2026, 11, 6), dt.date(2027, 1, 8)),
                   # BOB: two holds released together, October and November; stood Oct..Dec once
                   (BOB, "2024-10", dt.date(2026, 10, 2), dt.date(2027, 1, 8)),
                   (BOB, "2024-11", dt.date(2026, 11, 6), dt.date(2027, 1, 8)))
    # as of 2027-02: window from 2025-02; ANN stood Oct, Nov, Dec (3): 2024-11; BOB the same 3
    assert reach(rel, dt.date(2027, 2, 3)) == {ANN: "2024-11", BOB: "2024-11"}


def test_a_stop_lengthens_only_the_time_of_months_before_it() -> None:
    # stood 2025-03 .. 2025-08 (6 months): the months before it have 6 more months
    rel = released((ANN, "2023-03", dt.date(2025, 3, 2), dt.date(2025, 9, 2)))
    assert reach(rel, dt.date(2025, 10, 2)) == {ANN: "2023-04"}  # window from 2023-10
    assert reach(rel, dt.date(2027, 1, 5)) == {ANN: "2024-07"}  # window from 2025-01
    # once the window starts after the stop, no month before it is reached (2025-03 + 6 = 2025-09),
    # and the months after it have their own 24
    assert reach(rel, dt.date(2027, 10, 5)) == {}  # window from 2025-10


def test_not_for_people_held_now_or_absent_from_the_extract() -> None:
    rel = released((ANN, "2024-10", dt.date(2026, 10, 2), None), (BOB, "2024-10", dt.date(2026, 10, 2), None))
    held = pl.DataFrame({"person_id": [ANN], "from_mi": [M("2024-11")], "to_mi": [None], "action": ["HOLD"]},
                        schema=NONE_BLOCKED.schema)
    assert reach(rel, dt.date(2026, 11, 6), blocked=held) == {BOB: "2024-10"}
    assert reach(rel, dt.date(2026, 11, 6), people=clean(BOB)) == {BOB: "2024-10"}
    # a rejection in force leaves the reach: the months it covers are taken out as in the window
    # (audit 28A: a rejection from November on the night paying July had July expire)
    rejected = held.with_columns(action=pl.lit("REJECT"))
    assert reach(rel, dt.date(2026, 11, 6), blocked=rejected) == {ANN: "2024-10", BOB: "2024-10"}


def test_never_before_the_months_a_rules_version_covers() -> None:
    # the first version in rules/ starts 2016-05 (沪府发〔2016〕24号)
    first = RULES.covered_since(M("2018-01"))
    assert first is not None
    rel = released((ANN, "2015-01", dt.date(2017, 4, 2), None))
    assert reach(rel, dt.date(2018, 6, 1)) == {ANN: f"{first // 12}-{first % 12 + 1:02d}"}


def test_a_release_is_matched_to_its_own_event_whatever_the_second(tmp_path: Path, monkeypatch) -> None:
    """Audit 28A: two releases by one person on one draft, a publication between them, all in one
    second (the ledger's clock is to the second). The second release was matched to the first
    one's event, so the publication before it counted as the first after it: hal's clock stood
    one month instead of two, and July expired (15 000 fen). Events now name their decisions."""

    monkeypatch.setattr("allowance.ledger._now", lambda: dt.datetime(2026, 11, 30, 12, 0, 0))
    sc = Scenario(tmp_path / "s", opening_month="2025-07", rules_path=_three_month_rules(tmp_path))
    ann, gus, hal = person("1950-05-05", seq=1), person("1950-06-06", seq=2), person("1951-03-03", seq=3)
    others = [person("1950-06-01", seq=s) for s in range(4, 9)]
    sc.publish(sc.quarterly("2025Q3", [ann, *others], "2025-07-02"))
    rows = [ann, gus, hal, *others]
    q4 = sc.quarterly("2025Q4", rows, "2025-10-02").batch_id
    with Ledger.use(sc.ledger) as led:
        led.review(q4, [gus["person_id"], hal["person_id"]], "HOLD", "核实", "区民政 王")
    sc.publish(q4)
    held = sc.supplement(rows, "2025-11-05", breakers=OPEN).batch_id
    with Ledger.use(sc.ledger) as led:
        led.review(held, gus["person_id"], "RELEASE", "已核实", "区民政 王")
    sc.publish(sc.supplement(rows, "2025-11-06", breakers=OPEN))
    with Ledger.use(sc.ledger) as led:
        led.review(held, hal["person_id"], "RELEASE", "已核实", "区民政 王")
    night = sc.supplement(rows, "2025-12-05", breakers=OPEN)
    lines = sc.lines(night.batch_id).filter(pl.col("person_id") == hal["person_id"])
    assert lines.select("period_from", "months", "amount_fen").rows() == [(dt.date(2025, 7, 1), 6, 90000)]
    assert night.summary["expired"] == {"people": 0, "months": 0, "fen": 0}


def _released_story(tmp_path: Path, late_card: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any], str]:
    """gus, back-paid from July on the Q4 draft (a three-month window), held on it, released in
    November: the night after lists him from July, before its window (August). `late_card`: a
    person without a card until that night, which pays them from August."""
    sc = Scenario(tmp_path / "s", opening_month="2025-07", rules_path=_three_month_rules(tmp_path))
    ann, gus = person("1950-05-05", seq=1), person("1950-06-06", seq=2)
    others = [person("1950-06-01", seq=s) for s in range(4, 9)]
    extra = [late_card] if late_card else []
    sc.publish(sc.quarterly("2025Q3", [ann, *extra, *others], "2025-07-02"))
    rows = [ann, gus, *extra, *others]
    q4 = sc.quarterly("2025Q4", rows, "2025-10-02").batch_id
    with Ledger.use(sc.ledger) as led:
        led.review(q4, gus["person_id"], "HOLD", "核实", "区民政 王")
    sc.publish(q4)
    held = sc.supplement(rows, "2025-11-05", breakers=OPEN).batch_id
    with Ledger.use(sc.ledger) as led:
        led.review(held, gus["person_id"], "RELEASE", "已核实", "区民政 王")
    carded = [{**late_card, "channel": "senior_card", "card_no": "6217000000000555"}] if late_card else []
    night = sc.supplement([ann, gus, *carded, *others], "2025-11-06", breakers=OPEN).batch_id
    assert sc.lines(night).filter(pl.col("person_id") == gus["person_id"]).select(
        "period_from", "months").rows() == [(dt.date(2025, 7, 1), 6)]
    return sc, gus, night


def test_a_rejection_may_name_a_month_the_draft_pays_before_its_window(tmp_path: Path) -> None:
    """Audit 28C: rejected from the window's first month (August), gus kept July; a plain rejection
    re-entered said "already" and recorded nothing, the draft still paying July, and `--from` July
    was refused as not a month of the window. Now the plain one is refused saying `--from` would
    do, and `--from` July narrows the rejection: nothing of his is left to pay."""

    sc, gus, night = _released_story(tmp_path)
    with Ledger.use(sc.ledger) as led:
        led.review(night, gus["person_id"], "REJECT", "不符合条件", "区民政 王", M("2025-08"), sc.rules)
    assert sc.lines(night).filter(pl.col("person_id") == gus["person_id"]).select(
        "period_from", "months").rows() == [(dt.date(2025, 7, 1), 1)]
    with Ledger.use(sc.ledger) as led:
        with pytest.raises(LedgerError, match=r"rejected already \(from 2025-08\).*give --from an earlier month"):
            led.review(night, gus["person_id"], "REJECT", "不符合条件", "区民政 王")
        with pytest.raises(LedgerError, match=r"--from 2025-06 is not a month of batch .*\(2025-07 … 2025-12\)"):
            led.review(night, gus["person_id"], "REJECT", "不符合条件", "区民政 王", M("2025-06"), sc.rules)
        done = led.review(night, gus["person_id"], "REJECT", "不符合条件", "区民政 王", M("2025-07"), sc.rules)
        assert done["already"] == []
    assert sc.lines(night).filter(pl.col("person_id") == gus["person_id"]).height == 0
    # and run again, the same --from is taken
    with Ledger.use(sc.ledger) as led:
        again = led.review(night, gus["person_id"], "REJECT", "不符合条件", "区民政 王", M("2025-07"), sc.rules)
    assert again["already"] == [gus["person_id"]]


def test_from_in_a_list_is_judged_for_each_person_named(tmp_path: Path) -> None:
    """Audit 28D: `--from` was checked against the earliest month of anyone named, so a list with
    gus (listed from July, his clock stopped) let eve (listed from August, the window's first
    month) be rejected from July, a month the draft never listed for her: refused alone, recorded
    in the list. Each person's own months are the bound now; the refusal names who."""

    eve = person("1951-01-01", seq=3, channel=None)
    sc, gus, night = _released_story(tmp_path, late_card=eve)
    firsts = {r[0]: r[1] for r in sc.lines(night).select("person_id", "period_from").rows()}
    assert (firsts[gus["person_id"]], firsts[eve["person_id"]]) == (dt.date(2025, 7, 1), dt.date(2025, 8, 1))
    with Ledger.use(sc.ledger) as led, pytest.raises(
            LedgerError, match=r"--from 2025-07 is not a month of batch \S+'s window for 1 of the 2 people "
                               r"\(e\.g\. 320102\*+\d{4}\) \(2025-08 … 2025-12\); nothing recorded"):
        led.review(night, [gus["person_id"], eve["person_id"]], "REJECT", "不符合条件", "区民政 王", M("2025-07"),
                   sc.rules)
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert led.decisions(night).height == 0


def test_a_rejection_from_a_month_says_the_cancelled_recoveries_it_keeps(tmp_path: Path) -> None:
    """Audit 28D: rejected from September (the window's first month), cal's July and August
    recoveries stay cancelled in the draft (the months before September are his), but the
    command said "this draft has nothing of theirs before it"."""

    sc = Scenario(tmp_path / "s", opening_month="2025-07", rules_path=_three_month_rules(tmp_path))
    ann, cal = person("1950-05-05", seq=1), person("1950-06-06", seq=2)
    others = [person("1950-06-01", seq=s) for s in range(4, 9)]
    sc.publish(sc.quarterly("2025Q3", [ann, cal, *others], "2025-07-02"))
    sc.publish(sc.quarterly("2025Q4", [ann, *others], "2025-10-02", breakers=OPEN))  # cal's Q3 recovered
    back = sc.supplement([ann, cal, *others], "2025-12-05", breakers=OPEN).batch_id
    with Ledger.use(sc.ledger) as led:
        done = led.review(back, cal["person_id"], "REJECT", "不符合条件", "区民政 王", M("2025-09"), sc.rules)
    assert done["kept_before"] == {"people": 1, "payments": {"lines": 0, "amount_fen": 0},
                                   "recoveries": {"lines": 0, "amount_fen": 0}, "recoveries_cancelled_fen": 30000}


def _back_with_an_older_recovery(tmp_path: Path) -> tuple[Any, dict[str, Any], list[dict[str, Any]], str]:
    """cal, missing from one night's extract in November, has August to December recovered; back
    in December's (a window from September), the draft cancels that recovery, August's older than
    the window."""

    sc = Scenario(tmp_path / "s", opening_month="2025-07", rules_path=_three_month_rules(tmp_path))
    ann, cal = person("1950-05-05", seq=1), person("1950-06-06", seq=2)
    rows = [ann, cal, *(person("1950-06-01", seq=s) for s in range(4, 9))]
    sc.publish(sc.quarterly("2025Q3", rows, "2025-07-02"))
    sc.publish(sc.quarterly("2025Q4", rows, "2025-10-02"))
    sc.publish(sc.supplement([r for r in rows if r is not cal], "2025-11-05", breakers=OPEN))
    back = sc.supplement(rows, "2025-12-05", breakers=OPEN).batch_id
    return sc, cal, rows, back


def test_from_may_name_an_older_month_the_draft_cancels_a_recovery_of(tmp_path: Path) -> None:
    """Audit 28E: the draft cancelled August's recovery (older than the window), but `--from`
    August was refused as outside the window, so the district could not say "not entitled since
    August" and August's recovery was written off. A plain decision still covers from the
    window's first month (audit 28F: covering from August covered months between that the draft
    never listed): the hold records September, and August's recovery stays owed while it stands
    (cancelled on its release)."""

    sc, cal, rows, back = _back_with_an_older_recovery(tmp_path / "reject")
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert sorted(led.df("select from_mi from batch_cancels where batch_id = ?", [back])["from_mi"]) == [
            M("2025-08"), M("2025-09"), M("2025-10"), M("2025-11"), M("2025-12")]
    with Ledger.use(sc.ledger) as led:
        led.review(back, cal["person_id"], "REJECT", "不符合条件", "区民政 王", M("2025-08"), sc.rules)
    redraft = sc.supplement(rows, "2025-12-05", breakers=OPEN).batch_id
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert {b: led.df("select * from batch_cancels where batch_id = ?", [b]).height for b in (back, redraft)} == {
            back: 0, redraft: 0}
    sc.publish(back)
    with Ledger.use(sc.ledger, read_only=True) as led:  # not entitled since August: all of it owed back
        owed = led.owed_recoveries()
        assert sorted(m for a, b in owed.select("from_mi", "to_mi").rows() for m in range(a, b + 1)) == [
            M(f"2025-{m:02d}") for m in range(8, 13)]

    sc, cal, rows, back = _back_with_an_older_recovery(tmp_path / "hold")
    with Ledger.use(sc.ledger) as led:
        led.review(back, cal["person_id"], "HOLD", "核实", "区民政 王")
        assert led.decisions(back)["from_month"].to_list() == [M("2025-09")]
    sc.publish(back)
    held = sc.supplement(rows, "2026-01-06", breakers=OPEN)
    assert held.summary["expired"]["months"] == 1  # August, frozen: reported while the hold stands
    with Ledger.use(sc.ledger) as led:
        led.review(held.batch_id, cal["person_id"], "RELEASE", "已核实", "区民政 王")
    night = sc.supplement(rows, "2026-01-07", breakers=OPEN)
    assert night.summary["recoveries_cancelled"]["fen"] == 5 * 15000  # August too: nothing lost
    assert night.summary["expired"] == {"people": 0, "months": 0, "fen": 0}


def test_a_plain_rejection_covers_the_persons_due_months_not_an_older_cancelled_one(tmp_path: Path) -> None:
    """Audit 28F: cal's July recovery (a wrong move-in date, since corrected) is cancelled by a
    December draft whose window starts in September; August and September were paid. A plain
    rejection covered from July, the first month the draft listed: July's recovery stayed owed and
    every night listed August as overpaid before the window, months the draft never listed. It
    covers from September, the window's first month: July stays cancelled, nothing is listed."""

    sc = Scenario(tmp_path / "s", opening_month="2025-07", rules_path=_three_month_rules(tmp_path))
    ann, cal = person("1950-05-05", seq=1), person("1950-06-06", seq=2)
    others = [person("1950-06-01", seq=s) for s in range(4, 9)]
    rows = [ann, cal, *others]
    sc.publish(sc.quarterly("2025Q3", rows, "2025-07-02"))
    moved = [ann, {**cal, "hukou_since": dt.date(2025, 8, 10)}, *others]
    sc.publish(sc.supplement(moved, "2025-08-15", breakers=OPEN))  # July recovered
    sc.publish(sc.quarterly("2025Q4", moved, "2025-10-02", breakers=OPEN))
    back = sc.supplement(rows, "2025-12-05", breakers=OPEN).batch_id
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert led.df("select from_mi from batch_cancels where batch_id = ?", [back])["from_mi"].to_list() == [
            M("2025-07")]
    with Ledger.use(sc.ledger) as led:
        done = led.review(back, cal["person_id"], "REJECT", "不符合条件", "区民政 王")
        assert led.decisions(back)["from_month"].to_list() == [M("2025-09")]
    # and says what stays cancelled (audit 28G: only a rejection --from a month said so)
    assert done["kept_before"] == {"people": 1, "payments": {"lines": 0, "amount_fen": 0},
                                   "recoveries": {"lines": 0, "amount_fen": 0}, "recoveries_cancelled_fen": 15000}
    sc.publish(back)
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert led.owed_recoveries().height == 0
    night = sc.supplement(rows, "2025-12-06", breakers=OPEN)
    assert night.summary["overpaid_before_window"]["fen"] == 0


def _collected_while_held(tmp_path: Path) -> tuple[Any, dict[str, Any], list[dict[str, Any]], Any]:
    """_back_with_an_older_recovery, cal held on that draft, the recovery marked recovered while
    the hold stands, then released: the night after the release."""
    sc, cal, rows, back = _back_with_an_older_recovery(tmp_path)
    with Ledger.use(sc.ledger) as led:
        led.review(back, cal["person_id"], "HOLD", "核实", "区民政 王")
    sc.publish(back)
    with Ledger.use(sc.ledger) as led:
        owed = led.owed_recoveries()
        assert owed.height and set(owed["_k"].to_list()) == set(clean(cal["person_id"])["_k"].to_list())
        led.set_recovery_state(owed["line_id"].unique().to_list(), "recovered", "区民政 王", "已追回")
    held = sc.supplement(rows, "2026-01-06", breakers=OPEN)
    with Ledger.use(sc.ledger) as led:
        led.review(held.batch_id, cal["person_id"], "RELEASE", "已核实", "区民政 王")
    return sc, cal, rows, sc.supplement(rows, "2026-01-07", breakers=OPEN)


def test_a_recovery_collected_while_a_hold_stood_is_paid_back_on_its_release(tmp_path: Path) -> None:
    """Audit 28G: the December draft cancels cal's recovery of August to December (August older
    than the window); the district holds cal, which keeps the recovery owed, and then marks it
    recovered. On the release, September to December were paid again, but August, older than the
    window by then, was reported expired: 15 000 fen the draft would have left with cal, lost to
    the hold. The hold froze August: a recovery collected while a decision stood is paid back for
    the months the person is entitled to, whatever their age; once, not again the next night."""

    sc, cal, rows, night = _collected_while_held(tmp_path)
    months = sc.months(night.batch_id).filter(pl.col("person_id") == cal["person_id"])
    assert months.select("month_idx", "amount_fen").rows() == [(M(f"2025-{m:02d}"), 15000) for m in range(8, 13)]
    assert night.summary["expired"] == {"people": 0, "months": 0, "fen": 0}
    assert night.summary["recoveries_cancelled"]["fen"] == 0  # collected: paid back, not cancelled
    sc.publish(night)
    again = sc.supplement(rows, "2026-01-08", breakers=OPEN)
    assert sc.months(again.batch_id).filter(pl.col("person_id") == cal["person_id"]).height == 0
    assert again.summary["expired"]["months"] == 0 and again.summary["overpaid_before_window"]["fen"] == 0


def test_a_rejection_on_the_draft_paying_a_collected_month_back_keeps_it(tmp_path: Path) -> None:
    """The night after the release pays August back, before cal's due months. A plain rejection
    covers the due months only, and a redraft under it pays August: taking August out of the
    reviewed draft would make the two differ, so it is refused, pointing at --from; with it,
    August stays in the draft, as in the redraft."""

    sc, cal, rows, night = _collected_while_held(tmp_path)
    with Ledger.use(sc.ledger) as led:
        with pytest.raises(LedgerError, match=r"back months before the window .* reject --from"):
            led.review(night.batch_id, cal["person_id"], "REJECT", "不符合条件", "区民政 王")
        assert led.decisions(night.batch_id).height == 0
    with Ledger.use(sc.ledger) as led:
        first = led.batch(night.batch_id)["first_month"]
        done = led.review(night.batch_id, cal["person_id"], "REJECT", "不符合条件", "区民政 王", first, sc.rules)
        assert done["kept_before"]["payments"]["lines"] == 1
    kept = sc.months(night.batch_id).filter(pl.col("person_id") == cal["person_id"])
    assert kept["month_idx"].min() == M("2025-08") and kept["month_idx"].max() < first
    redraft = sc.supplement(rows, "2026-01-07", breakers=OPEN)
    again = sc.months(redraft.batch_id).filter(pl.col("person_id") == cal["person_id"])
    assert again.select("month_idx", "amount_fen").rows() == kept.select("month_idx", "amount_fen").rows()


def _minute_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each ledger and publication time a minute after the last: the order of a collection, a
    decision and a publication is clear (in one second it is taken as under the decision)."""
    ticks = iter(range(100_000))
    clock = lambda: dt.datetime(2026, 12, 1) + dt.timedelta(minutes=next(ticks))  # noqa: E731
    monkeypatch.setattr("allowance.ledger._now", clock)
    monkeypatch.setattr("allowance.runs._now", clock)


def test_only_the_months_a_collected_recovery_got_back_are_paid_back(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit 29A: cal's recovery R1 of August to December has October to December cancelled in
    December (entitled again from then); a death recorded in error recovers October to December
    again (R2), which the district collects with no decision standing; corrected, October has
    left the window and is expired. Held, and R1 (August and September) collected during the
    hold: the release paid October too, since R1's line had listed it and the ledger held nothing
    for it. Only what R1 got back is paid back: August and September; October stays expired."""

    _minute_clock(monkeypatch)
    sc, cal, rows, _ = _back_with_an_older_recovery(tmp_path)
    pid = cal["person_id"]

    def others(**change: Any) -> list[dict[str, Any]]:
        return [r if r is not cal else {**cal, **change} for r in rows]

    sc.publish(sc.supplement(others(hukou_since=dt.date(2025, 10, 10)), "2025-12-05", breakers=OPEN))
    q1 = sc.quarterly("2026Q1", others(death_date=dt.date(2025, 7, 31)), "2026-01-02", breakers=OPEN)
    sc.publish(q1)
    r2 = sc.lines(q1.batch_id).filter(pl.col("person_id") == pid)["line_id"].to_list()
    with Ledger.use(sc.ledger) as led:
        led.set_recovery_state(r2, "recovered", "区民政 王", "已追回")
        r1 = [x for x in led.owed_recoveries()["line_id"].unique().to_list() if x not in r2]
    feb = sc.supplement(rows, "2026-02-05", breakers=OPEN)
    assert feb.summary["expired"]["months"] == 1  # October
    with Ledger.use(sc.ledger) as led:
        led.review(feb.batch_id, pid, "HOLD", "核实", "区民政 王")
    sc.publish(feb)
    with Ledger.use(sc.ledger) as led:
        led.set_recovery_state(r1, "recovered", "区民政 王", "已追回")
    q2 = sc.quarterly("2026Q2", rows, "2026-04-02", breakers=OPEN)
    with Ledger.use(sc.ledger) as led:
        led.review(q2.batch_id, pid, "RELEASE", "已核实", "区民政 王")
        assert led.collected_while_decided(led.released())["month_idx"].to_list() == [M("2025-08"), M("2025-09")]
    q2 = sc.quarterly("2026Q2", rows, "2026-04-03", breakers=OPEN)
    paid = sc.months(q2.batch_id).filter(pl.col("person_id") == pid)["month_idx"].to_list()
    assert paid[:2] == [M("2025-08"), M("2025-09")] and M("2025-10") not in paid
    assert q2.summary["expired"] == {"people": 1, "months": 1, "fen": 15000}


def test_months_to_pay_back_are_not_expired_while_a_later_hold_stands(tmp_path: Path) -> None:
    """Audit 29A: held again on the night that pays August back, cal's collected months were
    reported expired while the second hold stood, then paid on its release. They are due on the
    release, as a hold's own months are: not expired meanwhile, and paid once when released."""

    sc, cal, rows, night = _collected_while_held(tmp_path)
    pid = cal["person_id"]
    with Ledger.use(sc.ledger) as led:
        led.review(night.batch_id, pid, "HOLD", "再核实", "区民政 王")
    sc.publish(night)
    held = sc.supplement(rows, "2026-01-08", breakers=OPEN)
    assert held.summary["expired"] == {"people": 0, "months": 0, "fen": 0}
    with Ledger.use(sc.ledger) as led:
        led.review(held.batch_id, pid, "RELEASE", "已核实", "区民政 王")
    after = sc.supplement(rows, "2026-01-09", breakers=OPEN)
    paid = sc.months(after.batch_id).filter(pl.col("person_id") == pid)
    assert paid["month_idx"].to_list()[:2] == [M("2025-08"), M("2025-09")] and paid["month_idx"].is_unique().all()
    assert after.summary["expired"] == {"people": 0, "months": 0, "fen": 0}
    sc.publish(after)
    assert sc.months(sc.supplement(rows, "2026-01-10", breakers=OPEN).batch_id).filter(
        pl.col("person_id") == pid).height == 0


def _august_to_december_paid_back(sc: Any, rows: list[dict[str, Any]], pid: str) -> None:
    """The second quarter's draft pays August to December back, older than its window, and
    reports nothing expired: the payback stands."""
    q2 = sc.quarterly("2026Q2", rows, "2026-04-02", breakers=OPEN)
    paid = sc.months(q2.batch_id).filter(pl.col("person_id") == pid)["month_idx"].to_list()
    assert paid[:5] == [M(f"2025-{m:02d}") for m in range(8, 13)]
    assert q2.summary["expired"] == {"people": 0, "months": 0, "fen": 0}


def _october_and_november_expired(sc: Any, rows: list[dict[str, Any]], pid: str) -> None:
    """The second quarter's draft leaves October and November unpaid, reported expired: paid back
    once, then asked back again (older than the window by then)."""
    q2 = sc.quarterly("2026Q2", rows, "2026-04-02", breakers=OPEN)
    paid = sc.months(q2.batch_id).filter(pl.col("person_id") == pid)["month_idx"].to_list()
    assert M("2025-10") not in paid and M("2025-11") not in paid
    assert q2.summary["expired"] == {"people": 1, "months": 2, "fen": 30000}


def test_a_month_paid_back_is_paid_back_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit 29B: after the release night paid back August to December, cal was missing from one
    night's extract, and that recovery of October to December was collected with no decision
    standing. Back in the second quarter, October and November (older than the window by then)
    were paid again, as months the held recovery got back: the ledger held nothing for them. Paid
    back once; recovered again since, they are old months, expired as for anyone."""

    _minute_clock(monkeypatch)
    sc, cal, rows, night = _collected_while_held(tmp_path)
    pid = cal["person_id"]
    sc.publish(night)
    gone = sc.supplement([r for r in rows if r is not cal], "2026-01-08", breakers=OPEN)
    assert sc.lines(gone.batch_id).filter(pl.col("person_id") == pid)["months"].to_list() == [3]
    sc.publish(gone)
    with Ledger.use(sc.ledger) as led:
        led.set_recovery_state(led.owed_recoveries()["line_id"].unique().to_list(), "recovered", "区民政 王", "已追回")
    _october_and_november_expired(sc, rows, pid)


def test_months_collected_under_a_hold_are_not_expired_while_it_stands(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit 29B: August, collected while cal's first hold stood, was reported expired every night
    until the release, which paid it. Due on the release: not expired meanwhile."""

    _minute_clock(monkeypatch)
    sc, cal, rows, back = _back_with_an_older_recovery(tmp_path)
    with Ledger.use(sc.ledger) as led:
        led.review(back, cal["person_id"], "HOLD", "核实", "区民政 王")
    sc.publish(back)
    assert sc.supplement(rows, "2026-01-05", breakers=OPEN).summary["expired"]["months"] == 1  # not yet collected
    with Ledger.use(sc.ledger) as led:
        led.set_recovery_state(led.owed_recoveries()["line_id"].unique().to_list(), "recovered", "区民政 王", "已追回")
    for day in ("2026-01-06", "2026-02-05"):
        assert sc.supplement(rows, day, breakers=OPEN).summary["expired"] == {"people": 0, "months": 0, "fen": 0}


def test_a_recovery_cancelled_since_does_not_end_a_payback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit 29C: the release night paid cal's August to December back; missing from one night's
    extract, October to December were recovered (R'); then the payback failed at the bank, which
    reversed it and cancelled R' (it asked back money never delivered). R' took nothing back, but
    its months ended the payback: October and November were reported expired, 30 000 fen. They
    are due again, re-issued with the rest."""

    _minute_clock(monkeypatch)
    sc, cal, rows, night = _collected_while_held(tmp_path)
    pid = cal["person_id"]
    sc.publish(night)
    payback = sc.lines(night.batch_id).filter(pl.col("person_id") == pid)["line_id"].to_list()
    sc.publish(sc.supplement([r for r in rows if r is not cal], "2026-01-08", breakers=OPEN))
    with Ledger.use(sc.ledger) as led:
        led.import_bank_returns(pl.DataFrame({"line_id": payback, "status": ["FAILED"], "reason": ["账户冻结"],
                                              "settled_at": ["2026-01-20"]}), "returns-payback-failed")
        assert led.df("select state from recoveries where batch_id like 'S20260108%'")["state"].to_list() == [
            "cancelled"]
    _august_to_december_paid_back(sc, rows, pid)


def test_a_recovery_published_in_the_second_of_the_collection_ends_the_payback(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit 29C: every bound of the rule counts its second in, but a recovery published in the
    second a held recovery was collected did not end the months' payback: paid back once, then
    recovered again and collected, October and November were paid a second time."""

    _minute_clock(monkeypatch)
    sc, cal, rows, night = _collected_while_held(tmp_path)
    pid = cal["person_id"]
    sc.publish(night)
    gone = sc.supplement([r for r in rows if r is not cal], "2026-01-08", breakers=OPEN)
    sc.publish(gone)
    with Ledger.use(sc.ledger) as led:
        # the collection, the payback's publication and the next recovery's, all in one second
        at = led.one("select published_at from batches where batch_id = ?", [night.batch_id])[0]  # type: ignore[index]
        led.run("update batches set published_at = ? where batch_id = ?", [at, gone.batch_id])
        led.run("update recoveries set changed_at = ? where state = 'recovered'", [at])
        led.set_recovery_state(led.owed_recoveries()["line_id"].unique().to_list(), "recovered", "区民政 王", "已追回")
    q2 = sc.quarterly("2026Q2", rows, "2026-04-02", breakers=OPEN)
    paid = sc.months(q2.batch_id).filter(pl.col("person_id") == pid)["month_idx"].to_list()
    assert M("2025-10") not in paid and M("2025-11") not in paid


@pytest.mark.parametrize("with_the_quarter", [False, True])
def test_a_recovery_refunded_by_hand_does_not_end_a_payback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            with_the_quarter: bool) -> None:
    """Audit 29C: as above, but the district collected R' (October to December of the payback)
    before the payback failed at the bank. The import said the family had returned money it never
    got, to be refunded by hand, and named the held recovery R, which had got back the fourth
    quarter's delivered payment, not R'. And R' still ended the payback: October and November were
    reported expired, 30 000 fen never paid. The refund is R''s, and R' (refunded) takes nothing
    back: August to December are due again, paid once. With the fourth quarter's payment failed
    in the same file, R asked back money never delivered too: both are refunded, and the payback
    still stands (the refund's entries name only the person's first failed line, that quarter's)."""

    _minute_clock(monkeypatch)
    sc, cal, rows, night = _collected_while_held(tmp_path)
    pid = cal["person_id"]
    sc.publish(night)
    payback = sc.lines(night.batch_id).filter(pl.col("person_id") == pid)["line_id"].to_list()
    gone = sc.supplement([r for r in rows if r is not cal], "2026-01-08", breakers=OPEN)
    sc.publish(gone)
    r2 = sc.lines(gone.batch_id).filter(pl.col("person_id") == pid)["line_id"].to_list()
    with Ledger.use(sc.ledger) as led:
        quarter = led.one("select batch_id from batches where quarter = '2025Q4'")[0]  # type: ignore[index]
        r1 = led.df("select line_id from recoveries where line_id not in ?", [r2])["line_id"].to_list()
    failed = payback + (sc.lines(quarter).filter(pl.col("person_id") == pid)["line_id"].to_list()
                        if with_the_quarter else [])
    with Ledger.use(sc.ledger) as led:
        led.set_recovery_state(r2, "recovered", "区民政 王", "已追回")
        done = led.import_bank_returns(pl.DataFrame({"line_id": failed, "status": "FAILED", "reason": "账户冻结",
                                                     "settled_at": "2026-01-20"}), "returns-payback-failed")
        refund = done["recovered_but_never_delivered"]
        assert (refund["fen"], refund["by_line"]) == ((90000, {r1[0]: 45000, r2[0]: 45000}) if with_the_quarter
                                                      else (45000, {r2[0]: 45000}))
    q2 = sc.quarterly("2026Q2", rows, "2026-04-02", breakers=OPEN)
    paid = sc.months(q2.batch_id).filter(pl.col("person_id") == pid)["month_idx"].to_list()
    assert paid[:5] == [M(f"2025-{m:02d}") for m in range(8, 13)] and len(paid) == len(set(paid))
    assert q2.summary["expired"] == {"people": 0, "months": 0, "fen": 0}
    sc.publish(q2)
    after = sc.supplement(rows, "2026-04-06", breakers=OPEN)
    assert sc.months(after.batch_id).filter(pl.col("person_id") == pid).height == 0
    assert after.summary["expired"]["months"] == 0 and after.summary["overpaid_before_window"]["fen"] == 0


def test_a_later_recovery_of_a_payback_delivered_still_ends_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit 30A: the payback P1 failed after R1 (October to December of it) was collected, so R1 is
    refunded by hand and the months were paid back again (P2), this time delivered. Missing from
    another night's extract, R2 took October to December of P2 back and was collected. R2 asked
    back money delivered: the payback is over, and October and November, older than the window,
    are expired (29B), where the refund on R1 had let them be paid a third time."""

    _minute_clock(monkeypatch)
    sc, cal, rows, night = _collected_while_held(tmp_path)
    pid = cal["person_id"]
    gone = [r for r in rows if r is not cal]

    def cals(batch: str) -> list[str]:
        return sc.lines(batch).filter(pl.col("person_id") == pid)["line_id"].to_list()

    sc.publish(night)
    r1 = cals(sc.publish(sc.supplement(gone, "2026-01-08", breakers=OPEN)).batch_id)
    payback = cals(night.batch_id)
    with Ledger.use(sc.ledger) as led:
        led.set_recovery_state(r1, "recovered", "区民政 王", "已追回")
        led.import_bank_returns(pl.DataFrame({"line_id": payback, "status": "FAILED", "settled_at": "2026-01-20"}),
                                "returns-payback-failed")
    again = sc.supplement(rows, "2026-01-21", breakers=OPEN)
    assert sc.months(again.batch_id).filter(pl.col("person_id") == pid)["month_idx"].to_list() == [
        M(f"2025-{m:02d}") for m in range(8, 13)]
    sc.publish(again)
    r2 = cals(sc.publish(sc.supplement(gone, "2026-01-22", breakers=OPEN)).batch_id)
    with Ledger.use(sc.ledger) as led:
        led.set_recovery_state(r2, "recovered", "区民政 王", "已追回")
    _october_and_november_expired(sc, rows, pid)


def test_a_payback_asked_back_by_two_recoveries_that_failed_is_refunded_on_both(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit 30C: after the release night paid cal's August to December back (P), the rules table
    was corrected (75 yuan at 70 to 79): Rd asked back half of P, and missing from the next night's
    extract, R' the other half of October to December; both collected. P then failed. Only the
    first recovery after P was taken as asking it back, so the refund named the held recovery R
    (which asked back the fourth quarter's payment, delivered) and R' still ended the payback:
    October and November, 15 000 fen, were never paid again. Both are refunded, and the months
    are paid back at the corrected amount."""

    _minute_clock(monkeypatch)
    sc, cal, rows, night = _collected_while_held(tmp_path)
    pid = cal["person_id"]

    def cals(batch: str) -> list[str]:
        return sc.lines(batch).filter(pl.col("person_id") == pid)["line_id"].to_list()

    sc.publish(night)
    folder = tmp_path / "rules_corrected"
    shutil.copytree(_three_month_rules(tmp_path / "c"), folder)
    for f in folder.glob("*.yaml"):
        f.write_text(f.read_text(encoding="utf-8").replace("max_age: 79, monthly_fen: 15000",
                                                           "max_age: 79, monthly_fen: 7500"), encoding="utf-8")
    sc.rules = rules_mod.load(folder)
    rd = cals(sc.publish(sc.supplement(rows, "2026-01-08", breakers=OPEN)).batch_id)
    r2 = cals(sc.publish(sc.supplement([r for r in rows if r is not cal], "2026-01-09", breakers=OPEN)).batch_id)
    payback = cals(night.batch_id)
    with Ledger.use(sc.ledger) as led:
        led.set_recovery_state(rd + r2, "recovered", "区民政 王", "已追回")
        refund = led.import_bank_returns(pl.DataFrame({"line_id": payback, "status": "FAILED",
                                                       "settled_at": "2026-01-20"}), "payback-failed")
    assert refund["recovered_but_never_delivered"]["by_line"] == {rd[0]: 4 * 7500, r2[0]: 3 * 7500}
    q2 = sc.quarterly("2026Q2", rows, "2026-04-02", breakers=OPEN)
    paid = sc.months(q2.batch_id).filter(pl.col("person_id") == pid).select("month_idx", "amount_fen").rows()
    assert paid[:5] == [(M(f"2025-{m:02d}"), 7500) for m in range(8, 13)]
    assert q2.summary["expired"] == {"people": 0, "months": 0, "fen": 0}


def _freezable_clock(monkeypatch: pytest.MonkeyPatch) -> list[dt.datetime]:
    """_minute_clock, but standing still at the instant put in the list returned, while it is there."""
    ticks = iter(range(100_000))
    frozen: list[dt.datetime] = []

    def clock() -> dt.datetime:
        return frozen[0] if frozen else dt.datetime(2026, 12, 1) + dt.timedelta(minutes=next(ticks))

    monkeypatch.setattr("allowance.ledger._now", clock)
    monkeypatch.setattr("allowance.runs._now", clock)
    return frozen


@pytest.mark.parametrize("same_second", [False, True])
def test_a_publication_in_the_second_of_a_failure_is_after_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              same_second: bool) -> None:
    """Audit 30C: the payback P and the fourth quarter's payment (which the held recovery R asked
    back) failed in one file, R refunded by hand; the next night paid the payback again (P2,
    delivered), and missing from the next night's extract, R'' took October to December of it
    back, collected. R'' asked back a payment delivered: October and November are expired. With
    the failure, P2 and R'' in one second (the ledger keeps seconds), R'' was taken as published
    before the failure, asking back P: they were paid a third time, 30 000 fen. A publication in
    the second of a failure is after it, as a night's run publishes after its bank returns."""

    frozen = _freezable_clock(monkeypatch)
    sc, cal, rows, night = _collected_while_held(tmp_path)
    pid = cal["person_id"]
    with Ledger.use(sc.ledger) as led:
        quarter = led.one("select batch_id from batches where quarter = '2025Q4'")[0]  # type: ignore[index]
    sc.publish(night)
    failed = [*sc.lines(night.batch_id).filter(pl.col("person_id") == pid)["line_id"],
              *sc.lines(quarter).filter(pl.col("person_id") == pid)["line_id"]]
    if same_second:
        frozen.append(dt.datetime(2027, 1, 1))
    with Ledger.use(sc.ledger) as led:
        led.import_bank_returns(pl.DataFrame({"line_id": failed, "status": "FAILED", "settled_at": "2026-01-20"}),
                                "returns-failed")
    sc.publish(sc.supplement(rows, "2026-01-21", breakers=OPEN))
    sc.publish(sc.supplement([r for r in rows if r is not cal], "2026-01-22", breakers=OPEN))
    frozen.clear()
    with Ledger.use(sc.ledger) as led:
        led.set_recovery_state(led.owed_recoveries()["line_id"].unique().to_list(), "recovered", "区民政 王", "已追回")
    _october_and_november_expired(sc, rows, pid)


@pytest.mark.parametrize("same_second", [False, True])
def test_a_failure_is_ordered_by_its_own_import_not_one_earlier_in_its_second(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, same_second: bool) -> None:
    """Audit 30E: the payback P paid, R' published (cal missing from one night's extract) and
    collected, then P failed: R' asked back P, so its refund is by hand and the payback stands. In
    one second, an import of another line's notice, R''s publication and P's failure: the failure
    was ordered by the earlier import's event, R' taken as published after it, the refund named on
    the held recovery R, and October and November expired (30 000 fen). Each import's entries are
    ordered by its own event."""

    frozen = _freezable_clock(monkeypatch)
    sc, cal, rows, night = _collected_while_held(tmp_path)
    pid = cal["person_id"]
    sc.publish(night)
    payback = sc.lines(night.batch_id).filter(pl.col("person_id") == pid)["line_id"].to_list()
    with Ledger.use(sc.ledger, read_only=True) as led:
        quarter = led.one("select batch_id from batches where quarter = '2025Q4'")[0]  # type: ignore[index]
    another = sc.lines(quarter).filter(pl.col("person_id") != pid)["line_id"].to_list()[:1]
    gone = sc.supplement([r for r in rows if r is not cal], "2026-01-08", breakers=OPEN)
    if same_second:
        frozen.append(dt.datetime(2027, 1, 1))
    with Ledger.use(sc.ledger) as led:
        led.import_bank_returns(pl.DataFrame({"line_id": another, "status": "PAID", "settled_at": "2026-01-19"}),
                                "returns-paid")
    r2 = sc.lines(sc.publish(gone).batch_id).filter(pl.col("person_id") == pid)["line_id"].to_list()
    with Ledger.use(sc.ledger) as led:
        led.set_recovery_state(r2, "recovered", "区民政 王", "已追回")
        failed = led.import_bank_returns(pl.DataFrame({"line_id": payback, "status": "FAILED",
                                                       "settled_at": "2026-01-20"}), "returns-failed")
    frozen.clear()
    assert failed["recovered_but_never_delivered"]["by_line"] == {r2[0]: 45000}
    _august_to_december_paid_back(sc, rows, pid)


def test_a_payback_stands_where_a_payment_since_nets_one_of_two_refunds(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit 30D: the held recovery R asked back the fourth quarter's payment, R' (cal missing from
    one night's extract) the payback P; back the next night, October to December were paid again
    within the window (P2, delivered). The fourth quarter's payment and P then failed in one file:
    both recoveries asked back money never delivered, and the ledger nets P2 against one of the two
    refunds. Counted to R, R' took the months back for good and October and November expired with
    nothing paid (30 000 fen, where no night's run came between). The refund is the latest's: P2
    made good the oldest, and R' took back nothing the district does not refund."""

    _minute_clock(monkeypatch)
    sc, cal, rows, night = _collected_while_held(tmp_path)
    pid = cal["person_id"]
    with Ledger.use(sc.ledger, read_only=True) as led:
        quarter = led.one("select batch_id from batches where quarter = '2025Q4'")[0]  # type: ignore[index]
    sc.publish(night)
    failed = [*sc.lines(night.batch_id).filter(pl.col("person_id") == pid)["line_id"],
              *sc.lines(quarter).filter(pl.col("person_id") == pid)["line_id"]]
    r2 = sc.lines(sc.publish(sc.supplement([r for r in rows if r is not cal], "2026-01-08",
                                           breakers=OPEN)).batch_id).filter(pl.col("person_id") == pid)["line_id"]
    with Ledger.use(sc.ledger) as led:
        led.set_recovery_state(r2.to_list(), "recovered", "区民政 王", "已追回")
    again = sc.publish(sc.supplement(rows, "2026-01-09", breakers=OPEN))
    assert sc.months(again.batch_id).filter(pl.col("person_id") == pid)["month_idx"].to_list() == [
        M("2025-10"), M("2025-11"), M("2025-12")]
    with Ledger.use(sc.ledger) as led:
        refund = led.import_bank_returns(pl.DataFrame({"line_id": failed, "status": "FAILED",
                                                       "settled_at": "2026-01-20"}), "returns-failed")
    assert refund["recovered_but_never_delivered"]["by_line"] == {r2[0]: 45000}
    _august_to_december_paid_back(sc, rows, pid)
