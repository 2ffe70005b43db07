"""The files a bank and a district read (SPEC §6), written atomically with the manifest last.

Everything goes into `<out>/.<batch_id>.partial/` first; the manifest is the last file
written there (named `manifest.json` only once the ledger holds the batch), and one rename makes
the whole batch appear. A folder without a manifest is
not a batch, and rewriting a batch gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl

from allowance import durable, idcard
from allowance.constants import DISTRICTS, PARQUET_ROW_GROUP_ROWS
from allowance.months import month_date_expr
from allowance.registry import file_sha256

# `periods` (the months a line pays or recovers, where they are not every month from period_from
# to period_to; null where they are) is in the files of batches drafted since it existed: a batch
# drafted before has none in its stored lines, and its files written again stay as they were.
PAYMENT_COLUMNS = [
    "batch_id", "line_id", "person_id", "name", "district_code", "channel", "card_no", "period_from",
    "period_to", "months", "periods", "amount_fen", "municipal_fen", "district_fen", "reason", "rules_version",
]
RECOVERY_COLUMNS = [
    "batch_id", "line_id", "person_id", "name", "district_code", "period_from", "period_to", "months", "periods",
    "amount_fen", "municipal_fen", "district_fen", "reason", "cause", "rules_version",
]


def _write(df: pl.DataFrame, root: Path, rel: str, files: dict[str, dict[str, Any]]) -> None:
    """One Parquet file, hashed from the bytes written (not read back from disk)."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    # zstd level 1: at 4.4 million lines 0.3 s faster than the default level, and no larger.
    df.write_parquet(buf, compression="zstd", compression_level=1, statistics=True,
                     row_group_size=PARQUET_ROW_GROUP_ROWS)
    data = buf.getbuffer()
    with path.open("wb") as f:
        f.write(data)
    amount = int(df["amount_fen"].sum()) if "amount_fen" in df.columns else None
    files[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "rows": df.height, "amount_fen": amount}


def _runs(df: pl.DataFrame, keys: list[str]) -> list[tuple[tuple[Any, ...], int, int]] | None:
    """(key values, offset, length) of each group of `df` when every group is one contiguous run
    of rows, else None. Lines come in line order (type, district, channel, person), so the
    files of a batch are slices of it: no copy of millions of rows into partitions."""
    starts = df.select(pl.any_horizontal([pl.col(k).ne_missing(pl.col(k).shift(1)) for k in keys])
                       .fill_null(True).arg_true()).to_series().to_list()
    if not starts:
        return None
    bounds = [*starts, df.height]
    heads = df.select(keys)[starts].rows()
    if len(set(heads)) != len(heads):
        return None
    return [(tuple(h), a, b - a) for h, a, b in zip(heads, bounds, bounds[1:], strict=False)]


Runs = list[tuple[tuple[Any, ...], int, int]] | None


def _partitioned(df: pl.DataFrame, keys: list[str], root: Path, prefix: str, files: dict[str, dict[str, Any]],
                 runs: Runs = None) -> None:
    (root / prefix).mkdir(parents=True, exist_ok=True)
    if df.height == 0:
        return
    # Each file keeps its rows in the order they come (line order: the batch's line ids), and the
    # files are written in the order of their keys. No sort of the whole frame is needed, and
    # none could reorder rows with equal keys between two runs. When each group is a contiguous
    # run (always, for lines in line order) the files are zero-copy slices of the frame. `runs`
    # is _runs(df, keys) when the caller has it.
    runs = runs if runs is not None else _runs(df, keys)
    if runs is not None:
        parts = {values: df.slice(offset, length) for values, offset, length in runs}
    else:
        parts = df.partition_by(keys, as_dict=True, maintain_order=True)
    jobs = [
        (part, f"{prefix}/" + "/".join(f"{k}={v}" for k, v in zip(keys, values, strict=True)) + "/part-0.parquet")
        for values, part in sorted(parts.items(), key=lambda kv: tuple(str(v) for v in kv[0]))
    ]
    # Two files at a time (encoding and compression release the GIL); each file's bytes are the
    # same whichever thread writes it, and the manifest lists files sorted by path.
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda job: _write(job[0], root, job[1], files), jobs))


AMOUNTS = ["amount_fen", "municipal_fen", "district_fen"]


def group_totals(df: pl.DataFrame, keys: list[str], runs: Runs = None, amounts: list[str] = AMOUNTS
                 ) -> pl.DataFrame:
    """Per group of `keys`, ordered by them: lines, and the sums of `amounts` (int64 fen). From
    `runs` (_runs: each group a contiguous slice) a sum per slice, for a few dozen groups; else a
    group-by. At 4.4 million payments the two group-bys over district and channel texts took
    0.4-0.6 s of a publication."""
    if runs is None:
        return df.group_by(keys).agg(
            pl.len().cast(pl.Int64).alias("lines"), *[pl.col(c).sum().cast(pl.Int64) for c in amounts]).sort(keys)
    return pl.DataFrame(
        [(*values, length, *[int(df[c].slice(offset, length).sum()) for c in amounts])  # groups, not people
         for values, offset, length in runs],
        schema={**{k: df.schema[k] for k in keys}, "lines": pl.Int64, **{c: pl.Int64 for c in amounts}},
        orient="row",
    ).sort(keys)


def funding_table(totals: pl.DataFrame) -> pl.DataFrame:
    """Per district, what the city and the district each fund (七(二) 1∶1); all 16 districts listed.
    `totals` is group_totals of the payments by district (and possibly more keys)."""
    districts = pl.DataFrame(
        {"district_code": list(DISTRICTS), "district_name": list(DISTRICTS.values())}
    )
    sums = totals.group_by("district_code").agg(pl.col("lines", *AMOUNTS).sum())
    return (
        districts.join(sums, on="district_code", how="left")
        .with_columns(pl.col("lines", "amount_fen", "municipal_fen", "district_fen").fill_null(0))
        .sort("district_code")
    )


def stage_batch(
    out: Path,
    batch: dict[str, Any],
    lines: pl.DataFrame,
    no_card: pl.DataFrame,
    quarantine: pl.DataFrame,
    header: dict[str, Any],
) -> tuple[Path, dict[str, Any]]:
    """Write every file of SPEC §6 for one batch into a hidden staging folder, manifest last.

    Returns the staging folder and the manifest; `finalize_batch` moves it into place.
    """
    bid = batch["batch_id"]
    out.mkdir(parents=True, exist_ok=True)
    partial = out / f".{bid}.partial"
    if partial.is_dir():
        # Emptied, never removed: once a publication has committed, its staged folder is what says
        # its files are still owed (runs.finish_publications). Removed and made again, a kill in
        # between left the ledger holding a batch as paid and no trace that its files were never
        # delivered (an audit). The manifest goes first: the folder is no batch while it is redone.
        (partial / "manifest.json").unlink(missing_ok=True)
        for child in sorted(partial.iterdir()):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    else:
        partial.mkdir()
    # Its name on disk before the ledger's commit: after the commit, a staged folder left behind
    # is what says a publication's files are still owed (runs.finish_publications).
    durable.sync(out)
    files: dict[str, dict[str, Any]] = {}

    # Payment lines come first in line order: then they are a slice of the lines, not a copy.
    pay_cols = [c for c in PAYMENT_COLUMNS if c in lines.columns]
    rec_cols = [c for c in RECOVERY_COLUMNS if c in lines.columns]
    n_pay = int((lines["line_type"] == "PAYMENT").sum())
    if (lines.head(n_pay)["line_type"] == "PAYMENT").all():
        payments = lines.head(n_pay).select(pay_cols)
    else:
        payments = lines.filter(pl.col("line_type") == "PAYMENT").select(pay_cols)
    # A recovery list states what to get back: positive amounts (the ledger holds them negative).
    recoveries = lines.filter(pl.col("line_type") == "RECOVERY").select(rec_cols).with_columns(
        pl.col("amount_fen", "municipal_fen", "district_fen").neg()
    )
    keys = ["district_code", "channel"]
    pay_runs = _runs(payments, keys) if payments.height else None
    _partitioned(payments, keys, partial, "payments", files, pay_runs)
    _partitioned(no_card, ["district_code"], partial, "no_card", files)
    _partitioned(recoveries, ["district_code"], partial, "recoveries", files)
    by_dc = group_totals(payments, keys, pay_runs)
    funding = funding_table(by_dc)
    _write(funding, partial, "funding.parquet", files)
    _write(quarantine, partial, "quarantine.parquet", files)

    manifest = {
        **header,
        "files": dict(sorted(files.items())),
        "control_totals": {
            "payments": {
                "lines": payments.height,
                "amount_fen": int(payments["amount_fen"].sum()),
                "municipal_fen": int(payments["municipal_fen"].sum()),
                "district_fen": int(payments["district_fen"].sum()),
            },
            "recoveries": {"lines": recoveries.height, "amount_fen": int(recoveries["amount_fen"].sum())},
            "no_card": {"people": no_card.height, "amount_fen": int(no_card["amount_fen"].sum())},
            "quarantine": {"rows": quarantine.height},
            "by_district_channel": by_dc.select(*keys, "lines", "amount_fen").to_dicts(),
        },
    }
    # Staged as `manifest.json.pending`: a staged folder is a batch only once the ledger holds it
    # (finalize_batch names the manifest). Staged as `manifest.json`, a publication killed before
    # its commit left a whole, valid batch of a draft beside the bank's folders for good (audit
    # 26C), which a copy of hidden folders (`rsync -a`) would deliver.
    tmp = partial / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, partial / PENDING_MANIFEST)
    return partial, manifest


PENDING_MANIFEST = "manifest.json.pending"


def finalize_batch(partial: Path, final: Path) -> None:
    """After the ledger holds the batch: its manifest named, then one rename makes the batch
    visible; each made durable by syncing the folder it happens in. A bank batch's files are
    synced before it (durable.sync_tree, in runs.publish_batch)."""
    if (partial / PENDING_MANIFEST).exists():
        os.replace(partial / PENDING_MANIFEST, partial / "manifest.json")
        durable.sync(partial)
    if final.exists():
        shutil.rmtree(final)  # only ever a leftover of an interrupted publish of this same batch
    os.replace(partial, final)
    durable.sync(final.parent)


def verify_batch(folder: Path, unlisted: bool = False) -> list[str]:
    """What a bank would check: every file listed in the manifest exists with its hash and rows;
    with `unlisted` (ledger check), also any file in the folder that the manifest does not list
    (publish leaves a folder with one alone: a marker the bank put there is not a reason to
    write the batch again)."""
    mpath = folder / "manifest.json"
    if not mpath.is_file():
        return [f"{folder}: no manifest.json (not a batch)"]
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        files = dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as e:  # a damaged manifest is a problem to report, not a crash
        return [f"{mpath}: not a readable manifest ({type(e).__name__})"]
    problems = []
    root = folder.resolve()
    for rel, meta in files.items():
        p = folder / rel
        # An audit: an entry without its hash stopped `ledger check` with an internal error, and
        # one naming ../ was read outside the batch. Each is a problem of the manifest instead.
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
            problems.append(f"{rel}: the manifest gives no SHA-256 for it")
        elif not p.resolve().is_relative_to(root):
            problems.append(f"{rel}: the manifest names a file outside the batch")
        elif not p.is_file():
            problems.append(f"{rel}: missing")
        elif file_sha256(p) != meta["sha256"]:
            problems.append(f"{rel}: sha256 differs from manifest")
    # a file the manifest does not list is no part of the batch, yet a bank reading the folder
    # (payments/*/*/part-*.parquet) would take it
    if unlisted:
        listed = {(folder / rel).resolve() for rel in files} | {mpath.resolve()}
        problems += [f"{f.relative_to(folder).as_posix()}: not listed in the manifest"
                     for f in sorted(folder.rglob("*")) if f.is_file() and f.resolve() not in listed]
    return problems


def write_cancelled_recoveries(out: Path, batch_id: str, cancels: pl.DataFrame) -> Path | None:
    """The recoveries a published batch cancelled (the person entitled to those months again), by
    district, beside its change report: `<out>/reports/<batch_id>/recoveries_cancelled.parquet`, one
    row per cancelled recovery line and person, `amount_fen` what is no longer to recover. Written at
    publication, from what the ledger recorded: a hold or rejection in review takes a cancellation
    out of the draft, and a list written with the draft named it still (audit 18E), while the
    district had been told to recover the money and would go on asking the family (audit 18A).
    None when nothing was cancelled. The same rows give the same bytes (rerun-safe)."""
    if not cancels.height:
        return None
    months = pl.col("to_mi") - pl.col("from_mi") + 1
    rows = (
        cancels.group_by("district_code", "person_key", "line_id")
        .agg(pl.col("from_mi").min(), pl.col("to_mi").max(), months.sum().cast(pl.Int32).alias("months"),
             (pl.col("fen") * months).sum().cast(pl.Int64).alias("amount_fen"))
        .select(pl.lit(batch_id).alias("batch_id"), "district_code", idcard.id_from_key_expr("person_key")
                .alias("person_id"), "line_id", month_date_expr("from_mi").alias("period_from"),
                month_date_expr("to_mi").alias("period_to"), "months", "amount_fen")
        .sort("district_code", "person_id", "line_id")
    )
    return write_file(rows, out / "reports" / batch_id / "recoveries_cancelled.parquet")


def write_file(df: pl.DataFrame, path: Path) -> Path:
    """One Parquet file on its own (a list beside the change reports), written as the batch files
    are (_write: fixed row groups, the same rows the same bytes), under a hidden name first and
    renamed into place once on disk: a reader never finds it half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = f".{path.name}.partial"
    _write(df, path.parent, partial, {})
    durable.sync(path.parent / partial)
    os.replace(path.parent / partial, path)
    durable.sync(path.parent)
    return path


def refused_folder(out: Path, name: str) -> Path:
    """Where a run refused by a check leaves what it found (write_change_report's `refused`)."""
    return out / "reports" / f"refused-{name}"


def write_change_report(out: Path, batch_id: str, changes: pl.DataFrame | None, summary: dict[str, Any],
                        quarantine: pl.DataFrame | None = None, refused: str | None = None,
                        card_holders: pl.DataFrame | None = None) -> Path:
    """Issue 4: what changed since the ledger's last state, per district (Parquet) + a readable summary.

    A run refused by a check writes one too, under `reports/refused-<name>/` (`refused`: why), with
    the extract's quarantined rows (`quarantine`): what staff need to judge the extract before
    fixing it or forcing the run (audit 18B: a refused night left nothing to look at).
    `card_holders` (batch.card_shared): every holder of each card listed as CARD_SHARED, written
    as `card_shared.parquet` when there is one (audit 19B: the district saw its own person and
    not who else the card is paid to)."""
    folder = refused_folder(out, batch_id) if refused else out / "reports" / batch_id
    tmp = folder.with_name(f".{folder.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    files: dict[str, dict[str, Any]] = {}
    lines = [f"REFUSED, nothing drafted: {refused}"] if refused else []
    if quarantine is not None:
        _write(quarantine, tmp, "quarantine.parquet", files)
        lines.append(f"quarantine.parquet: {quarantine.height} rows of the extract that failed checks")
    if changes is not None:
        lines += _change_lines(changes, batch_id, summary, tmp, files)
    if card_holders is not None and card_holders.height:
        _write(card_holders.select(pl.lit(batch_id).alias("batch_id"), pl.all()), tmp, "card_shared.parquet", files)
        lines.append(f"card_shared.parquet: {card_holders['card_no'].n_unique()} card(s) paid to more than one "
                     f"person, every holder of each ({card_holders.height} rows)")
    (tmp / "summary.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # On disk before its name is: staff act on a report, and a power cut must not leave one
    # whose files are there by name and empty.
    durable.sync_tree(tmp)
    finalize_batch(tmp, folder)
    return folder


def _change_lines(changes: pl.DataFrame, batch_id: str, summary: dict[str, Any], tmp: Path,
                  files: dict[str, dict[str, Any]]) -> list[str]:
    """The change report's files per district, written into `tmp`, and its summary's lines."""
    _partitioned(changes, ["district_code"], tmp, "changes", files)
    lines = [f"change report for {batch_id} (as of {summary.get('as_of')}, extract {summary.get('registry_sha256')})"]
    # The report comes ordered by district and change: its counts are sums over slices (two
    # group-bys over the texts of a first quarter's 4.4M new entrants took 0.18 s).
    keys = ["district_code", "change"]
    counts = group_totals(changes, keys, _runs(changes, keys), ["fen"]).rename({"lines": "people"})
    for code in sorted(set(counts["district_code"].to_list())):
        part = counts.filter(pl.col("district_code") == code)
        name = DISTRICTS.get(code, "")
        lines.append(f"{code} {name}: " + "; ".join(
            f"{r['change']} {r['people']} ({r['fen']} fen)" for r in part.iter_rows(named=True)))
    total = counts.group_by("change").agg(pl.col("people", "fen").sum()).sort("change")
    # the batch summary's counts where given: a person listed in two districts counts once there
    counted = summary.get("changes") or {r["change"]: r for r in total.iter_rows(named=True)}
    lines.append("all districts: " + "; ".join(
        f"{k} {v['people']} ({v['fen']} fen)" for k, v in sorted(counted.items())) if counted
                 else "all districts: no changes")
    return lines
