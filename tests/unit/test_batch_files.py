"""A batch's lines and pieces live in hash-named Parquet files beside the DuckDB file (ledger.py).

What must hold: a rerun leaves the same files and nothing else; a review replaces them; a file
that is missing or altered is never read as if it were the ledger's.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import polars as pl
import pytest

from allowance.errors import LedgerError
from allowance.ledger import Ledger
from allowance.outputs import _write
from allowance.testing import Scenario, person


@pytest.fixture
def sc(tmp_path: Path) -> Scenario:
    return Scenario(tmp_path)


ROWS = [person(dt.date(1940 + i, 3, 1), seq=i) for i in range(6)]


def files(sc: Scenario) -> dict[str, bytes]:
    folder = sc.ledger.parent / (sc.ledger.name + ".batches")
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_draft_is_two_files_and_a_rerun_leaves_the_same(sc: Scenario) -> None:
    reg = sc.registry(ROWS)
    res = sc.quarterly("2025Q3", reg, "2025-07-01")
    first = files(sc)
    named = [re.fullmatch(rf"{res.batch_id}/(lines|pieces)-[0-9a-f]{{16}}\.parquet", n) for n in first]
    assert all(named) and sorted(m.group(1) for m in named if m) == ["lines", "pieces"], sorted(first)
    # A stray file (a crash after writing, before the commit) is pruned by the rerun.
    (sc.ledger.parent / (sc.ledger.name + ".batches") / res.batch_id / "lines-0000.tmp").write_bytes(b"x")
    again = sc.quarterly("2025Q3", reg, "2025-07-01")
    assert again.batch_id == res.batch_id
    assert files(sc) == first
    assert sc.lines(res.batch_id).height == res.lines == 6


def test_review_replaces_the_files_without_the_person(sc: Scenario) -> None:
    res = sc.quarterly("2025Q3", sc.registry(ROWS), "2025-07-01")
    before = files(sc)
    with Ledger.use(sc.ledger) as led:
        led.review(res.batch_id, ROWS[0]["person_id"], "HOLD", "checking", "tester")
    after = files(sc)
    assert len(after) == 2 and not set(after) & set(before)  # new names; the old files are gone
    lines = sc.lines(res.batch_id)
    assert lines.height == 5 and ROWS[0]["person_id"] not in lines["person_id"].to_list()
    assert ROWS[0]["person_id"] not in sc.months(res.batch_id)["person_id"].to_list()
    pub = sc.publish(res)
    assert pub.lines == 5
    with Ledger.use(sc.ledger, read_only=True) as led:
        assert led.check()["ok"]


def test_a_missing_file_stops_the_ledger_from_opening(sc: Scenario) -> None:
    res = sc.quarterly("2025Q3", sc.registry(ROWS), "2025-07-01")
    folder = sc.ledger.parent / (sc.ledger.name + ".batches")
    victim = next((folder / res.batch_id).glob("pieces-*.parquet"))
    victim.unlink()
    with pytest.raises(LedgerError, match=r"is missing .*restore both from the backup"):
        with Ledger.use(sc.ledger, read_only=True):
            pass


def test_an_altered_file_is_refused_at_publication_and_reported_by_check(sc: Scenario) -> None:
    res = sc.quarterly("2025Q3", sc.registry(ROWS), "2025-07-01")
    folder = sc.ledger.parent / (sc.ledger.name + ".batches")
    victim = next((folder / res.batch_id).glob("lines-*.parquet"))
    other = sc.quarterly("2025Q3", sc.registry([*ROWS[:3], *(person(dt.date(1990, 1, 1)) for _ in range(3))]),
                         "2025-07-01")
    # Same Parquet shape, other content: only the hash can tell.
    victim.write_bytes(next((folder / other.batch_id).glob("lines-*.parquet")).read_bytes())
    with pytest.raises(LedgerError, match="does not match the SHA-256"):
        sc.publish(res)
    with Ledger.use(sc.ledger, read_only=True) as led:
        report = led.check()
        assert led.batch(res.batch_id)["status"] == "draft"
    assert not report["ok"]
    assert any("does not match the SHA-256" in p and res.batch_id in p for p in report["problems"])


def test_the_same_rows_give_the_same_file_however_they_are_chunked_in_memory(sc: Scenario) -> None:
    """A file's name is its hash: the same pieces held in one chunk or in many (as a draft's
    sorts and gathers leave them) must give the same bytes, or a rerun of the same draft
    would leave another file (seen at 15 million rows: two names for the same pieces)."""
    res = sc.quarterly("2025Q3", sc.registry(ROWS), "2025-07-01")
    with Ledger.use(sc.ledger) as led:
        pieces = led.part(res.batch_id, "pieces")
        chunked = pl.concat([pieces.slice(i, 1) for i in range(pieces.height)], rechunk=False)
        assert chunked.n_chunks() == pieces.height > 1
        whole = led._write_part(res.batch_id, "pieces", pieces.rechunk())
        assert led._write_part(res.batch_id, "pieces", chunked) == whole
    big = pl.DataFrame({"amount_fen": list(range(600_000))})
    one, many = {}, {}
    _write(big, sc.root, "a.parquet", one)
    _write(pl.concat([big.slice(i, 1000) for i in range(0, big.height, 1000)], rechunk=False), sc.root,
           "a.parquet", many)
    assert one == many


def test_the_lines_file_holds_its_codes_as_text(sc: Scenario) -> None:
    """A draft holds a line's type, reason, cause and rules version as enums (batch.LINE_TYPES …);
    the file stores text, and each enum lists its values in their text's order, so its draft's
    sorts and group-bys (the summary's `by_reason`) go as the text's would."""
    from allowance.batch import CAUSES, LINE_TYPES
    from allowance.reasons import REASONS

    for enum in (LINE_TYPES, REASONS, CAUSES):
        assert list(enum.categories) == sorted(enum.categories)
    res = sc.quarterly("2025Q3", sc.registry(ROWS), "2025-07-01")
    folder = sc.ledger.parent / (sc.ledger.name + ".batches") / res.batch_id
    (lines_file,) = folder.glob("lines-*.parquet")
    schema = pl.read_parquet_schema(lines_file)
    assert all(schema[c] == pl.String for c in ("line_type", "reason", "cause", "rules_version")), schema
    assert sc.lines(res.batch_id)["reason"].to_list() == ["NEW"] * 6


def test_a_published_batch_is_on_disk_before_it_is_visible(sc: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bank picks a batch up once its folder is renamed into place: every file and folder of
    it is synced to disk before that rename, and the rename itself after it."""
    from allowance import durable, runs

    res = sc.quarterly("2025Q3", sc.registry(ROWS), "2025-07-01")
    synced: list[Path] = []
    real_sync, real_finalize = durable.sync, runs.finalize_batch

    def sync(path: Path) -> None:
        synced.append(Path(path))
        real_sync(path)

    seen: dict[str, object] = {}

    def finalize(partial: Path, final: Path) -> None:
        staged = [*partial.rglob("*"), partial]
        seen["files"] = sum(p.is_file() for p in staged)
        seen["unsynced"] = [p for p in staged if p not in synced]
        real_finalize(partial, final)
        seen["rename_synced"] = synced[-1] == final.parent

    monkeypatch.setattr(durable, "sync", sync)
    monkeypatch.setattr(runs, "finalize_batch", finalize)
    pub = sc.publish(res)
    assert pub.lines == 6
    assert seen["files"] >= 4 and seen["unsynced"] == [] and seen["rename_synced"], seen


def test_a_batch_files_name_is_on_disk_before_the_ledger_lists_it(sc: Scenario,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The ledger's commit names its batch files: their folder's entries (and the files folder's,
    for a batch folder made just now) are synced before it, not only the files' bytes."""
    from allowance import durable

    synced: list[Path] = []
    real_sync = durable.sync

    def sync(path: Path) -> None:
        synced.append(Path(path))
        real_sync(path)

    monkeypatch.setattr(durable, "sync", sync)
    res = sc.quarterly("2025Q3", sc.registry(ROWS), "2025-07-01")
    folder = sc.ledger.parent / (sc.ledger.name + ".batches")
    assert folder / res.batch_id in synced and folder in synced, synced
    # and each file's bytes, before its rename
    assert {p.name.split("-")[0] for p in synced if p.parent == folder / res.batch_id and p.suffix == ".tmp"} >= {
        "lines", "pieces"}, synced


def test_a_change_report_is_on_disk_before_it_is_visible(sc: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    """A draft's change report is staged, synced file by file, then renamed into place."""
    from allowance import durable, outputs

    synced: list[Path] = []
    real_sync, real_finalize = durable.sync, outputs.finalize_batch
    seen: dict[str, object] = {}

    def sync(path: Path) -> None:
        synced.append(Path(path))
        real_sync(path)

    def finalize(partial: Path, final: Path) -> None:
        staged = [*partial.rglob("*"), partial]
        seen["files"] = sum(p.is_file() for p in staged)
        seen["unsynced"] = [p for p in staged if p not in synced]
        real_finalize(partial, final)

    monkeypatch.setattr(durable, "sync", sync)
    monkeypatch.setattr(outputs, "finalize_batch", finalize)
    res = sc.quarterly("2025Q3", sc.registry(ROWS), "2025-07-01", out=sc.ledger.parent / "out")
    assert (sc.ledger.parent / "out" / "reports" / res.batch_id / "summary.txt").is_file()
    assert seen["files"] >= 2 and seen["unsynced"] == [], seen
