"""The application layer: a run (validate → draft → store) and a publication (files + ledger).

The CLI and the scheduled pipelines call these; they hold the only I/O sequencing of the engine.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from allowance import durable, log, registry
from allowance.batch import Draft, Scope, build_draft, check_lines, code_version, draft_scope, paid_in_month
from allowance.constants import DISTRICTS
from allowance.errors import InputError, LedgerError, RefusedError, UserError, first_line, os_reason
from allowance.ledger import LOCK_WAIT_SECONDS, Ledger, _now, lock_wait, payee_rows
from allowance.months import fmt, month_start, today_shanghai
from allowance.outputs import (
    PENDING_MANIFEST,
    finalize_batch,
    refused_folder,
    stage_batch,
    verify_batch,
    write_cancelled_recoveries,
    write_change_report,
)
from allowance.rules import Rules


@dataclass
class RunResult:
    batch_id: str
    status: str
    lines: int
    amount_fen: int
    summary: dict[str, Any]
    out_dir: Path | None = None
    finished: list[str] = field(default_factory=list)  # interrupted publications finished first
    taken_away: Path | None = None  # a published batch's folder, delivered and since taken away

    def as_json(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "status": self.status,
            "lines": self.lines,
            "amount_fen": self.amount_fen,
            "out_dir": str(self.out_dir) if self.out_dir else None,
            **{k: v for k, v in self.summary.items() if k not in ("registry",)},
            "registry": self.summary.get("registry"),
            **({"publications_finished": self.finished} if self.finished else {}),
            **({"files_taken_away": str(self.taken_away)} if self.taken_away else {}),
        }


BATCH_ID = re.compile(r"[QS]\d{4,8}(?:Q\d)?-[0-9a-f]{8}")  # the names a mark can have
DEFAULT_MAX_STOP_SHARE = 0.02  # engine rule (issue 4): share of last quarter's recipients a run may stop
DEFAULT_MAX_SHRINK_SHARE = 0.01  # engine rule (issue 4): how much smaller than the last extract one may be
# engine rule (audit 18C): the rows with a death date (or a hukou out date) may fall by the shrink
# share from one extract to the next, and by fewer than this many rows whatever the share
MIN_FACTS_DROP = 100


@dataclass
class Breakers:
    """Circuit breakers: a run that trips one is refused unless forced, with a reason that is logged."""

    max_stop_share: float = DEFAULT_MAX_STOP_SHARE
    max_shrink_share: float = DEFAULT_MAX_SHRINK_SHARE
    force: bool = False
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.force and not (self.reason and self.reason.strip()):
            raise UserError("--force needs --reason TEXT saying why the checks are overridden")


def refuse_the_ledgers_store(out: Path, ledger_path: Path) -> None:
    """An --out that is the ledger's own batch store (`<ledger>.batches`), or inside it, is refused:
    a publication's rename there replaced a batch's ledger files with its bank files, and the
    ledger no longer opened (found by an audit)."""
    store = Ledger.store_of(ledger_path)
    here = out.resolve()
    if here == store or store in here.parents:
        raise InputError(f"{out}: is the ledger's own batch store ({store}); give another --out")


def draft_run(
    kind: str,
    registry_path: Path,
    ledger_path: Path,
    rules: Rules,
    as_of: dt.date,
    quarter: tuple[int, int] | None = None,
    max_quarantine_share: float = registry.DEFAULT_MAX_QUARANTINE_SHARE,
    breakers: Breakers | None = None,
    out: Path | None = None,
) -> RunResult:
    """Validate the extract and store a draft batch of entitlement minus ledger.

    With `out`, also writes the change report under `<out>/reports/<batch_id>/`, and first
    finishes any publication there that was interrupted after the ledger's commit
    (finish_publications).
    """
    br = breakers or Breakers()
    if out is not None:
        refuse_the_ledgers_store(out, ledger_path)
    finished = finish_publications(ledger_path, out) if out is not None else []
    lg = log.get(kind=kind, as_of=str(as_of))
    with Ledger.use(ledger_path) as led:
        leave_marks(led, lg)  # a publication finished above, or made before marks existed
        if out is not None:
            refuse_unknown_bank_batches(led, out)
        # The ledger first: the draft's window and holdings say which clean rows it can use,
        # and validation keeps only those (every row is still checked and counted).
        scope = draft_scope(kind, quarter, as_of, led, rules)
        try:
            validated = registry.load_and_validate(registry_path, as_of, rules.channels(), max_quarantine_share,
                                                   keep=scope.keep("id_key"), age_on=age_judged_on(kind, as_of, scope))
        except registry.QuarantineRefused as e:
            v = e.validated
            where = _refused_report(out, _quarantine_refusal(kind, as_of, v.sha256), None, {}, v.quarantine, str(e))
            raise RefusedError(f"{e}{where}") from None
        lg.info("registry_validated", **{k: v for k, v in validated.summary().items() if k != "quarantine_by_reason"})
        tripped: list[str] = []
        prev = led.previous_run()
        if prev and validated.rows_in < prev["rows_in"] * (1 - br.max_shrink_share):
            tripped.append(
                f"the extract has {validated.rows_in} rows, {prev['rows_in'] - validated.rows_in} fewer than the "
                f"previous run's {prev['rows_in']} (more than {br.max_shrink_share:.1%})"
            )
        # A death or a move out, once in the registry, stays there a while (a year, in the generator's
        # extract; batch.settled_by_end for a record dropped after). An extract with far fewer of them
        # than the last (a join failed upstream and the column came empty) would pay every dead and
        # moved-out person again, with arrears, and no other breaker sees it: they are starts, not
        # stops (audit 18C: 173 dead people paid 275 065 yuan). The floor keeps a registry of a few
        # dozen people, one death corrected, from being refused.
        for c, was in (prev["rows_with"] if prev else {}).items():
            now = validated.rows_with.get(c, 0)
            if was - now >= MIN_FACTS_DROP and now < was * (1 - br.max_shrink_share):
                tripped.append(f"the extract has {now} rows with a {c}, {was - now} fewer than the {was} of the runs "
                               f"since the last published quarter (more than {br.max_shrink_share:.1%}): were they "
                               "lost on the way?")
        draft: Draft = build_draft(kind, quarter, as_of, validated, led, rules, scope)
        st = draft.stops
        # of the recipients no district's decision is in force for, and their stops (audit 27D: 30
        # held of 100 left 2 rows lost of the other 70 judged as 2 of 100; 27E: one population)
        judged = st["recipients"] - st.get("by_review", 0)
        if judged and st["stopped"] > judged * br.max_stop_share:
            besides = " under no district's hold or rejection" if st.get("by_review") else ""
            tripped.append(
                f"it would stop payments for {st['stopped']} of last quarter's {judged} recipients{besides} "
                f"({st['stopped'] / judged:.2%}, more than {br.max_stop_share:.1%})"
            )
        if tripped and not br.force:
            said = "refused: " + "; and ".join(tripped) + ". Check the extract, or rerun with --force --reason TEXT"
            where = _refused_report(out, draft.batch["batch_id"], draft.changes,
                                    {"as_of": str(as_of), "registry_sha256": validated.sha256,
                                     "changes": json.loads(draft.batch["summary"])["changes"]}, draft.quarantine, said,
                                    draft.card_holders)
            raise RefusedError(f"{said}{where}")
        # A threshold raised above its default is kept with the batch and said, as --force is:
        # the same run passes either way, and only --force had left a trace (audit 18B: a night
        # with 4 963 recoveries published with the thresholds at 100 %, forced: null, no log line).
        raised = {k: v for k, v, default in (
            ("max_quarantine_share", max_quarantine_share, registry.DEFAULT_MAX_QUARANTINE_SHARE),
            ("max_stop_share", br.max_stop_share, DEFAULT_MAX_STOP_SHARE),
            ("max_shrink_share", br.max_shrink_share, DEFAULT_MAX_SHRINK_SHARE)) if v > default}
        if raised:
            lg.warning("breakers_raised", **raised, reason=br.reason)
        if tripped or raised:
            summary = json.loads(draft.batch["summary"])
            if tripped:
                lg.warning("circuit_breaker_forced", reason=br.reason, tripped=tripped)
                summary["forced"] = {"reason": br.reason, "tripped": tripped}
            if raised:
                summary["breakers_raised"] = {**raised, **({"reason": br.reason} if br.reason else {})}
            draft.batch["summary"] = json.dumps(summary, ensure_ascii=False)
        led.save_draft(draft.batch, draft.lines, draft.pieces, draft.no_card, draft.quarantine, draft.cancels,
                       draft.ends)
        b = draft.batch
        summary = json.loads(b["summary"])
        if out is not None:
            try:
                report = write_change_report(out, b["batch_id"], draft.changes,
                                             {"as_of": str(as_of), "registry_sha256": validated.sha256,
                                              "changes": summary["changes"]},
                                             card_holders=draft.card_holders)
            except OSError as e:  # a folder the run may not write: the user's to fix, and the draft is saved
                raise InputError(f"{out}: cannot write the change report ({os_reason(e)}); "
                                 f"the draft {b['batch_id']} is saved: fix the folder and run again for its "
                                 "report (the same draft)") from None
            summary["change_report"] = str(report)
            # its refusal's report, if this run was refused before (let through now): not left beside
            # it saying "nothing drafted" of a batch that exists (audits 18E, 18F)
            for name in (b["batch_id"], _quarantine_refusal(kind, as_of, validated.sha256)):
                shutil.rmtree(refused_folder(out, name), ignore_errors=True)
        _warn_if_ahead(summary, as_of, lg)
        if prev and prev["registry_sha256"] == validated.sha256 and prev["as_of"] < as_of:
            # The same file as an earlier day's run: the big-data center's extract did not come, and
            # tonight pays as of a registry that knows nothing since (audit 18B: not a word said).
            # Said, not refused: a quiet registry may send the same bytes, and tomorrow's run catches up.
            summary["same_extract_as"] = {"batch_id": prev["batch_id"], "as_of": str(prev["as_of"])}
            lg.warning("same_extract_as", **summary["same_extract_as"])
        if earlier := led.earlier_approvals(b["batch_id"]):  # a redraft: what review already approved
            summary["approvals_to_carry"] = earlier
        lg.info("draft_saved", batch_id=b["batch_id"], lines=b["lines"], fen=b["amount_fen"],
                recoveries=summary["recoveries"]["lines"], stopped=st["stopped"])
        return RunResult(b["batch_id"], "draft", b["lines"], b["amount_fen"], summary, finished=finished)


def age_judged_on(kind: str, as_of: dt.date, scope: Scope) -> dt.date:
    """A day of the month AGE_IMPLAUSIBLE judges the age in: the month the draft pays in
    (batch.paid_in_month), where a row over 120 also has its payments clipped. A quarter drafted
    before it begins pays its first month at the age then (audit 19G had a quarter begun at 121
    paid, drafted the month before at 120)."""
    return month_start(paid_in_month(kind, as_of, scope.window))


def _quarantine_refusal(kind: str, as_of: dt.date, sha256: str) -> str:
    """The name of a run refused for its extract's quarantined share (it has no batch id yet)."""
    return f"{kind}-{as_of:%Y%m%d}-{sha256[:8]}"


def _refused_report(out: Path | None, name: str, changes: pl.DataFrame | None, summary: dict[str, Any],
                    quarantine: pl.DataFrame, why: str, card_holders: pl.DataFrame | None = None) -> str:
    """A refused run's report (write_change_report's `refused`), and where it is, for the refusal's
    message; nothing when there is no --out, or the folder cannot be written (the refusal stands).
    A breaker's refusal has a draft: its card holders too (audit 19D)."""
    if out is None:
        return ""
    try:
        folder = write_change_report(out, name, changes, summary, quarantine, refused=why, card_holders=card_holders)
    except OSError:
        return ""
    return f" (what it found, to check: {folder})"


def as_of_after_today(as_of: dt.date) -> dict[str, Any] | None:
    """A run's as-of after today (Shanghai), as said with its draft and its publication: not
    refused (simulations run as of days to come), but once such a batch is published, a run as
    of any earlier day is refused, so a mistyped year would stop every night's run (audit 16).
    Never stored: a rerun on another day leaves the same ledger and files."""
    ahead = (as_of - today_shanghai()).days
    return {"as_of": str(as_of), "days": ahead} if ahead > 0 else None


def _warn_if_ahead(summary: dict[str, Any], as_of: dt.date, lg: Any) -> None:
    """as_of_after_today into a run's result (not its stored summary) and its log."""
    if ahead := as_of_after_today(as_of):
        summary["as_of_after_today"] = ahead
        lg.warning("as_of_after_today", **ahead)


def unknown_bank_batches(led: Ledger, out: Path) -> list[str]:
    """The batches whose bank files lie in `out`, published by this ledger (their manifest names
    its `ledger_id`), that it does not hold as published: it was restored from a backup older than
    their publication, or a copy of it published them. Another ledger's batches in the same folder
    (a test beside production, say) are its own business."""
    me = led.identity()
    mine = []
    try:  # the marks publications leave (.ledgers/<id>/<batch>), which outlive a folder the bank took
        mine += [m.name for m in sorted((out / ".ledgers" / me).glob("*"))
                 if not m.name.startswith(".") and BATCH_ID.fullmatch(m.name)]
    except OSError:
        pass
    try:
        for m in sorted(out.glob("*/manifest.json")):
            if m.parent.name.startswith("."):  # a publication staged, not yet delivered
                continue
            try:
                if json.loads(m.read_text(encoding="utf-8")).get("ledger_id") == me:
                    mine.append(m.parent.name)
            except (ValueError, AttributeError, OSError):  # not a manifest the engine wrote: not ours to judge
                continue
    except OSError:
        return []
    if not mine:
        return []
    known = set(led.df("select batch_id from batches where status = 'published'")["batch_id"].to_list())
    return sorted({b for b in mine if b not in known})


def leave_marks(led: Ledger, lg: Any = None) -> None:
    """Every batch this ledger holds as published has its mark (.ledgers/<id>/<batch>) in the folder
    recorded for it, whenever that folder is here: a publication finished by a later run, written
    again (--rewrite, a moved folder) or made before marks existed gets one too. A mark that cannot
    be written is said (error log), never passed over: without it a restored backup pays again."""
    me = led.identity()
    for bid, folder in led.published_folders().items():
        if folder is None or not folder.is_dir():
            continue
        mark = folder / ".ledgers" / me / bid
        if mark.exists():
            continue
        try:
            mark.parent.mkdir(parents=True, exist_ok=True)
            mark.touch()
        except OSError as e:
            (lg or log.get(batch_id=bid)).error("ledger_mark_not_written", mark=str(mark), error=os_reason(e))


def bank_folders_to_scan(led: Ledger, out: Path | None) -> list[Path]:
    """`out` (when given), and every folder this ledger has published to: a restored ledger run
    with another --out (a new disk, the nightly's folder not the quarter's) must still see what it
    published there."""
    recorded = {p for p in led.published_folders().values() if p is not None}
    return sorted(recorded | ({out.resolve()} if out is not None else set()))


def refuse_unknown_bank_batches(led: Ledger, out: Path) -> None:
    """A run or a publication is refused while `out` holds bank files of a batch the ledger does
    not hold as published. Found by audits 18A and 18B: a ledger restored from the night's backup,
    after a quarter had been published since, drafted and published that quarter again (every
    month paid twice, under other line ids), and `ledger check` said ok; restored and given
    another bank return, it drafted another batch under the id of one delivered, and publishing it
    replaced the bank's folder."""
    # named where they are (audit 18D: --out was named instead)
    unknown = sorted({str(d / b) for d in bank_folders_to_scan(led, out) for b in unknown_bank_batches(led, d)})
    if unknown:
        raise RefusedError(
            f"{out}: this ledger published {len(unknown)} batch(es) it does not record "
            f"({', '.join(unknown[:5])}{', …' if len(unknown) > 5 else ''}): was it restored from a backup older "
            "than them? Run on, and their months are paid again: restore the backup taken after them (README: "
            "Backups); nothing was drafted or published")


def _published_before(b: dict[str, Any]) -> dict[str, str]:
    """Who approved a batch published before this command, and when (already_published, files_rewritten)."""
    return {"approved_by": b["approved_by"], "published_at": str(b["published_at"])}


def _list_cancelled(led: Ledger, out: Path, batch_id: str, summary: dict[str, Any], lg: Any) -> None:
    """The district's list of the recoveries a published batch cancelled, as the ledger recorded
    them (write_cancelled_recoveries), and where it is, in the result. A folder it cannot be written
    to is said in the log; publishing again writes it (the batch itself is published)."""
    try:
        cancelled = write_cancelled_recoveries(out, batch_id, led.df(
            "select line_id, person_key, district_code, from_mi, to_mi, fen from batch_cancels where batch_id = ?",
            [batch_id]))
    except OSError as e:
        lg.error("cancelled_recoveries_not_written", error=os_reason(e))
        return
    if cancelled is not None:
        summary["recoveries_cancelled_list"] = str(cancelled)


def finish_publications(ledger_path: Path, out: Path) -> list[str]:
    """The batches whose publication was interrupted between the ledger's commit and the rename
    of their folder into place (a kill, a power cut, a failed sync), finished: the ledger holds
    them as paid but the bank never got their files, still in `<out>/.<batch_id>.partial`. Each
    is written again (the same bytes, as `allowance publish` would) before any new draft, so a
    rerun of a scheduled job delivers what its first run recorded. So are the batches recorded
    owed to this folder (Ledger.undelivered: their staged files went with the folder), or, found
    whole in place, recorded delivered. Returns their ids."""
    def staged() -> list[str]:
        return sorted(p.name[1:-len(".partial")] for p in out.glob(".*.partial")) if out.is_dir() else []

    # And those whose files a publication could not move into place at all, the folder gone when
    # the ledger had committed (record_delivery; audit 26C): owed to this folder, written now.
    with Ledger.use(ledger_path, read_only=True) as led:
        # Only to this folder: one that is not here may be a share unmounted for now, not moved
        # (audit 26H: a run with another --out took the bank's batch); a folder moved for good is
        # written by `publish --out NEW` (ledger check says so).
        owed = sorted(bid for bid, folder in led.undelivered().items() if folder == out.resolve())
        approvers = dict(led.run("select batch_id, approved_by from batches where list_contains(?, batch_id)",
                                 [owed]))
    undelivered = [(bid, approvers[bid]) for bid in owed if not (out / f".{bid}.partial").exists()]
    for batch_id, approved_by in undelivered:
        log.get(batch_id=batch_id).warning(
            "publication_finished", why="published in the ledger, but its folder was gone when its files were to be "
            "moved into place")
        publish_batch(batch_id, approved_by, ledger_path, out)
    if not staged():
        return [bid for bid, _ in undelivered]
    with Ledger.use(ledger_path, read_only=True) as led, durable.folder_lock(out) as mine:
        # Looked at again now that the ledger is ours to read and the folder ours alone: a
        # publication holds both from staging its files to their rename, so none is under way
        # while this look lasts (listed before, a publication in progress looked interrupted; and
        # another ledger sharing the folder, which our ledger's lock does not stop, had its staged
        # files removed mid-publication: two audits). When another publication holds the folder,
        # there is nothing to look at now.
        if not mine:
            return [bid for bid, _ in undelivered]
        held = led.df("select batch_id, status, approved_by from batches where list_contains(?, batch_id) "
                      "order by batch_id", [staged()]).rows()
        todo = []
        for batch_id, status, approved_by in held:
            first = led.published_elsewhere(batch_id, out) if status == "published" else None
            if status == "published" and first is None:
                if not (out / batch_id).exists() or verify_batch(out / batch_id):
                    todo.append((batch_id, approved_by))
                else:  # a copy staged again beside a batch already whole in place: nothing to finish
                    shutil.rmtree(out / f".{batch_id}.partial", ignore_errors=True)
            else:
                # Staged by a publication that never committed here: killed before its commit (a
                # draft), or published since to another folder. Left where it is, and said, never
                # removed: the same folder may serve a copy of this ledger (restored, say) that
                # did commit it, whose next run finishes it (two audits: removing a draft's staged
                # files lost another ledger's committed bank files). It holds whole IDs and card
                # numbers: publishing the draft here replaces it; otherwise staff remove it.
                # One staged by an engine before the manifest waited for the commit holds a
                # `manifest.json`, a whole valid batch nobody paid through the ledger: no batch now
                # (audit 26D), as a later staging would write it; the other ledger's run, if one
                # committed it, stages it again to finish it.
                kept = out / f".{batch_id}.partial"
                if (kept / "manifest.json").is_file():
                    os.replace(kept / "manifest.json", kept / PENDING_MANIFEST)
                    durable.sync(kept)
                log.get(batch_id=batch_id).warning(
                    "staged_files_left", folder=str(out / f".{batch_id}.partial"),
                    why=("a publication stopped before the ledger's commit" if status == "draft" else
                         f"published to {first}") + "; nothing here to finish: remove it once no other ledger "
                    "shares this folder")
    for batch_id, approved_by in todo:
        log.get(batch_id=batch_id).warning(
            "publication_finished", why="published in the ledger, but its files were never moved into place")
        publish_batch(batch_id, approved_by, ledger_path, out)
    return [bid for bid, _ in undelivered + todo]


def bank_folder_problems(led: Ledger, out: Path | None = None) -> tuple[dict[str, int], list[str]]:
    """`ledger check`'s look at the bank files of every published batch, in the folder recorded at
    its publication: each file its manifest lists is there with its SHA-256 (what a bank checks),
    and no publication is left unfinished (its staged folder never moved into place). A folder
    gone is not a problem: the bank, or an archive job, takes it (publish does not write it again
    unasked). Before (an audit), a deleted manifest or an altered bank file checked as ok.
    Returns counts (verified, taken_away, unrecorded) and problems."""
    counts = {"verified": 0, "taken_away": 0, "unrecorded": 0, "not_in_ledger": 0}
    problems: list[str] = []
    folders = led.published_folders()
    owed = led.undelivered()
    # `out` too (the folder runs are given): a ledger restored from before its first publication
    # has no folder recorded to look in (audit 18D: it checked as ok)
    for parent in bank_folders_to_scan(led, out):
        for bid in unknown_bank_batches(led, parent):  # audit 18B: a restored ledger checked as ok
            counts["not_in_ledger"] += 1
            problems.append(f"batch {bid}: bank files in {parent / bid}, but this ledger does not hold it as "
                            "published: restored from a backup older than it? Its months would be paid again")
    for bid, recorded in folders.items():
        if recorded is None:
            counts["unrecorded"] += 1
            continue
        folder = recorded / bid
        staged = folder.parent / f".{bid}.partial"
        if staged.exists():
            problems.append(f"batch {bid}: published, but its bank files were never moved into place ({staged}); "
                            f"`allowance publish {bid} --out {folder.parent}` (or the next run) finishes it")
        elif bid in owed and not folder.exists():
            where = (f"--out {folder.parent}` (or the next run with that --out)" if folder.parent.exists() else
                     f"--out {folder.parent}` once it is back (a share unmounted: the next run with that --out "
                     "does it too), or `--out DIR` with the folder the bank reads now if it has moved for good")
            problems.append(f"batch {bid}: published, but its bank files never reached {folder.parent} (the folder "
                            f"was gone when they were to be moved into place); `allowance publish {bid} {where} "
                            "writes them")
        elif not folder.exists():
            counts["taken_away"] += 1
        else:
            counts["verified"] += 1
            problems += [f"batch {bid}, bank files in {folder}: {p}" for p in verify_batch(folder, unlisted=True)]
    return counts, problems


def _staged_by(staged: Path) -> str | None:
    """Which ledger staged a folder (its manifest's `ledger_id`, pending or not): None where there
    is none; "" where it cannot be told (no manifest yet, an unreadable one: kept as another's)."""
    if not staged.exists():
        return None
    for name in (PENDING_MANIFEST, "manifest.json"):
        try:
            return str(json.loads((staged / name).read_text(encoding="utf-8")).get("ledger_id") or "")
        except (OSError, ValueError, AttributeError):
            continue
    return ""


def _record_undelivered(led: Ledger, batch_id: str, out: Path, why: str, lg: Any) -> None:
    """Record a published batch's files as owed (Ledger.record_delivery). Interrupted while it is
    written (a second Ctrl-C, a SIGTERM: audit 26F found the batch then taken for delivered), it is
    written once more before the interruption goes on; a failure of its own is logged, the first
    failure being the one to say."""
    try:
        led.record_delivery(batch_id, False, out, why)
    except BaseException as e:
        try:
            led.record_delivery(batch_id, False, out, why)
        except Exception as again:
            lg.error("undelivered_not_recorded", error=first_line(again))
        if not isinstance(e, Exception):
            raise


def _published_or_unknown(led: Ledger, batch_id: str) -> bool:
    """After a publication failed: does the ledger hold the batch as published (or can it not say)?"""
    try:
        return bool(led.batch(batch_id)["status"] == "published")
    except BaseException:  # a second interrupt, a closed connection: it might be published
        return True


def publish_batch(batch_id: str, approved_by: str, ledger_path: Path, out: Path,
                  require_district_approvals: bool = False, rewrite: bool = False) -> RunResult:
    """五: publish an approved draft — files for the bank and the ledger entries, in one step.

    `approved_by` signs the publication. The districts that approved their lists (`review
    approve`) are named in the manifest; with `require_district_approvals` a draft is refused
    until every district with something in it has approved its list.

    Rerun-safe: a published batch whose files verify is left alone; one whose files are
    missing (interrupted after the ledger commit) gets them rewritten, byte-identical. One whose
    folder was delivered and has been taken away since (by the bank, an archive job) is not
    written again unless `rewrite`: a second delivery could be paid twice.
    """
    lg = log.get(batch_id=batch_id)
    if not approved_by.strip():
        raise LedgerError("--approved-by must name who approved the batch")
    refuse_the_ledgers_store(out, ledger_path)
    with Ledger.use(ledger_path) as led:
        refuse_unknown_bank_batches(led, out)
        b = led.batch(batch_id)
        summary = json.loads(b["summary"])
        folder = out / batch_id
        recorded = led.published_folders(batch_id).get(batch_id) if b["status"] == "published" else None
        owed = led.undelivered() if b["status"] == "published" else {}
        if b["status"] == "published" and not verify_batch(folder):
            lg.info("publish_noop", reason="already published")
            if batch_id in owed:
                # Whole in place though recorded owed (a rename that reported failure, or a kill
                # after it and before its record): delivered, or taken away later it would be
                # written again as never delivered (audit 26D).
                led.record_delivery(batch_id, True, out)
            if recorded != out.resolve() and not (recorded and recorded.exists()):
                # whole here, where the recorded folder has gone: a rewrite interrupted before it
                # recorded this folder (below), or a batch published before folders were recorded
                led.record_bank_folder(batch_id, out, approved_by)
            # a staged copy left beside the batch (finish_publications would look at it each run)
            shutil.rmtree(out / f".{batch_id}.partial", ignore_errors=True)
            # Said as such: a second publish printed "published …" as if it had paid again, and
            # another --approved-by was dropped unsaid (audit 18B). The first approval stands.
            summary["already_published"] = _published_before(b)
            leave_marks(led, lg)
            _list_cancelled(led, out, batch_id, summary, lg)
            return RunResult(batch_id, "published", b["lines"], b["amount_fen"], summary, folder)
        first = led.published_elsewhere(batch_id, out) if b["status"] == "published" else None
        if first is not None:
            # Found by audits: publishing again to another --out wrote a second copy; and a copy
            # staged in the first folder by an interrupted publication was then finished there too.
            raise RefusedError(f"batch {batch_id} was published to {first}; its files are written only there "
                               f"(`allowance publish {batch_id} --out {first}` finishes them if need be); "
                               f"nothing written to {out}")
        if (b["status"] == "published" and not rewrite and not folder.exists()
                and not (out / f".{batch_id}.partial").exists() and batch_id not in owed):
            # Delivered: a publication keeps its staged folder until the rename that puts the batch
            # in place, so with neither left the bank's files were whole in `folder` and someone
            # has taken them since (the bank, an archive job). Written again unasked, they would be
            # a second delivery of money already paid (an earlier round's note left this open).
            # named where they were delivered: the recorded folder, gone too when it is not `out`
            delivered = (recorded or out.resolve()) / batch_id
            lg.info("publish_noop", reason="files delivered and taken away", folder=str(delivered))
            return RunResult(batch_id, "published", b["lines"], b["amount_fen"], summary, taken_away=delivered)
        # Stored in line order (one Parquet file, checked against its hash); sorted here only if
        # it is not (an O(n) check instead of a 4-million-string sort on every publish).
        stored = led.part(batch_id, "lines")
        lines = stored if stored["line_id"].is_sorted() else stored.sort("line_id")
        no_card = led.df(
            "select * from batch_no_card where batch_id=? order by district_code, person_id", [batch_id]
        )
        quarantine = led.df("select * from batch_quarantine where batch_id=? order by row_no", [batch_id])
        check_lines(lines)
        approvals = led.approvals(batch_id)
        approved = {a["district_code"] for a in approvals}
        # 五: the districts whose list no one in the district approved (published so by a draft's
        # publisher alone, without --require-district-approvals), named in the manifest, the log and
        # the result (audits 25B, 26B: the manifest's empty approvals said nothing of it). Ledger's
        # own list of them (one column of the lines file: 20-30 ms at 15.35M).
        unapproved: list[str] | None = [d for d in led.districts_of(batch_id) if d not in approved]
        if b["status"] == "published" and b["manifest"]:  # its files written again say what they said
            unapproved = json.loads(b["manifest"]).get("districts_not_approved")
        if require_district_approvals and b["status"] == "draft":
            if missing := unapproved:
                raise RefusedError(
                    f"batch {batch_id}: {len(missing)} district(s) have not approved their list (五 资格审定): "
                    f"{', '.join(f'{d} {DISTRICTS.get(d, d)}' for d in missing)}; each runs "
                    f"`allowance review approve {batch_id} --district CODE --by NAME`")
        published_at = b["published_at"] or _now()
        # Which ledger published it (a backup of this ledger restored later knows its batches by
        # it: unknown_bank_batches); a published batch's files written again say what they said.
        ledger_id = (json.loads(b["manifest"]).get("ledger_id") if b["status"] == "published" and b["manifest"]
                     else led.identity(create=True))
        header = {
            "batch_id": batch_id,
            "kind": b["kind"],
            "quarter": b["quarter"],
            "as_of": str(b["as_of"]),
            "window": {"first": fmt(b["first_month"]), "last": fmt(b["last_month"])} if b["first_month"] else None,
            "rules_versions": b["rules_versions"].split("+") if b["rules_versions"] else [],
            # the tables as the draft read them (a draft made before this was recorded has none)
            **({"rules_sha256": digest} if (digest := json.loads(b["summary"]).get("rules_sha256")) else {}),
            "registry_sha256": b["registry_sha256"],
            # a published batch's files written again name the code that made them, not today's
            "code_version": (json.loads(b["manifest"]).get("code_version") if b["status"] == "published"
                             and b["manifest"] else None) or code_version(),
            "approved_by": b["approved_by"] or approved_by,
            # 五: each district's approval of its list (review approve), as the ledger holds it
            "district_approvals": [{**a, "approved_at": a["approved_at"].isoformat()} for a in approvals],
            **({"districts_not_approved": unapproved} if unapproved is not None else {}),
            "published_at": published_at.isoformat(),
            **({"ledger_id": ledger_id} if ledger_id else {}),
        }
        # Stage the files, commit the ledger, then rename the folder into place: a bank never
        # sees a batch the ledger does not hold, and a crash in between is mended by a rerun.
        # The folder's lock, from staging to the rename: a run that finds a staged folder (with
        # this ledger, or another ledger sharing the folder) never takes it for a leftover.
        with contextlib.ExitStack() as locked:
            ours = False
            try:
                locked.enter_context(durable.folder_lock(out, lock_wait(LOCK_WAIT_SECONDS)))
                # The folder is ours alone now. A staged folder already there may be another ledger's
                # (sharing the folder, with the same batch id), whose publication committed: it is
                # what says that ledger still owes its files (audit 26F), so it is removed below only
                # when this ledger staged it (a kill before the commit, then this rerun; audit 26H).
                ours = _staged_by(out / f".{batch_id}.partial") in (None, led.identity())
                partial, manifest = stage_batch(out, b, lines, no_card, quarantine, header)
            except BaseException as e:
                # Failed or interrupted (Ctrl-C, SIGTERM) while staging a draft: nothing committed,
                # so the staged files it made (whole IDs, card numbers) go (audit 26D: they stayed
                # for good). A published batch's stay: they say its files are still owed.
                if ours and b["status"] == "draft":
                    shutil.rmtree(out / f".{batch_id}.partial", ignore_errors=True)
                if isinstance(e, OSError):  # a folder the job may not write: the user's to fix
                    raise InputError(f"{out}: cannot write the batch files ({os_reason(e)}); " + (
                        f"the ledger holds {batch_id} as published: fix the folder and run again to finish it"
                        if b["status"] == "published" else "nothing was published")) from None
                raise
            published = b["status"] == "published"
            # The payees, from the file's rows as stored (they point at them).
            paid = None if published else payee_rows(stored)
            del stored, lines, no_card, quarantine  # the ledger work reads what it needs itself (1 GB less at its peak)
            # The staged files go to disk while the ledger's transaction runs (mostly CPU), and the
            # rename waits for them: the bank only ever sees a batch that is on disk whole. A failure
            # after the commit leaves the files unrenamed, and a rerun writes them again (above).
            with ThreadPoolExecutor(1) as pool:
                synced = pool.submit(durable.sync_tree, partial)
                committed = False
                try:
                    if paid is not None:
                        led.record_publication(batch_id, approved_by, manifest, published_at, paid, out)
                    committed = True
                    synced.result()
                except BaseException:
                    wait([synced])
                    # Once committed, the staged folder says the files are owed: kept. An interrupt
                    # (Ctrl-C) can land after the commit and before `committed` is set (an audit: the
                    # folder was removed, and the batch, paid in the ledger, was never delivered), so
                    # the ledger is asked; when it cannot say, the folder is kept (a draft's staged
                    # folder is only said, never used, by finish_publications).
                    if not committed and not _published_or_unknown(led, batch_id):
                        shutil.rmtree(partial, ignore_errors=True)
                    raise
            leave_marks(led, lg)  # right after the commit; and again below for what was finished or rewritten
            if published and recorded != out.resolve():
                # Written where the recorded folder is not (it has gone, moved with the ledger, or
                # none was recorded): recorded now, or `ledger check` would look for them there (an
                # audit) and a later publication would not know this copy. Before the rename, so a
                # failed or killed rename leaves staged files of the folder recorded, which the next
                # run there finishes (audit 26H: recorded after, they were another folder's, and left).
                led.record_bank_folder(batch_id, out, approved_by)
            if batch_id in owed:
                # Recorded delivered before the rename, not after (audit 26F: a kill between the two
                # left it owed, and once the bank took the folder the next run wrote it again): until
                # the rename the staged folder says the files are owed, and a failed rename records
                # them owed again (below).
                led.record_delivery(batch_id, True, out)
            try:
                finalize_batch(partial, folder)
            except OSError as e:
                # Neither staged nor in place: gone with the folder (a share unmounted), and said in
                # the ledger, or the next command would take the batch for one the bank collected. In
                # place, the rename happened (a sync after it failed, audit 26F): delivered.
                if not partial.exists() and not folder.exists():
                    _record_undelivered(led, batch_id, out, os_reason(e), lg)
                raise InputError(
                    f"{out}: cannot move the batch files into place ({os_reason(e)}); the ledger "
                    f"holds {batch_id} as published: fix the folder and run `allowance publish {batch_id}` (or the "
                    "next run) to finish it") from None
        leave_marks(led, lg)
        _list_cancelled(led, out, batch_id, summary, lg)
        if published:  # its files written again (--rewrite, or missing or altered): not a publication (audit 18D)
            summary["files_rewritten"] = _published_before(b)
        lg.info("published", lines=b["lines"], fen=b["amount_fen"], out=str(folder))
        _warn_if_ahead(summary, b["as_of"], lg)  # said when published too, by a job's --publish-as (an audit)
        if not published and unapproved:
            summary["districts_not_approved"] = unapproved
            lg.warning("published_without_district_approval", districts=unapproved)
        if not published:
            # Audit 18B: last night's draft published over tonight's, whose extract knew of two
            # deaths, paid them (and the next night recovered it from their families). Said, not
            # refused: which draft to publish is the reviewers' call.
            # later by as-of, or drafted later the same day from another file (a corrected extract re-sent)
            later = led.one("select batch_id, as_of from batches where kind = ? and status = 'draft' "
                            "and quarter is not distinct from ? and (as_of > ? or (as_of = ? and created_at >= ? "
                            "and registry_sha256 <> ? and batch_id <> ?)) order by as_of desc, created_at desc, "
                            "batch_id limit 1",
                            [b["kind"], b["quarter"], b["as_of"], b["as_of"], b["created_at"], b["registry_sha256"],
                             batch_id])
            if later:
                summary["later_draft"] = {"batch_id": later[0], "as_of": str(later[1])}
                lg.warning("later_draft", **summary["later_draft"])
        return RunResult(batch_id, "published", b["lines"], b["amount_fen"], summary, folder)
