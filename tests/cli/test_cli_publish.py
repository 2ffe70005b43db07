"""`allowance publish`: bank files + ledger in one step; publishing twice is a no-op."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from cli_helpers import cli, ok, ok_json, published_sample, sample_rows, tree_hashes, user_error, write_sample

from allowance.ledger import Ledger
from allowance.outputs import verify_batch


@pytest.fixture
def drafted(isolated: Path) -> tuple[Path, Path, str]:
    led = isolated / "ledger.duckdb"
    reg = write_sample(isolated / "registry.parquet")
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    res = ok_json(cli("run", "quarterly", "--quarter", "2025Q3", "--registry", reg, "--as-of", "2025-07-01",
                      "--ledger", led, "--json"))
    return led, reg, res["batch_id"]


def test_publish_json_writes_the_batch(isolated: Path, drafted: tuple[Path, Path, str]) -> None:
    led, _, bid = drafted
    out = isolated / "out"
    res = ok_json(cli("publish", bid, "--approved-by", "王科长", "--ledger", led, "--out", out, "--json"))
    assert {"batch_id", "lines", "amount_fen"} <= set(res)
    assert res["batch_id"] == bid and res["status"] == "published"
    assert res["lines"] > 0 and res["amount_fen"] > 0
    folder = out / bid
    assert (folder / "manifest.json").is_file()
    assert verify_batch(folder) == []
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["batch_id"] == bid
    assert manifest["approved_by"] == "王科长"
    assert manifest["control_totals"]["payments"] == {
        "lines": res["lines"], "amount_fen": res["amount_fen"],
        "municipal_fen": res["amount_fen"] // 2, "district_fen": res["amount_fen"] // 2}
    shown = ok_json(cli("batches", "show", bid, "--ledger", led, "--json"))
    assert (shown["status"], shown["approved_by"]) == ("published", "王科长")
    status = ok_json(cli("ledger", "status", "--ledger", led, "--json"))
    assert status["net_fen"] == res["amount_fen"]
    assert status["batches"] == {"published": 1}


def test_publish_text(isolated: Path, drafted: tuple[Path, Path, str]) -> None:
    led, _, bid = drafted
    out = ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", isolated / "o")).stdout
    assert out.startswith(f"published {bid}: ")
    assert "total" in out
    assert "manifest.json" in out


def test_publish_twice_is_a_no_op(isolated: Path, drafted: tuple[Path, Path, str]) -> None:
    led, _, bid = drafted
    out = isolated / "out"
    first = ok_json(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out, "--json"))
    before = tree_hashes(out / bid)
    batches = ok_json(cli("batches", "list", "--ledger", led, "--json"))
    second = ok_json(cli("publish", bid, "--approved-by", "someone else", "--ledger", led, "--out", out, "--json"))
    assert (second["lines"], second["amount_fen"]) == (first["lines"], first["amount_fen"])
    assert tree_hashes(out / bid) == before
    assert ok_json(cli("batches", "list", "--ledger", led, "--json")) == batches
    assert ok_json(cli("batches", "show", bid, "--ledger", led, "--json"))["approved_by"] == "tester"
    # Audit 18B: it printed "published …" as if it had paid again, and dropped the other name unsaid
    assert "already_published" not in first
    assert second["already_published"]["approved_by"] == "tester"
    text = ok(cli("publish", bid, "--approved-by", "someone else", "--ledger", led, "--out", out)).stdout
    assert text.startswith(f"{bid} was published before (") and "nothing paid again" in text, text
    assert "it stands as approved by tester, not someone else" in text


def test_files_deleted_after_publication_are_rewritten_identically(
    isolated: Path, drafted: tuple[Path, Path, str]
) -> None:
    led, _, bid = drafted
    out = isolated / "out"
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out))
    before = tree_hashes(out / bid)
    (out / bid / "funding.parquet").unlink()
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out))
    assert tree_hashes(out / bid) == before


def test_files_taken_away_after_delivery_are_not_written_again_unless_asked(
    isolated: Path, drafted: tuple[Path, Path, str]
) -> None:
    """The bank (or an archive job) takes a delivered batch's folder away; a rerun of the publish
    (a scheduler's retry, say) must not deliver the same payments a second time. `--rewrite` does,
    the same bytes, when the bank asks for them again."""
    led, _, bid = drafted
    out = isolated / "out"
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out))
    before = tree_hashes(out / bid)
    shutil.move(out / bid, isolated / "bank-took-it")
    text = ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out)).stdout
    assert "have been taken away since: nothing written" in text and "--rewrite" in text, text
    again = ok_json(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out, "--json"))
    assert again["files_taken_away"] == str(out / bid) and again["out_dir"] is None, again
    assert not (out / bid).exists()
    text = ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out, "--rewrite")).stdout
    assert tree_hashes(out / bid) == before
    # said as a rewrite, not as a publication (audit 18D: it printed "published …")
    assert text.startswith(f"{bid} was published before (") and "its files written to" in text, text
    assert "ok: True" in ok(cli("ledger", "check", "--ledger", led)).stdout


def test_files_written_again_where_the_recorded_folder_is_gone_are_recorded_there(
    isolated: Path, drafted: tuple[Path, Path, str]
) -> None:
    """An audit: with the out folder recorded at publication moved away (with the ledger, to a
    new disk), `publish --out NEW` said the files had been delivered to NEW, where they never
    were, and `--rewrite` wrote them to NEW while `ledger check` went on looking for them where
    they had been. The message names the recorded folder, and a rewrite elsewhere is recorded:
    `ledger check` verifies it there, a later publication writes only there, and no draft goes
    stale (nothing paid or owed changed)."""
    led, reg, bid = drafted
    old, new = isolated / "out", isolated / "new-disk" / "out"
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", old))
    before = tree_hashes(old / bid)
    shutil.move(old, isolated / "archived")
    again = ok_json(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", new, "--json"))
    assert again["files_taken_away"] == str(old / bid) and not new.exists(), again
    night = ok_json(cli("run", "supplement", "--as-of", "2025-07-05", "--registry", reg, "--ledger", led, "--out", new,
                        "--json"))
    ok(cli("publish", bid, "--approved-by", "operator", "--ledger", led, "--out", new, "--rewrite"))
    assert tree_hashes(new / bid) == before
    check = ok_json(cli("ledger", "check", "--ledger", led, "--json"))
    assert check["ok"] and check["bank_folders"]["verified"] == 1, check
    (new / bid / "funding.parquet").write_bytes(b"altered")
    res = cli("ledger", "check", "--ledger", led, "--json")
    assert res.exit_code != 0 and f"bank files in {new / bid}" in res.stdout, res.stdout
    (new / bid / "funding.parquet").unlink()
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", new))  # mended where it is
    assert tree_hashes(new / bid) == before
    user_error(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", old),
               f"was published to {new}", "nothing written")
    with Ledger.use(led, read_only=True) as lg:
        assert not lg.draft_is_stale(night["batch_id"])


def test_a_manifest_names_the_code_that_made_it(
    isolated: Path, drafted: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An audit: code_version was the package version alone, 0.1.0 for engines that pay differently.
    It carries a digest of the engine's source; files written again keep the first one's."""
    import allowance.batch
    import allowance.runs

    led, _, bid = drafted
    out = isolated / "out"
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out))
    made_by = json.loads((out / bid / "manifest.json").read_text())["code_version"]
    assert made_by == allowance.batch.code_version() and re.fullmatch(r"\d+\.\d+\.\d+\+[0-9a-f]{12}", made_by)
    # and the tables (audit 26A: a version corrected in place kept its id)
    from allowance import rules as rules_mod
    tables = json.loads((out / bid / "manifest.json").read_text())["rules_sha256"]
    assert tables == rules_mod.load(rules_mod.DEFAULT_RULES_DIR).sha256() and re.fullmatch(r"[0-9a-f]{64}", tables)
    before = tree_hashes(out / bid)
    (out / bid / "funding.parquet").unlink()
    monkeypatch.setattr(allowance.runs, "code_version", lambda: "9.9.9+000000000000")  # a later engine
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out))
    assert tree_hashes(out / bid) == before


def test_rerun_after_publication_pays_nothing(isolated: Path, drafted: tuple[Path, Path, str]) -> None:
    led, reg, bid = drafted
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", isolated / "out"))
    again = ok_json(cli("run", "quarterly", "--quarter", "2025Q3", "--registry", reg, "--as-of", "2025-07-01",
                        "--ledger", led, "--json"))
    assert again["batch_id"] != bid
    assert (again["lines"], again["amount_fen"]) == (0, 0)
    assert again["recoveries"] == {"lines": 0, "amount_fen": 0}
    supp = ok_json(cli("run", "supplement", "--registry", reg, "--as-of", "2025-07-02", "--ledger", led, "--json"))
    assert (supp["lines"], supp["amount_fen"]) == (0, 0)


def test_unknown_batch(isolated: Path, drafted: tuple[Path, Path, str]) -> None:
    led, _, _ = drafted
    user_error(cli("publish", "Q2025Q3-deadbeef", "--approved-by", "tester", "--ledger", led, "--out",
                   isolated / "out"), "unknown batch", "Q2025Q3-deadbeef")
    assert not (isolated / "out" / "Q2025Q3-deadbeef").exists()


def test_approver_must_be_named(isolated: Path, drafted: tuple[Path, Path, str]) -> None:
    led, _, bid = drafted
    user_error(cli("publish", bid, "--approved-by", "  ", "--ledger", led, "--out", isolated / "out"),
               "--approved-by")
    assert ok_json(cli("batches", "show", bid, "--ledger", led, "--json"))["status"] == "draft"


def test_unopened_ledger(isolated: Path) -> None:
    led = isolated / "never.duckdb"
    user_error(cli("publish", "Q2025Q3-deadbeef", "--approved-by", "x", "--ledger", led), "ledger open")


def test_ledger_and_out_default_from_env(isolated: Path, drafted: tuple[Path, Path, str]) -> None:
    led, _, bid = drafted
    out = isolated / "env-out"
    env = {"ALLOWANCE_LEDGER": str(led), "ALLOWANCE_OUT": str(out)}
    res = ok_json(cli("publish", bid, "--approved-by", "tester", "--json", env=env))
    assert res["out_dir"] == str(out / bid)
    assert (out / bid / "manifest.json").is_file()
    assert not (isolated / "out" / bid).exists()  # not the built-in default
    assert ok_json(cli("batches", "show", bid, "--json", env=env))["status"] == "published"


def test_a_stale_draft_leaves_no_files_and_no_entries(isolated: Path, drafted: tuple[Path, Path, str]) -> None:
    """A publication the ledger refuses leaves no batch folder, no staging folder and no entries."""
    led, reg, stale = drafted
    out = isolated / "bank"
    newer = ok_json(cli("run", "quarterly", "--quarter", "2025Q3", "--registry", reg, "--as-of", "2025-07-02",
                        "--ledger", led, "--json"))["batch_id"]
    ok(cli("publish", newer, "--approved-by", "tester", "--ledger", led, "--out", out))
    held = ok_json(cli("ledger", "status", "--ledger", led, "--json"))
    user_error(cli("publish", stale, "--approved-by", "tester", "--ledger", led, "--out", out),
               "drafted before the ledger last changed")
    # no batch folder, no staging folder (beside the marks publications leave: audit 18D)
    assert sorted(p.name for p in out.iterdir() if p.name != ".ledgers") == [newer]
    assert ok_json(cli("ledger", "status", "--ledger", led, "--json")) == held
    assert ok_json(cli("batches", "show", stale, "--ledger", led, "--json"))["status"] == "draft"


def test_files_that_cannot_be_written_leave_the_ledger_unchanged(
    isolated: Path, drafted: tuple[Path, Path, str]
) -> None:
    led, _, bid = drafted
    out = isolated / "bank"
    out.mkdir()
    (out / f".{bid}.partial").write_text("a file where the staging folder goes")
    user_error(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out),
               str(out), "cannot write the batch files", "nothing was published")
    assert ok_json(cli("batches", "show", bid, "--ledger", led, "--json"))["status"] == "draft"
    assert ok_json(cli("ledger", "status", "--ledger", led, "--json"))["entries"] == 0
    assert not (out / bid).exists()


@pytest.mark.parametrize("where", ["before the rename", "in the sync"])
def test_a_publication_interrupted_after_the_commit_is_finished_by_the_next_run(
    isolated: Path, drafted: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A third audit: killed between the ledger's commit and the rename of its folder, a scheduled
    job's rerun drafted a new batch and left the first one's bank files in the hidden staging
    folder for good: the ledger held the months as paid, the bank never got them. The next run now
    finishes such a publication first, with the files an uninterrupted publication writes."""
    import shutil

    import allowance.durable
    import allowance.runs

    led, reg, bid = drafted
    out, ref = isolated / "out", isolated / "ref"
    shutil.copytree(isolated, ref / "state", ignore=shutil.ignore_patterns("out", "ref"))
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", ref / "state" / led.name, "--out", ref / "out"))

    def killed(*_: object) -> None:
        raise OSError("killed")

    target = (allowance.runs, "finalize_batch") if where == "before the rename" else (allowance.durable, "sync_tree")
    with monkeypatch.context() as m:
        m.setattr(*target, killed)
        assert cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out).exit_code != 0
    assert ok_json(cli("batches", "show", bid, "--ledger", led, "--json"))["status"] == "published"
    assert not (out / bid).exists() and (out / f".{bid}.partial").is_dir()

    res = ok_json(cli("run", "supplement", "--registry", reg, "--as-of", "2025-07-02", "--ledger", led, "--out", out,
                      "--json"))
    assert res["publications_finished"] == [bid] and res["lines"] == 0
    assert verify_batch(out / bid) == [] and not (out / f".{bid}.partial").exists()
    mine, theirs = tree_hashes(out / bid), tree_hashes(ref / "out" / bid)
    assert {k: v for k, v in mine.items() if k != "manifest.json"} == {
        k: v for k, v in theirs.items() if k != "manifest.json"}
    mine_m, theirs_m = ({k: v for k, v in json.loads((o / bid / "manifest.json").read_text()).items()
                         if k != "published_at"} for o in (out, ref / "out"))
    assert mine_m == theirs_m
    # a staged copy beside a batch that is in place and whole is only removed
    shutil.copytree(out / bid, out / f".{bid}.partial")
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out))
    assert not (out / f".{bid}.partial").exists() and tree_hashes(out / bid) == mine
    # and once finished, nothing more to finish
    again = ok_json(cli("run", "supplement", "--registry", reg, "--as-of", "2025-07-02", "--ledger", led, "--out",
                        out, "--json"))
    assert "publications_finished" not in again


def test_an_interrupt_just_after_the_commit_keeps_the_files_owed(
    isolated: Path, drafted: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An audit: a Ctrl-C landing as the ledger's commit returned removed the staged folder (the
    publication looked uncommitted), and the batch, paid in the ledger, then looked delivered and
    taken away: never written. The ledger is asked before the folder is removed."""
    from allowance.ledger import Ledger as LedgerClass

    led, _, bid = drafted
    out = isolated / "out"
    record = LedgerClass.record_publication

    def committed_then_interrupted(self: LedgerClass, *args: object, **kwargs: object) -> None:
        record(self, *args, **kwargs)  # type: ignore[arg-type]
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(LedgerClass, "record_publication", committed_then_interrupted)
        assert cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out).exit_code != 0
    assert ok_json(cli("batches", "show", bid, "--ledger", led, "--json"))["status"] == "published"
    assert (out / f".{bid}.partial").is_dir() and not (out / bid).exists()
    text = ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out)).stdout
    assert text.startswith(f"{bid} was published before (") and "its files written to" in text, text
    assert verify_batch(out / bid) == []


def test_a_kill_while_a_publication_is_being_finished_leaves_its_staged_folder(
    isolated: Path, drafted: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tenth audit: finishing a publication staged its files again by removing the staged folder
    and making it anew; a kill in between left the ledger holding the batch as paid with no trace
    that its files were never delivered. The folder is now emptied, never removed: killed right
    after any removal, it is still there, and the next run finishes the publication."""
    import shutil

    import allowance.durable
    import allowance.outputs
    import allowance.runs

    led, reg, bid = drafted
    out = isolated / "out"

    def killed(*_: object) -> None:
        raise OSError("killed")

    with monkeypatch.context() as m:  # committed, never renamed: the files are owed
        m.setattr(allowance.durable, "sync_tree", killed)
        assert cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out).exit_code != 0
    staged = out / f".{bid}.partial"
    assert staged.is_dir() and not (out / bid).exists()
    removed: list[Path] = []
    rmtree = shutil.rmtree

    def removal_then_kill(path: Path, *args: object, **kwargs: object) -> None:
        rmtree(path, *args, **kwargs)  # type: ignore[arg-type]
        removed.append(Path(path))
        raise KeyboardInterrupt  # the process dies right after the removal

    with monkeypatch.context() as m:
        m.setattr(allowance.outputs.shutil, "rmtree", removal_then_kill)
        with pytest.raises(KeyboardInterrupt):
            allowance.runs.finish_publications(led, out)
    assert removed and staged.is_dir()  # something was removed; the folder that says "owed" was not
    res = ok_json(cli("run", "supplement", "--registry", reg, "--as-of", "2025-07-02", "--ledger", led, "--out", out,
                      "--json"))
    assert res["publications_finished"] == [bid]
    assert verify_batch(out / bid) == [] and not staged.exists()


def test_what_a_publication_killed_before_its_commit_staged_is_left_and_said_not_removed(
    isolated: Path, drafted: tuple[Path, Path, str]
) -> None:
    """A seventh audit: a publication killed (SIGKILL) before the ledger's commit left its staged
    bank files (whole IDs and card numbers, no manifest) hidden in the out folder. Removing them at
    the next run (this round's first mend) lost another ledger's committed files where two share
    the folder (a ninth audit). They are left where they are, and every run says so in its log;
    publishing the draft replaces them. A staged copy beside a batch already whole in place is
    removed, without being reported as finished."""
    led, reg, bid = drafted
    out = isolated / "out"
    staged = out / f".{bid}.partial" / "payments"
    staged.mkdir(parents=True)
    (staged / "part-0.parquet").write_bytes(b"staged before the kill")
    run = ["run", "supplement", "--registry", reg, "--as-of", "2025-07-02", "--ledger", led, "--out", out, "--json"]
    said = cli(*run)
    assert "publications_finished" not in ok_json(said)
    assert "staged_files_left" in said.stderr and f".{bid}.partial" in said.stderr
    assert (staged / "part-0.parquet").read_bytes() == b"staged before the kill"
    assert ok_json(cli("batches", "show", bid, "--ledger", led, "--json"))["status"] == "draft"
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out))
    assert verify_batch(out / bid) == [] and not (out / f".{bid}.partial").exists()
    import shutil

    shutil.copytree(out / bid, out / f".{bid}.partial")
    assert "publications_finished" not in ok_json(cli(*run))
    assert not (out / f".{bid}.partial").exists() and verify_batch(out / bid) == []


def test_a_staged_folder_is_no_batch_until_the_ledger_holds_it(
    isolated: Path, drafted: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit 26C: a publication killed (SIGKILL, SIGTERM) between staging and the ledger's commit
    left `.B.partial/manifest.json` with every file matching it: a whole, valid batch of a draft,
    which a copy of hidden folders would deliver beside the next night's payment of the same months.
    At the commit, the staged manifest is not yet `manifest.json`; once the batch is in place it is."""
    led, _, bid = drafted
    out = isolated / "out"
    seen: list[list[str]] = []
    real = Ledger.record_publication

    def at_commit(self: Ledger, *args: object, **kw: object) -> None:
        seen.append(sorted(p.name for p in (out / f".{bid}.partial").iterdir()))
        real(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Ledger, "record_publication", at_commit)
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out))
    assert len(seen) == 1 and "manifest.json" not in seen[0] and "manifest.json.pending" in seen[0], seen
    assert verify_batch(out / bid) == [] and not (out / bid / "manifest.json.pending").exists()
    assert not (out / f".{bid}.partial").exists()


def test_files_that_never_reached_a_vanished_folder_are_written_not_taken_for_delivered(
    isolated: Path, drafted: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit 26C: the out folder gone (a share unmounted) between the ledger's commit and the
    rename took the staged files with it; the batch, paid in the ledger, was then taken for one the
    bank had collected: publish said "taken away, nothing written", the next night was ok, `ledger
    check` counted it taken away. The failure is recorded, `ledger check` names it, and publish
    (or the next run with that --out) writes the files, once."""
    import allowance.runs

    led, reg, bid = drafted
    out = isolated / "out"
    real = allowance.runs.finalize_batch

    def unmounted(partial: Path, final: Path) -> None:
        shutil.rmtree(out)
        real(partial, final)

    monkeypatch.setattr(allowance.runs, "finalize_batch", unmounted)
    user_error(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out),
               "cannot move the batch files into place", f"holds {bid} as published")
    monkeypatch.setattr(allowance.runs, "finalize_batch", real)
    assert ok_json(cli("batches", "show", bid, "--ledger", led, "--json"))["status"] == "published"
    out.mkdir()  # the share back, empty
    checked = cli("ledger", "check", "--ledger", led, "--out", out)
    assert checked.exit_code == 1 and f"batch {bid}: published, but its bank files never reached" in checked.stdout
    # the next run with that --out writes them (as the nightly job's would), and says so
    night = ok_json(cli("run", "supplement", "--registry", reg, "--as-of", "2025-07-02", "--ledger", led,
                        "--out", out, "--json"))
    assert night["publications_finished"] == [bid]
    assert verify_batch(out / bid) == []
    ok(cli("ledger", "check", "--ledger", led, "--out", out))
    # delivered now: taken away since, it is not written again unasked
    shutil.rmtree(out / bid)
    again = ok_json(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out, "--json"))
    assert again["files_taken_away"] == str((out / bid).resolve()) and not (out / bid).exists()
    assert "publications_finished" not in ok_json(cli("run", "supplement", "--registry", reg, "--as-of",
                                                       "2025-07-02", "--ledger", led, "--out", out, "--json"))


def test_a_batch_recorded_owed_but_whole_in_place_is_delivered_not_written_again_later(
    isolated: Path, drafted: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audits 26D, 26F: a rename that happened but reported a failure (a sync after it failed, an
    NFS reply lost) recorded the batch owed while it was whole in place, and once the bank took the
    folder the next run wrote it again. In place, it is not recorded owed; and a batch recorded owed
    that a run finds whole (an older engine's record, say) is recorded delivered."""
    import allowance.runs

    led, reg, bid = drafted
    out = isolated / "out"
    real = allowance.runs.finalize_batch

    def renamed_but_said_not(partial: Path, final: Path) -> None:
        real(partial, final)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(allowance.runs, "finalize_batch", renamed_but_said_not)
    user_error(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out),
               "cannot move the batch files into place")
    monkeypatch.setattr(allowance.runs, "finalize_batch", real)
    assert verify_batch(out / bid) == []
    with Ledger.use(led) as lg:
        assert lg.undelivered() == {}
        lg.record_delivery(bid, False, out, "recorded owed while whole in place")
    night = ok_json(cli("run", "supplement", "--registry", reg, "--as-of", "2025-07-02", "--ledger", led,
                        "--out", out, "--json"))
    assert night["publications_finished"] == [bid]  # looked at, found whole: now recorded delivered
    with Ledger.use(led, read_only=True) as lg:
        assert lg.undelivered() == {}
    shutil.rmtree(out / bid)  # the bank takes it
    ok(cli("ledger", "check", "--ledger", led, "--out", out))
    assert "publications_finished" not in ok_json(cli("run", "supplement", "--registry", reg, "--as-of",
                                                       "2025-07-02", "--ledger", led, "--out", out, "--json"))
    assert not (out / bid).exists()


def test_an_owed_batch_is_delivered_once_whatever_interrupts_its_records(
    isolated: Path, drafted: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit 26F: (a) a SIGTERM while the batch was being recorded owed rolled the record back, and
    the batch, never delivered, was taken for one the bank had collected; (b) a kill between the
    rename that delivered an owed batch and the record of it left it owed, and once the bank took
    the folder the next run wrote it again. The record is written again when interrupted, and an
    owed batch is recorded delivered before its rename, the staged folder saying it is owed until
    then; (c) owed to a folder that is not there (moved for good, or a share unmounted for now:
    audit 26H found a run with another --out taking the bank's batch), no run with another --out
    writes it; `ledger check` says how, and `publish --out NEW` writes it there."""
    import allowance.runs

    led, reg, bid = drafted
    out = isolated / "out"
    real_finalize, real_record = allowance.runs.finalize_batch, Ledger.record_delivery
    interrupts = []

    def unmounted(partial: Path, final: Path) -> None:
        shutil.rmtree(out)
        real_finalize(partial, final)

    def interrupted_once(self: Ledger, *args: object, **kw: object) -> None:
        if not interrupts:
            interrupts.append(args)
            raise KeyboardInterrupt
        real_record(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(allowance.runs, "finalize_batch", unmounted)
    monkeypatch.setattr(Ledger, "record_delivery", interrupted_once)
    res = cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out)
    assert res.exit_code == 130 and interrupts, (res.exit_code, res.stderr)
    monkeypatch.setattr(Ledger, "record_delivery", real_record)
    with Ledger.use(led, read_only=True) as lg:
        assert bid in lg.undelivered()  # (a)

    def killed_before_rename(partial: Path, final: Path) -> None:
        raise KeyboardInterrupt  # as a kill after the delivered record, before the rename

    out.mkdir()
    monkeypatch.setattr(allowance.runs, "finalize_batch", killed_before_rename)
    assert cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out).exit_code == 130
    monkeypatch.setattr(allowance.runs, "finalize_batch", real_finalize)
    with Ledger.use(led, read_only=True) as lg:
        assert lg.undelivered() == {}
    assert (out / f".{bid}.partial").is_dir() and not (out / bid).exists()  # (b): the staged folder says owed
    night = ok_json(cli("run", "supplement", "--registry", reg, "--as-of", "2025-07-02", "--ledger", led,
                        "--out", out, "--json"))
    assert night["publications_finished"] == [bid] and verify_batch(out / bid) == []
    shutil.rmtree(out / bid)  # the bank takes it: never written again
    assert "publications_finished" not in ok_json(cli("run", "supplement", "--registry", reg, "--as-of",
                                                       "2025-07-02", "--ledger", led, "--out", out, "--json"))
    assert not (out / bid).exists()
    # (c) owed to a folder that has gone since
    with Ledger.use(led) as lg:
        lg.record_delivery(bid, False, out, "as if its files had never reached it")
    shutil.rmtree(out)
    new_out = isolated / "new-disk" / "out"
    new_out.mkdir(parents=True)
    checked = cli("ledger", "check", "--ledger", led)
    assert checked.exit_code == 1 and "once it is back" in checked.stdout, checked.stdout
    assert "the folder the bank reads now if it has moved for good" in checked.stdout, checked.stdout
    night = ok_json(cli("run", "supplement", "--registry", reg, "--as-of", "2025-07-02", "--ledger", led,
                        "--out", new_out, "--json"))
    assert "publications_finished" not in night and not (new_out / bid).exists()

    def rename_fails(partial: Path, final: Path) -> None:
        raise OSError(5, "Input/output error")

    # written to the new folder, its rename failing: the staged files are that folder's, recorded
    # before the rename, and the next run there finishes them (audit 26H: they were left as another
    # folder's, and the batch taken for delivered)
    monkeypatch.setattr(allowance.runs, "finalize_batch", rename_fails)
    user_error(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", new_out),
               "cannot move the batch files into place")
    monkeypatch.setattr(allowance.runs, "finalize_batch", real_finalize)
    assert (new_out / f".{bid}.partial").is_dir()
    night = ok_json(cli("run", "supplement", "--registry", reg, "--as-of", "2025-07-02", "--ledger", led,
                        "--out", new_out, "--json"))
    assert night["publications_finished"] == [bid] and verify_batch(new_out / bid) == [] and not out.exists()
    ok(cli("ledger", "check", "--ledger", led, "--out", new_out))


def test_a_publication_interrupted_while_staging_leaves_nothing_staged(
    isolated: Path, drafted: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit 26D: a Ctrl-C or SIGTERM while a draft's files were being staged left them (whole IDs
    and card numbers) in the out folder for good; nothing was committed, so they go."""
    import allowance.runs

    led, _, bid = drafted
    out = isolated / "out"
    real = allowance.runs.stage_batch

    def interrupted(*args: object, **kw: object) -> object:
        real(*args, **kw)  # type: ignore[arg-type]
        raise KeyboardInterrupt

    monkeypatch.setattr(allowance.runs, "stage_batch", interrupted)
    res = cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out)
    assert res.exit_code == 130 and res.stderr.strip() == "Aborted!", (res.exit_code, res.stderr)
    assert not (out / f".{bid}.partial").exists() and not (out / bid).exists()
    assert ok_json(cli("batches", "show", bid, "--ledger", led, "--json"))["status"] == "draft"
    # A staged folder that was there before is removed only when this ledger staged it (its
    # manifest names it: a kill before the commit, then a Ctrl-C on the rerun; audit 26H). Another
    # ledger's, sharing the folder, whose publication of the same batch id committed, says that
    # ledger owes its files: never removed (audit 26F); nor one that cannot say whose it is.
    staged = out / f".{bid}.partial"
    with Ledger.use(led, read_only=True) as lg:
        me = lg.identity()
    for whose, kept in ((me, False), ("another-ledger", True), (None, True)):
        staged.mkdir()
        if whose is not None:
            (staged / "manifest.json.pending").write_text(json.dumps({"ledger_id": whose}), encoding="utf-8")
        assert cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out).exit_code == 130
        assert staged.is_dir() == kept, whose
        shutil.rmtree(staged, ignore_errors=True)


def test_an_older_engines_staged_manifest_of_a_draft_is_made_no_batch(
    isolated: Path, drafted: tuple[Path, Path, str]
) -> None:
    """Audit 26D: a publication killed before its commit by an engine that staged `manifest.json`
    left a whole, valid batch of a draft; the next run with that --out renames it pending."""
    led, reg, bid = drafted
    out = isolated / "out"
    staged = out / f".{bid}.partial"
    staged.mkdir(parents=True)
    (staged / "manifest.json").write_text(json.dumps({"batch_id": bid}), encoding="utf-8")
    said = cli("run", "supplement", "--registry", reg, "--as-of", "2025-07-02", "--ledger", led, "--out", out,
               "--json")
    assert "publications_finished" not in ok_json(said) and "staged_files_left" in said.stderr
    assert not (staged / "manifest.json").exists() and (staged / "manifest.json.pending").is_file()


def test_a_published_batch_is_not_written_again_to_another_folder(
    isolated: Path, drafted: tuple[Path, Path, str]
) -> None:
    """A seventh audit: publishing a published batch again with another --out (an operator
    without $ALLOWANCE_OUT) wrote a second, complete copy of its bank files there and said ok: two
    copies that could both reach the bank. An eighth: refused only while the first copy was whole,
    a copy staged in the first folder by an interrupted publication was later finished there too.
    A batch's files are now written only where it was published (finished there if need be)."""
    import shutil

    led, _, bid = drafted
    first, other = isolated / "out", isolated / "elsewhere"
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", first))
    user_error(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", other),
               f"was published to {first}", "nothing written")
    assert not other.exists() or list(other.iterdir()) == []
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", first))  # a no-op there
    whole = tree_hashes(first / bid)
    shutil.rmtree(first / bid)  # taken away by the bank, or lost
    user_error(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", other),
               f"was published to {first}", f"--out {first}")
    assert not other.exists() or list(other.iterdir()) == []
    # delivered, then taken away: not written again unasked (a second delivery could be paid twice)
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", first))
    assert not (first / bid).exists()
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", first, "--rewrite"))  # where it belongs
    assert verify_batch(first / bid) == [] and {k: v for k, v in tree_hashes(first / bid).items()
                                                if k != "manifest.json"} == {
        k: v for k, v in whole.items() if k != "manifest.json"}


def test_a_publication_under_way_in_the_folder_is_left_to_finish(
    isolated: Path, drafted: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An eighth audit: a run took another ledger's publication under way for an interrupted one.
    A publication holds the out folder's lock from staging to rename (a flock of the folder, so
    every ledger sharing it is held to it), and a run looks at staged folders only when it can
    take that lock: while it is held, a staged batch that the ledger holds as published is not
    touched; once it is free, the run finishes it."""
    import allowance.runs
    from allowance import durable

    led, reg, bid = drafted
    out = isolated / "out"

    def killed(*_: object) -> None:
        raise OSError("killed")

    with monkeypatch.context() as m:  # committed, never renamed into place
        m.setattr(allowance.runs, "finalize_batch", killed)
        assert cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out).exit_code != 0
    run = ["run", "supplement", "--registry", reg, "--as-of", "2025-07-02", "--ledger", led, "--out", out, "--json"]
    with durable.folder_lock(out):  # a publication under way (from any ledger)
        assert "publications_finished" not in ok_json(cli(*run))
        assert (out / f".{bid}.partial").is_dir() and not (out / bid).exists()
    assert ok_json(cli(*run))["publications_finished"] == [bid]
    assert verify_batch(out / bid) == [] and not (out / f".{bid}.partial").exists()


def test_a_folder_staged_for_a_batch_published_elsewhere_stops_no_run(
    isolated: Path, drafted: tuple[Path, Path, str]
) -> None:
    """A ninth audit: a publication to out1 killed before its commit left out1/.B.partial; B was
    then published to out2, and every run on out1 (the nightly job too) failed, refusing to write
    B there. Such a folder is left and said; runs go on."""
    led, reg, bid = drafted
    out1, out2 = isolated / "out1", isolated / "out2"
    staged = out1 / f".{bid}.partial" / "payments"
    staged.mkdir(parents=True)
    (staged / "part-0.parquet").write_bytes(b"staged before the kill")
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out2))
    said = cli("run", "supplement", "--registry", reg, "--as-of", "2025-07-02", "--ledger", led, "--out", out1,
               "--json")
    assert "publications_finished" not in ok_json(said)
    assert "staged_files_left" in said.stderr and str(out2) in said.stderr
    assert staged.is_dir() and not (out1 / bid).exists() and verify_batch(out2 / bid) == []


def test_the_ledgers_own_store_is_no_out_folder(isolated: Path, drafted: tuple[Path, Path, str]) -> None:
    """A tenth audit: `publish --out <ledger>.batches` exited 0, but its rename replaced the batch's
    ledger files with its bank files, and the ledger no longer opened. Refused, for a draft's
    change report too; nothing is written and the ledger still checks."""
    led, reg, bid = drafted
    store = isolated / f"{led.name}.batches"
    for out in (store, store / "bank"):
        user_error(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out),
                   "is the ledger's own batch store", "give another --out")
    user_error(cli("run", "supplement", "--registry", reg, "--as-of", "2025-07-02", "--ledger", led, "--out", store),
               "is the ledger's own batch store")
    assert not (store / "bank").exists() and not (store / "reports").exists()
    assert ok_json(cli("ledger", "check", "--ledger", led, "--json"))["ok"] is True
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", isolated / "out"))


def test_a_publication_waits_for_the_out_folder_only_so_long(
    isolated: Path, drafted: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tenth audit: a publication waited for the out folder's lock forever, holding its ledger
    (every other command: "ledger is busy"). It waits ALLOWANCE_LOCK_WAIT seconds, then says the
    folder is busy; nothing is published."""
    import allowance.runs
    from allowance import durable

    led, _, bid = drafted
    out = isolated / "out"
    monkeypatch.setattr(allowance.runs, "LOCK_WAIT_SECONDS", 0.5)
    with durable.folder_lock(out):
        user_error(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out),
                   str(out), "another publication is writing to this folder")
    assert ok_json(cli("batches", "show", bid, "--ledger", led, "--json"))["status"] == "draft"
    ok(cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out))


def test_an_install_moved_whole_finishes_its_interrupted_publication(
    isolated: Path, drafted: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tenth audit: after the ledger and its out folder were moved together (as the README says
    to move or restore them), a publication interrupted after its commit could not be finished:
    the ledger's recorded folder was the old path. A recorded folder that no longer exists is not
    another folder: the publication is finished where the out folder is now."""
    import shutil

    import allowance.runs

    led, reg, bid = drafted
    out = isolated / "out"

    def killed(*_: object) -> None:
        raise OSError("killed")

    with monkeypatch.context() as m:
        m.setattr(allowance.runs, "finalize_batch", killed)
        assert cli("publish", bid, "--approved-by", "tester", "--ledger", led, "--out", out).exit_code != 0
    moved = isolated / "moved"
    moved.mkdir()
    for p in (led, isolated / f"{led.name}.batches", out):
        shutil.move(p, moved / p.name)
    res = ok_json(cli("run", "supplement", "--registry", reg, "--as-of", "2025-07-02", "--ledger", moved / led.name,
                      "--out", moved / "out", "--json"))
    assert res["publications_finished"] == [bid]
    assert verify_batch(moved / "out" / bid) == [] and not (moved / "out" / f".{bid}.partial").exists()


def _restore(backup: Path, led: Path) -> None:
    led.unlink()
    shutil.rmtree(f"{led}.batches", ignore_errors=True)
    shutil.copy2(backup / led.name, led)
    if (backup / f"{led.name}.batches").exists():  # a ledger that never stored a batch has none
        shutil.copytree(backup / f"{led.name}.batches", f"{led}.batches")


def _back_up(led: Path, backup: Path) -> None:
    backup.mkdir()
    shutil.copy2(led, backup / led.name)
    if Path(f"{led}.batches").exists():
        shutil.copytree(f"{led}.batches", backup / f"{led.name}.batches")


def _q4_published_after_a_backup(isolated: Path, led: Path, out: Path) -> tuple[list[str | Path], str]:
    """A backup of the ledger taken (to isolated/backup), then the sample's 2025Q4 drafted and
    published: (the Q4 run's command line, its batch id)."""
    _back_up(led, isolated / "backup")
    q4: list[str | Path] = ["run", "quarterly", "--quarter", "2025Q4", "--registry", isolated / "registry.parquet",
                            "--as-of", "2025-10-01", "--ledger", led, "--out", out]
    bid = ok_json(cli(*q4, "--json"))["batch_id"]
    ok(cli("publish", bid, "--approved-by", "t", "--ledger", led, "--out", out))
    return q4, bid


def test_a_ledger_restored_from_before_a_publication_refuses_to_pay_it_again(isolated: Path) -> None:
    """Audits 18A and 18B: a ledger restored from the night's backup, a quarter published since,
    drafted and published that quarter again (every month paid twice under other line ids) and
    `ledger check` said ok. While the bank folder holds a batch this ledger published (its manifest
    names the ledger) that it does not record as published, runs and publications to it are
    refused, and `ledger check` lists it."""
    led, out, q3 = published_sample(isolated)
    reg = isolated / "registry.parquet"
    q4, bid = _q4_published_after_a_backup(isolated, led, out)
    delivered = tree_hashes(out / bid)
    assert ok_json(cli("ledger", "check", "--ledger", led, "--json"))["ok"] is True
    _restore(isolated / "backup", led)
    check = cli("ledger", "check", "--ledger", led, "--json")
    assert check.exit_code == 1
    report = json.loads(check.stdout)
    assert report["bank_folders"]["not_in_ledger"] == 1
    assert any(bid in p and "does not hold it as published" in p for p in report["problems"]), report["problems"]
    user_error(cli(*q4), str(out), "does not record", bid, "restored from a backup")
    # the draft the restored ledger held (none here: a redraft needs the run above) and a publication
    # of any draft into that folder are refused alike; the bank's folder is left as delivered
    # nor to another folder (audit 18D: a new disk, the same quarter paid again): every folder the
    # ledger published to is looked at, and marks the publications left beside their batches
    user_error(cli(*q4[:-2], "--out", isolated / "elsewhere"), "does not record", bid)
    assert tree_hashes(out / bid) == delivered
    # nor when the bank has taken the batch's folder away (the mark outlives it)
    shutil.move(out / bid, isolated / "at the bank")
    user_error(cli(*q4), "does not record", bid)
    check = cli("ledger", "check", "--ledger", led, "--json")
    assert check.exit_code == 1 and json.loads(check.stdout)["bank_folders"]["not_in_ledger"] == 1
    shutil.move(isolated / "at the bank", out / bid)
    assert ok_json(cli("batches", "show", q3, "--ledger", led, "--json"))["status"] == "published"
    # the manifests name the ledger that published them: another ledger's batches in the folder
    # (a test ledger beside production) are not this one's to answer for
    assert json.loads((out / bid / "manifest.json").read_text(encoding="utf-8"))["ledger_id"]
    stranger = isolated / "stranger.duckdb"
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", stranger))
    ok_json(cli("run", "quarterly", "--quarter", "2025Q3", "--registry", reg, "--as-of", "2025-07-01", "--ledger",
                stranger, "--out", out, "--json"))


def test_two_ledger_histories_of_as_many_events_draft_under_other_ids(isolated: Path) -> None:
    """Audit 18A: the batch id named how many events had changed the ledger, so a ledger restored
    from its backup and given another bank return drafted a batch of other lines under the id of
    one already delivered. Two ledgers with the same count of events, one failing one person's line
    and the other another's, now draft their supplements under different ids; the same return in
    both gives the same id."""
    ids = {}
    for name, failed in (("a", 0), ("b", 1), ("c", 0)):
        root = isolated / name
        root.mkdir()
        led, _, q3 = published_sample(root)
        with Ledger.use(led, read_only=True) as lg:
            line_ids = lg.part(q3, "lines").filter(pl.col("line_type") == "PAYMENT")["line_id"].sort().to_list()
        f = root / "returns.csv"
        f.write_text(f"line_id,status,reason,settled_at\n{line_ids[failed]},FAILED,closed,2025-07-20\n",
                     encoding="utf-8")
        ok(cli("bank-returns", "import", f, "--ledger", led))
        ids[name] = ok_json(cli("run", "supplement", "--registry", root / "registry.parquet", "--as-of", "2025-07-25",
                                "--ledger", led, "--json"))["batch_id"]
    assert ids["a"] == ids["c"]
    assert ids["a"] != ids["b"]


def test_publishing_a_draft_older_than_another_says_so(isolated: Path) -> None:
    """Audit 18B: last night's supplement published over tonight's draft, whose extract knew of two
    deaths, paid them, and the next night recovered it from their families; nothing was said. The
    publication says a later draft of the same run exists (a warning: which one to publish is the
    reviewers' call)."""
    from allowance.testing import person, write_registry

    led, out, _ = published_sample(isolated)
    rows = [*sample_rows(), person("1950-03-03", seq=90, district_code="310101")]
    reg = write_registry(rows, isolated / "night.parquet")
    night = ["run", "supplement", "--registry", reg, "--ledger", led, "--out", out, "--json"]
    older = ok_json(cli(*night, "--as-of", "2025-07-18"))["batch_id"]
    newer = ok_json(cli(*night, "--as-of", "2025-07-19"))["batch_id"]
    res = ok(cli("publish", older, "--approved-by", "t", "--ledger", led, "--out", out))
    assert f"warning: {newer}, a later draft of this run (as of 2025-07-19)" in res.stdout, res.stdout
    assert '"event": "later_draft"' in res.stderr


def test_a_ledger_opened_by_older_code_knows_its_batches_after_a_restore(isolated: Path) -> None:
    """Audit 18D: a ledger opened by an earlier engine (no ledger_id) got a random id at its first
    publication by this one; a backup taken before it had none, so restored it drafted and published
    that quarter again unseen, and `ledger check` stayed ok. Its id is derived from when it was
    opened, which every backup holds."""
    led, out, _ = published_sample(isolated)
    with Ledger.use(led) as lg:  # as an earlier engine left it
        lg.run("delete from meta where key = 'ledger_id'")
    q4, bid = _q4_published_after_a_backup(isolated, led, out)
    _restore(isolated / "backup", led)
    user_error(cli(*q4), "does not record", bid)


def test_ledger_check_looks_in_the_out_folder_too(isolated: Path) -> None:
    """Audit 18D: restored from a backup taken before its first publication, a ledger had no folder
    recorded to look in, and `ledger check` said ok. It looks in --out (the folder runs are given)
    as well."""
    led = isolated / "ledger.duckdb"
    ok(cli("ledger", "open", "--opening-month", "2025-07", "--ledger", led))
    _back_up(led, isolated / "backup")
    reg = write_sample(isolated / "registry.parquet")
    out = isolated / "out"
    bid = ok_json(cli("run", "quarterly", "--quarter", "2025Q3", "--registry", reg, "--as-of", "2025-07-01",
                      "--ledger", led, "--json"))["batch_id"]
    ok(cli("publish", bid, "--approved-by", "t", "--ledger", led, "--out", out))
    _restore(isolated / "backup", led)
    check = cli("ledger", "check", "--ledger", led, "--out", out, "--json")
    assert check.exit_code == 1, check.stdout
    assert json.loads(check.stdout)["bank_folders"]["not_in_ledger"] == 1


def test_the_marks_are_left_by_any_run_and_only_batch_names_count(isolated: Path) -> None:
    """Audit 18F: a publication interrupted after its commit left no mark (nor did finishing it,
    publishing again or --rewrite), so once the bank took the folder a restored backup paid it again;
    and any stray file among the marks (a Mac's .DS_Store) refused every run. Every run and
    publication leaves the marks its published batches lack; only batch ids count as marks."""
    led, out, q3 = published_sample(isolated)
    (marks,) = (out / ".ledgers").iterdir()
    assert [m.name for m in marks.iterdir()] == [q3]
    (marks / q3).unlink()  # as an interruption before it was written leaves it
    (marks / ".DS_Store").write_text("")
    (marks / "notes.txt").write_text("")
    ok_json(cli("run", "supplement", "--registry", isolated / "registry.parquet", "--as-of", "2025-07-10",
                "--ledger", led, "--out", out, "--json"))
    assert (marks / q3).is_file()
