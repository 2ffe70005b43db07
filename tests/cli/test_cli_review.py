"""`allowance review hold|reject|release`: one person, or a district's list from a file.

What must hold: a list is the same as its people reviewed one by one (lines, totals, decisions),
in one transaction; a list naming anyone with nothing in the draft changes nothing; IDs are
masked in what is printed; a bad option or file is one line and exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from cli_helpers import cli, ok, ok_json, sample_rows, user_error, write_sample

from allowance.ledger import Ledger
from allowance.testing import write_registry


def _drafted(folder: Path) -> tuple[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    led = folder / "ledger.duckdb"
    reg = write_sample(folder / "registry.parquet")
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    res = ok_json(cli("run", "quarterly", "--quarter", "2025Q3", "--registry", reg, "--as-of", "2025-07-01",
                      "--ledger", led, "--json"))
    return led, res["batch_id"]


def _state(led: Path, bid: str) -> tuple[set[str], set[str], int, int, list[tuple[str, str, str]]]:
    """Who has a line and who a no-card entry, the batch's totals, and its decisions."""
    with Ledger.use(led, read_only=True) as lg:
        lines = set(lg.part(bid, "lines")["person_id"].to_list())
        no_card = set(lg.df("select person_id from batch_no_card where batch_id = ?", [bid])["person_id"].to_list())
        b = lg.batch(bid)
        decisions = [(r["person_id"], r["action"], r["reason"]) for r in lg.decisions(bid).iter_rows(named=True)]
    return lines, no_card, b["lines"], b["amount_fen"], decisions


def _paid_and_unpaid(led: Path, bid: str) -> tuple[list[str], list[str]]:
    lines, no_card, *_ = _state(led, bid)
    return sorted(lines), sorted(no_card)


def test_a_list_is_its_people_one_by_one(isolated: Path) -> None:
    one_led, one_bid = _drafted(isolated / "one")
    list_led, list_bid = _drafted(isolated / "list")
    assert one_bid == list_bid
    paid, unpaid = _paid_and_unpaid(one_led, one_bid)
    people = [paid[0], paid[3], unpaid[0], unpaid[1]]  # two with lines, two listed for a card only
    for p in people:
        ok(cli("review", "hold", one_bid, "--person", p, "--reason", "checking", "--by", "区民政", "--ledger", one_led))
    listed = isolated / "people.txt"
    listed.write_text(f"# 黄浦区 list\n{people[0]}\n\n  {people[1].lower()}  \n{people[2]}\n{people[3]}\n{people[0]}\n",
                      encoding="utf-8")
    res = ok(cli("review", "hold", list_bid, "--persons-file", listed, "--reason", "checking", "--by", "区民政",
                 "--ledger", list_led))
    assert res.stdout.startswith(f"hold 4 people in {list_bid}: now ")
    one, many = _state(one_led, one_bid), _state(list_led, list_bid)
    assert one[:4] == many[:4]
    assert not set(people) & (many[0] | many[1])  # nobody held keeps a line or a no-card entry
    assert sorted(one[4]) == sorted(many[4]) == sorted((p, "HOLD", "checking") for p in people)
    # The change report and `changes` stay the extract's as drafted; the summary says who review took out.
    with Ledger.use(list_led, read_only=True) as lg:
        summary = json.loads(lg.batch(list_bid)["summary"])
    assert summary["taken_out_by_review"] == {"hold": 4}
    ok(cli("review", "reject", list_bid, "--person", paid[1], "--reason", "not entitled", "--by", "区民政",
           "--ledger", list_led))
    with Ledger.use(list_led, read_only=True) as lg:
        assert json.loads(lg.batch(list_bid)["summary"])["taken_out_by_review"] == {"hold": 4, "reject": 1}


def test_a_list_naming_someone_not_in_the_draft_changes_nothing(isolated: Path) -> None:
    led, bid = _drafted(isolated / "l")
    paid, _ = _paid_and_unpaid(led, bid)
    stranger = sample_rows(40)[35]["person_id"]  # a valid ID that is not in this registry
    listed = isolated / "people.txt"
    listed.write_text(f"{paid[0]}\n{stranger}\n", encoding="utf-8")
    before = _state(led, bid)
    line = user_error(cli("review", "reject", bid, "--persons-file", listed, "--reason", "x", "--by", "y",
                          "--ledger", led), "no line for 1 of the 2 people", "nothing to reject")
    assert stranger not in line and stranger[:6] + "********" + stranger[-4:] in line  # masked
    assert _state(led, bid) == before


def test_one_person_json_is_masked(isolated: Path) -> None:
    led, bid = _drafted(isolated / "l")
    paid, _ = _paid_and_unpaid(led, bid)
    before = _state(led, bid)
    res = ok_json(cli("review", "hold", bid, "--person", paid[1], "--reason", "x", "--by", "y", "--ledger", led,
                      "--json"))
    assert res["person"] == paid[1][:6] + "********" + paid[1][-4:]
    assert res["lines"] == before[2] - 1 and res["amount_fen"] < before[3]


def test_person_given_twice_names_two_people(isolated: Path) -> None:
    """Audit 27F: a second --person replaced the first without a word, so only the last was held."""
    led, bid = _drafted(isolated / "l")
    paid, _ = _paid_and_unpaid(led, bid)
    res = ok_json(cli("review", "hold", bid, "--person", paid[0], "--person", paid[1], "--person", paid[0],
                      "--reason", "x", "--by", "y", "--ledger", led, "--json"))
    assert res["people"] == 2, res
    with Ledger.use(led, read_only=True) as lg:
        assert sorted(lg.decisions(bid)["person_id"].to_list()) == sorted(paid[:2])


@pytest.mark.parametrize(("extra", "fragment"), [
    ((), "either --person ID or --persons-file FILE"),
    (("--person", "X", "--persons-file", "people.txt"), "either --person ID or --persons-file FILE"),
    (("--persons-file", "missing.txt"), "missing.txt: cannot read the list of people"),
    (("--persons-file", "empty.txt"), "empty.txt: names no one"),
])
def test_who_is_named_badly(isolated: Path, extra: tuple[str, ...], fragment: str) -> None:
    led, bid = _drafted(isolated / "l")
    (isolated / "empty.txt").write_text("# nobody yet\n\n", encoding="utf-8")
    before = _state(led, bid)
    user_error(cli("review", "hold", bid, *extra, "--reason", "x", "--by", "y", "--ledger", led), fragment)
    assert _state(led, bid) == before


def test_rejecting_someone_already_paid_says_the_next_run_recovers_it(isolated: Path) -> None:
    """Q3 is published; in Q4's draft one paid person and one with no payment yet (no card in
    Q3, a card now) are rejected: only the first has months to recover, and the output says so."""
    led = isolated / "ledger.duckdb"
    rows = sample_rows(12)
    newcomer = rows[0]  # born 1920, no card in Q3
    assert newcomer["channel"] is None
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    q3 = ok_json(cli("run", "quarterly", "--quarter", "2025Q3", "--registry",
                     write_registry(rows, isolated / "r3.parquet"), "--as-of", "2025-07-01", "--ledger", led, "--json"))
    ok(cli("publish", q3["batch_id"], "--approved-by", "t", "--ledger", led, "--out", isolated / "out"))
    newcomer.update(channel="senior_card", card_no="6200000000000001")
    q4 = ok_json(cli("run", "quarterly", "--quarter", "2025Q4", "--registry",
                     write_registry(rows, isolated / "r4.parquet"), "--as-of", "2025-10-01", "--ledger", led, "--json"))
    with Ledger.use(led, read_only=True) as lg:
        paid = sorted(set(lg.part(q3["batch_id"], "lines")["person_id"].to_list()))
    assert newcomer["person_id"] not in paid
    out = ok(cli("review", "reject", q4["batch_id"], "--person", paid[0], "--reason", "户籍不符", "--by", "区民政",
                 "--ledger", led)).stdout
    assert "1 of them were paid for months of this draft's window" in out and "NOT_ENTITLED" in out, out
    assert ok_json(cli("review", "reject", q4["batch_id"], "--person", paid[1], "--reason", "x", "--by", "y",
                       "--ledger", led, "--json"))["recovered_next_run"] == 1
    res = ok_json(cli("review", "reject", q4["batch_id"], "--person", newcomer["person_id"], "--reason", "x",
                      "--by", "y", "--ledger", led, "--json"))
    assert res["recovered_next_run"] == 0, res
    # from a month (audit 26B): from October nothing paid is recovered; from September one month is
    user_error(cli("review", "reject", q4["batch_id"], "--person", paid[2], "--reason", "x", "--by", "y",
                   "--from", "2025-9", "--ledger", led), "2025-9", "YYYY-MM")
    out = ok(cli("review", "reject", q4["batch_id"], "--person", paid[2], "--reason", "户籍不符", "--by", "区民政",
                 "--from", "2025-10", "--ledger", led)).stdout
    assert "were paid" not in out and "the months before 2025-10 stay theirs: this draft has nothing" in out, out
    # from November: the draft keeps October of their Q4 line, under its line id (audit 26I)
    with Ledger.use(led, read_only=True) as lg:
        line_id, amount = lg.part(q4["batch_id"], "lines").filter(pl.col("person_id") == paid[4]).select(
            "line_id", "amount_fen").row(0)
    got = ok_json(cli("review", "reject", q4["batch_id"], "--person", paid[4], "--reason", "户籍不符", "--by",
                      "区民政", "--from", "2025-11", "--ledger", led, "--json"))
    assert got["kept_before_from"] == {"people": 1, "payments": {"lines": 1, "amount_fen": amount // 3},
                                       "recoveries": {"lines": 0, "amount_fen": 0}, "recoveries_cancelled_fen": 0}, got
    with Ledger.use(led, read_only=True) as lg:
        assert lg.part(q4["batch_id"], "lines").filter(pl.col("person_id") == paid[4]).select(
            "line_id", "months", "amount_fen").row(0) == (line_id, 1, amount // 3)
    out = ok(cli("review", "reject", q4["batch_id"], "--person", paid[3], "--reason", "户籍不符", "--by", "区民政",
                 "--from", "2025-09", "--ledger", led)).stdout
    assert "1 of them were paid for months of this draft's window from 2025-09" in out, out
    with Ledger.use(led, read_only=True) as lg:
        froms = dict(lg.decisions(q4["batch_id"]).select("person_id", "from_month").iter_rows())
    window_first = 2025 * 12 + 6  # the draft's window starts at the opening month, 2025-07
    assert [froms[p] for p in paid[:4]] == [window_first, window_first, 2025 * 12 + 9, 2025 * 12 + 8]
    # and said so, as a month (audit 26D: shown nowhere, a month index in the JSON)
    listed = ok(cli("review", "list", q4["batch_id"], "--ledger", led)).stdout.splitlines()
    assert [ln for ln in listed if " from 2025-09 " in ln] and [ln for ln in listed if " from 2025-10 " in ln], listed
    rows = ok_json(cli("review", "list", q4["batch_id"], "--ledger", led, "--json"))["decisions"]
    assert sorted(r["from_month"] for r in rows) == ["2025-07", "2025-07", "2025-07", "2025-09", "2025-10",
                                                    "2025-11"], rows
    # audit 26G: a mistyped batch is refused, not listed as nobody decided; and a hold of a list
    # naming one person still in the draft and one rejected from October names the second among both
    user_error(cli("review", "list", q4["batch_id"] + "x", "--ledger", led), "unknown batch")
    both = isolated / "both.txt"
    both.write_text(f"{paid[5]}\n{paid[2]}\n", encoding="utf-8")
    from allowance.idcard import mask
    user_error(cli("review", "hold", q4["batch_id"], "--persons-file", both, "--reason", "x", "--by", "y",
                   "--ledger", led), f"1 of the 2 people (e.g. {mask(paid[2])})", "rejected already (from 2025-10)",
               "nothing recorded")
    # audit 27C: rejected from an earlier month than the one standing, someone the draft has nothing
    # of any more is recorded (the next run recovers July to September), not refused as "already";
    # but only with --from (audit 27D: a plain rejection re-entered widened it unsaid)
    both.write_text(f"{paid[0]}\n{paid[2]}\n", encoding="utf-8")
    user_error(cli("review", "reject", q4["batch_id"], "--persons-file", both, "--reason", "x", "--by", "y",
                   "--ledger", led), "rejected already (from 2025-10)", "give --from an earlier month",
               "nothing recorded")
    out = ok(cli("review", "reject", q4["batch_id"], "--persons-file", both, "--reason", "x", "--by", "y",
                 "--from", "2025-07", "--ledger", led)).stdout
    assert "1 of them already rejected" in out and "1 of them were paid for months of this draft's window" in out, out
    with Ledger.use(led, read_only=True) as lg:
        assert sorted(lg.decisions(q4["batch_id"]).filter(pl.col("person_id") == paid[2])["from_month"]) == [
            window_first, 2025 * 12 + 9]


def test_each_district_approves_its_list_and_a_change_withdraws_the_approval(isolated: Path) -> None:
    """五 区民政部门资格审定: with --require-district-approvals a draft is published only once every
    district in it has approved its list; a hold afterwards withdraws that district's approval;
    the manifest names who approved each list."""
    import json

    led, bid = _drafted(isolated)
    out = isolated / "out"
    with Ledger.use(led, read_only=True) as lg:
        districts = lg.districts_of(bid)
        someone, theirs = lg.part(bid, "lines").select("person_id", "district_code").row(0)
    # 310101's people have no card in the sample: its list is their no-card entries, approved too
    assert districts == ["310101", "310104", "310115"] and theirs != "310101"
    strict = ["publish", bid, "--approved-by", "市民政局 张", "--ledger", led, "--out", out,
              "--require-district-approvals"]
    user_error(cli(*strict), "3 district(s) have not approved", "310101 黄浦区", "review approve")
    said = ok(cli("review", "approve", bid, "--district", "310101", "--district", "310104", "--by", "区民政 王",
                  "--ledger", led)).stdout
    assert said == f"{bid}: 2 district(s) approved their list; not yet: 310115\n", said
    user_error(cli(*strict), "1 district(s) have not approved", "310115 浦东新区")
    shown = ok_json(cli("batches", "show", bid, "--ledger", led, "--json"))["district_approvals"]
    assert shown == {"310101": "区民政 王", "310104": "区民政 王", "310115": None}, shown
    user_error(cli("review", "approve", bid, "--district", "310120", "--by", "x", "--ledger", led),
               "has nothing for district 310120", "nothing approved")
    approved = ok_json(cli("review", "approve", bid, "--district", "310115", "--by", "浦东民政 李", "--ledger", led,
                           "--json"))
    # the fields every batch command's JSON has (README; a seventh audit found them missing here)
    whole = ok_json(cli("batches", "show", bid, "--ledger", led, "--json"))
    assert {k: approved[k] for k in ("batch_id", "status", "lines", "amount_fen")} == {
        k: whole[k] for k in ("batch_id", "status", "lines", "amount_fen")}
    assert approved["approved"] == ["310101", "310104", "310115"] and approved["not_yet"] == []
    held = ok_json(cli("review", "hold", bid, "--person", someone, "--reason", "核实", "--by", "区民政 王",
                       "--ledger", led, "--json"))
    assert held["approvals_withdrawn"] == [theirs], held
    user_error(cli(*strict), "1 district(s) have not approved", theirs)
    ok(cli("review", "approve", bid, "--district", theirs, "--by", "复核 赵", "--note", "复核后", "--ledger", led))
    ok(cli(*strict))
    manifest = json.loads((out / bid / "manifest.json").read_text(encoding="utf-8"))
    by = {"310101": "区民政 王", "310104": "区民政 王", "310115": "浦东民政 李", theirs: "复核 赵"}
    assert [(a["district_code"], a["approved_by"]) for a in manifest["district_approvals"]] == sorted(by.items())
    assert manifest["districts_not_approved"] == []
    user_error(cli("review", "approve", bid, "--district", "310101", "--by", "x", "--ledger", led),
               "is published", "only a draft")


def test_publishing_without_the_switch_needs_no_district_approval_and_says_whose_is_missing(isolated: Path) -> None:
    """Without --require-district-approvals the publisher's approval is enough, but the districts
    whose list no one in the district approved are said and named in the manifest (audits 25B, 26B:
    an empty `district_approvals` said nothing of it); written again, the manifest says the same."""
    import json

    led, bid = _drafted(isolated)
    out = isolated / "out"
    ok(cli("review", "approve", bid, "--district", "310104", "--by", "区民政 王", "--ledger", led))
    said = ok(cli("publish", bid, "--approved-by", "市民政局", "--ledger", led, "--out", out)).stdout
    assert "2 district(s) had not approved their list" in said and "310101, 310115" in said, said
    manifest = json.loads((out / bid / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["districts_not_approved"] == ["310101", "310115"]
    assert [a["district_code"] for a in manifest["district_approvals"]] == ["310104"]
    again = ok_json(cli("publish", bid, "--approved-by", "市民政局", "--ledger", led, "--out", out, "--rewrite",
                        "--json"))
    assert "districts_not_approved" not in again  # a publication's news, said once
    assert json.loads((out / bid / "manifest.json").read_text(encoding="utf-8")) == manifest


def test_an_id_is_read_as_the_extract_s_and_a_release_must_lift_something(isolated: Path) -> None:
    """A third audit: a release naming a legacy 15-digit ID or a typo reported success, recorded a
    decision that matched nobody, and left the person held (unpaid). IDs are now normalised as the
    extract's are (a legacy form finds its person), a malformed one is refused, and a release of
    someone not held or rejected is refused; nothing is recorded by a refusal."""
    led, bid = _drafted(isolated)
    paid, _ = _paid_and_unpaid(led, bid)
    pid = next(p for p in paid if p[6:8] == "19")
    legacy = pid[:6] + pid[8:17]
    review = ["--reason", "checking", "--by", "区民政", "--ledger", led]
    both = isolated / "both.txt"
    both.write_text(f"{legacy}\n{pid}\n", encoding="utf-8")
    held = ok_json(cli("review", "hold", bid, "--persons-file", both, *review, "--json"))
    assert held["person"] == f"{pid[:6]}********{pid[-4:]}"  # one person named in two forms: one decision
    assert pid not in _state(led, bid)[0] and len(_state(led, bid)[4]) == 1
    wrong_check = pid[:17] + ("0" if pid[17] != "0" else "1")
    for typed, why in [(wrong_check, "not a valid resident ID"), (pid[:16], "not a valid resident ID"),
                       (paid[1], "not held or rejected")]:
        before = _state(led, bid)[4]
        line = user_error(cli("review", "release", bid, "--person", typed, *review), why, "nothing")
        assert typed not in line  # masked, if shown at all
        assert _state(led, bid)[4] == before
    ok(cli("review", "release", bid, "--person", legacy, *review))
    with Ledger.use(led, read_only=True) as lg:
        assert pid not in set(lg.blocked()["person_id"].to_list())
        assert [(r["person_id"], r["action"]) for r in lg.decisions(bid).iter_rows(named=True)] == [
            (pid, "HOLD"), (pid, "RELEASE")]
    # run again (killed after its commit, a script's retry): said, exit 0, nothing recorded (audit
    # 31B: refused as "not held or rejected"); someone never held is still refused with them
    assert ok_json(cli("review", "release", bid, "--person", pid, *review, "--json"))["already"] == 1
    assert "already released on this draft" in ok(cli("review", "release", bid, "--person", pid, *review)).stdout
    both.write_text(f"{pid}\n{paid[1]}\n", encoding="utf-8")
    user_error(cli("review", "release", bid, "--persons-file", both, *review), "not held or rejected", "nothing")
    with Ledger.use(led, read_only=True) as lg:
        assert [r["action"] for r in lg.decisions(bid).iter_rows(named=True)] == ["HOLD", "RELEASE"]


def test_a_release_says_the_draft_it_was_recorded_against_is_stale(isolated: Path) -> None:
    """An audit: a release makes the drafts made before it stale, the one it was recorded against
    too (their redraft pays the released person). Its message read as if that draft were still the
    one to publish, approvals of it were taken without a word, and only publish refused it."""
    led, bid = _drafted(isolated)
    with Ledger.use(led, read_only=True) as lg:
        someone, district = lg.part(bid, "lines").select("person_id", "district_code").row(0)
    held = ok_json(cli("review", "hold", bid, "--person", someone, "--reason", "check", "--by", "d", "--ledger", led,
                       "--json"))
    assert held["stale"] is False  # a hold keeps its own draft publishable
    released = cli("review", "release", bid, "--person", someone, "--reason", "checked", "--by", "d", "--ledger", led)
    assert f"{bid} can no longer be published" in ok(released).stdout and "run the draft again" in released.stdout
    approved = ok(cli("review", "approve", bid, "--district", district, "--by", "d", "--ledger", led)).stdout
    assert f"{bid} can no longer be published" in approved
    assert ok_json(cli("review", "approve", bid, "--district", district, "--by", "d", "--ledger", led,
                       "--json"))["stale"] is True
    user_error(cli("publish", bid, "--approved-by", "t", "--ledger", led, "--out", isolated / "out"),
               "drafted before the ledger last changed")


def test_a_redraft_names_the_approvals_it_can_keep_and_carry_keeps_them(isolated: Path) -> None:
    """A redraft (here a day later, with nothing paid between) says which earlier draft of the same
    run was approved, and `review carry` keeps the approvals of every list that is unchanged."""
    led, old = _drafted(isolated)
    reg = isolated / "registry.parquet"
    ok(cli("review", "approve", old, "--district", "310101", "--district", "310115", "--by", "区民政 王",
           "--ledger", led))
    said = ok(cli("run", "quarterly", "--quarter", "2025Q3", "--registry", reg, "--as-of", "2025-07-02",
                  "--ledger", led)).stdout
    new = said.split()[1].rstrip(":")
    assert new != old
    assert (f"the earlier draft {old} of this run was approved by 2 district(s); keep the approvals whose lists "
            f"are unchanged: allowance review carry {new} --from {old} --by NAME") in said, said
    assert ok_json(cli("batches", "show", new, "--ledger", led, "--json"))["approvals_to_carry"] == {
        "from": old, "districts": ["310101", "310115"]}
    user_error(cli("review", "carry", new, "--from", "Q2025Q3-00000000", "--by", "x", "--ledger", led),
               "unknown batch")
    user_error(cli("review", "carry", new, "--from", old, "--by", " ", "--ledger", led), "needs --by")
    got = ok_json(cli("review", "carry", new, "--from", old, "--by", "市大数据中心", "--ledger", led, "--json"))
    assert {k: got[k] for k in ("batch_id", "from", "carried", "changed", "not_yet", "stale")} == {
        "batch_id": new, "from": old, "carried": ["310101", "310115"], "changed": [], "not_yet": ["310104"],
        "stale": False}
    shown = ok_json(cli("batches", "show", new, "--ledger", led, "--json"))["district_approvals"]
    assert shown == {"310101": "区民政 王", "310104": None, "310115": "区民政 王"}, shown
    assert "approvals_to_carry" not in ok_json(cli("batches", "show", new, "--ledger", led, "--json"))
    again = ok(cli("review", "carry", new, "--from", old, "--by", "市大数据中心", "--ledger", led)).stdout
    assert again.startswith(f"{new}: 0 district approval(s) carried from {old}"), again
    assert "not approved in" in again and "310104" in again
    redraft = ok(cli("run", "quarterly", "--quarter", "2025Q3", "--registry", reg, "--as-of", "2025-07-02",
                     "--ledger", led)).stdout
    assert "review carry" not in redraft  # nothing left to carry
    assert not list(isolated.rglob("*-since-*"))  # nothing changed: no list of changes
    # A name corrected in 310115 before a third draft: only that district approves again, and
    # who changed is listed for it (whole IDs, beside the change reports; masked nowhere else).
    rows = pl.read_parquet(reg)
    renamed = rows.filter(pl.col("district_code") == "310115")["person_id"][0]
    rows.with_columns(name=pl.when(pl.col("person_id") == renamed).then(pl.lit("改名")).otherwise("name")
                      ).write_parquet(reg)
    third = ok_json(cli("run", "quarterly", "--quarter", "2025Q3", "--registry", reg, "--as-of", "2025-07-03",
                        "--ledger", led, "--json"))["batch_id"]
    out = isolated / "out"
    got = ok_json(cli("review", "carry", third, "--from", new, "--by", "x", "--ledger", led, "--out", out,
                      "--json"))
    assert (got["carried"], got["changed"], got["changed_people"]) == (["310101"], ["310115"], {"310115": 1})
    listed = pl.read_parquet(got["changes_file"])
    assert got["changes_file"] == str(out / "reports" / f"{third}-since-{new}.parquet")
    assert listed.select("person_id", "side", "name").sort("side").rows() == [
        (renamed, "approved", rows.filter(pl.col("person_id") == renamed)["name"][0]), (renamed, "now", "改名")]
    said = ok(cli("review", "carry", third, "--from", new, "--by", "x", "--ledger", led, "--out", out)).stdout
    assert "approve again: 310115 (1 people)" in said and renamed not in said


def test_a_decision_run_again_is_already_taken(isolated: Path) -> None:
    """Audit 17A: a hold run again (killed after its commit, a script rerun) said the person had no
    line in the draft, exit 2, as if the ID were wrong. It is taken: nothing more is recorded."""
    led, bid = _drafted(isolated)
    paid, _ = _paid_and_unpaid(led, bid)
    for action, done in (("hold", "held"), ("reject", "rejected")):
        who = paid[0] if action == "hold" else paid[1]
        args = ["review", action, bid, "--person", who, "--reason", "核实", "--by", "区民政", "--ledger", led]
        assert ok_json(cli(*args, "--json"))["already"] == 0
        before = _state(led, bid)
        said = ok(cli(*args)).stdout
        assert said == f"{who[:6]}********{who[-4:]} already {done}: nothing recorded\n", said
        assert ok_json(cli(*args, "--json"))["already"] == 1
        assert _state(led, bid) == before
    # A list naming one already held and one not: the other is held, and the first said (audit 17E:
    # refused, saying the first had no line).
    listed = isolated / "people.txt"
    listed.write_text(f"{paid[0]}\n{paid[2]}\n", encoding="utf-8")
    said = ok(cli("review", "hold", bid, "--persons-file", listed, "--reason", "核实", "--by", "区民政",
                  "--ledger", led)).stdout
    assert said.startswith(f"hold 2 people in {bid}: ") and "1 of them already held: nothing recorded" in said, said
    assert paid[2] not in _state(led, bid)[0]
    with Ledger.use(led, read_only=True) as lg:  # one decision for the first, still
        assert lg.decisions(bid)["person_id"].to_list().count(paid[0]) == 1
    # Rejecting someone held (or holding someone rejected) says so, not that the ID has no line
    # (audit 17F): the decision must be released first.
    user_error(cli("review", "reject", bid, "--person", paid[0], "--reason", "x", "--by", "y", "--ledger", led),
               "that person is held already (from 2025-07): release first to reject; nothing recorded")
    ok(cli("publish", bid, "--approved-by", "x", "--ledger", led, "--out", isolated / "out"))
    # A hold run again after its draft was published is still taken (audit 17F: a retried script
    # failed once anything was published in between); someone not held is refused as before.
    assert ok(cli("review", "hold", bid, "--person", paid[0], "--reason", "x", "--by", "y", "--ledger", led)
              ).stdout.endswith("already held: nothing recorded\n")
    user_error(cli("review", "hold", bid, "--person", paid[3], "--reason", "x", "--by", "y", "--ledger", led),
               "is published", "only a draft")
