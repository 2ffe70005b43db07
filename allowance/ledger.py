"""The ledger: an embedded DuckDB file and its batch files, the memory of what was paid for every person-month.

`entries` is the append-only journal of runs of months ([from_mi, to_mi] at fen per month): a
published payment line holds PAY entries (+fen), a published recovery line RECOVERY entries
(−fen, an open recovery counts as recovered), a bank failure REVERSAL entries (−fen), the
bank's paying a failed line on a retry RETRY_PAID entries (+fen: the reversal undone), a
recovery of a failed payment CANCEL entries (+fen). What a person-month holds is the sum of its
entries, so paid − reversed − recovered = net, and a run pays exactly entitlement − net (SPEC
§4). `holdings` is that net, kept canonical per person (maximal runs, zeros dropped) and
rewritten in the same transaction as every journal change; `allowance ledger check`
recomputes it from the journal.

A batch's lines, pieces, no-card list and quarantine (millions of rows at a quarter) are not
DuckDB rows: each is one immutable Parquet file in `<ledger>.batches/<batch_id>/`, named by its
SHA-256, written and synced before the transaction that records it in `batch_files` (file,
SHA-256, rows) commits. Every connection sees them as the views `batch_lines`, `batch_pieces`,
`batch_no_card` and `batch_quarantine`. A published batch's
pieces *are* its PAY and RECOVERY entries: `entries` is a view of the published batches'
pieces (kind by sign, recorded when the batch was published) and of `bank_entries` (REVERSAL,
RETRY_PAID and CANCEL rows, in DuckDB). Publishing a batch flips its status in the same transaction that
updates the holdings; nothing is copied. Storing a quarter's 4.4 million lines and pieces as
DuckDB rows cost 6 s of each draft and copying the pieces into a journal table 2 s of each
publication. The ledger is the DuckDB file and that folder together (back them up together);
a file that is missing stops the ledger from opening, one that differs from its hash is
refused at publication and named by `ledger check`.

Concurrency: DuckDB lets one process write a file at a time; a second process waits for the
lock and then fails with "ledger is busy". A draft remembers the ledger sequence number it
was computed from; publishing a draft made before some other change to the ledger is refused,
so two drafts of the same months can never both be paid.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl

from allowance import durable, idcard, log
from allowance.bytescan import hash_columns
from allowance.constants import CHANNELS, PARQUET_ROW_GROUP_ROWS
from allowance.errors import AllowanceError, LedgerBusy, LedgerError, UserError, first_line, os_reason
from allowance.months import fmt, month_date_expr, month_index, today_shanghai
from allowance.reach import reach_by_key
from allowance.rejection import months_before
from allowance.returns import (
    SETTLED,
    day_given,
    days_given,
    latest_notices,
    line_fates,
    settled_clock,
    settled_day,
    unordered_in_file,
)
from allowance.rules import Rules
from allowance.segments import explode_months, net_segments

SCHEMA_VERSION = "6"  # 2: batch lines and pieces as Parquet files; 3: the journal a view of them;
# 4: payees keep hashes of what each person was paid with and a pointer to that line, not its text;
# a batch's lines carry those two hashes (written by the draft: a publication needs no compiled kernel);
# a batch's no-card list and quarantine are files of the batch, like its lines;
# 5: each recovery's months (recovery_months), a draft's cancellations of recoveries still owed
# for months the person is entitled to again (batch_cancels), and each district's approval of a
# draft's list (approvals); 6: the months each paid person's last closed record (a death or hukou
# moved out) entitled (person_ends, batch_ends)
UPGRADABLE = {"3": "4", "4": "5", "5": "6"}  # `allowance ledger upgrade`: the schemas this engine converts, and to what

# A batch's no-card list and quarantine were DuckDB rows in schema 3: 45 000 and 30 000 rows a
# quarter, and a night's 30 000 quarantined rows cost 0.25-0.3 s to checkpoint when the ledger
# closed; as Parquet files they cost milliseconds.
PARTS_AS_FILES = """create table batch_no_card_schema (
    batch_id varchar not null, person_id varchar not null, name varchar, district_code varchar not null,
    period_from date not null, period_to date not null, months integer not null, amount_fen bigint not null
);
create table batch_quarantine_schema (
    batch_id varchar not null, row_no bigint, reason varchar, reasons varchar, person_id varchar,
    name varchar, birth_date varchar, hukou_since varchar, hukou_out_date varchar, death_date varchar,
    district_code varchar, channel varchar, card_no varchar
);"""
# Schema 5. A recovery's months are its line's pieces (fen > 0 here: what is to be got back each
# month), kept beside the register so that a run finds what is still owed without reading batch
# files. A draft that finds a person entitled again to months whose recovery is still owed (open,
# or written off: the money is with the person) does not pay them again: it cancels that much of
# the recovery (batch_cancels), and its publication records the cancellation (CANCEL entries that
# restore the holdings; the register's amount lowered, or the recovery cancelled).
SCHEMA_5_TABLES = """create table recovery_months (
    line_id varchar not null, person_key bigint not null, from_mi integer not null, to_mi integer not null,
    fen bigint not null
);
create table batch_cancels (
    batch_id varchar not null, line_id varchar not null, person_key bigint not null,
    district_code varchar not null, from_mi integer not null, to_mi integer not null, fen bigint not null
);
-- 五 区民政部门资格审定: a district's approval of its list in a draft, by whom and when. A hold or a
-- rejection in that district afterwards withdraws it (the list changed); the events keep both.
create table approvals (
    batch_id varchar not null, district_code varchar not null, approved_by varchar not null,
    approved_at timestamp not null, note varchar
);"""
# Schema 6. The months a closed record entitled (person_ends: from start_mi, the month of the
# person's 65th birthday or of moving in, to end_mi, the month of their death or moving out), as
# the last published batch whose extract had a clean row with an end for them said it. A registry
# drops a closed record in time (the dead, a year on): absent then, the person is reckoned by that
# row, so only held months outside those are recovered (audit 31A: the months before a death
# recovered as NOT_IN_EXTRACT). A draft keeps what its extract changes of it (batch_ends: months
# seen or moved, or an end withdrawn: null), and its publication records that.
# (No primary key: a publication replacing 160 000 rows through DuckDB's index took 0.3-0.9 s at
# 15.35M, 0.07 s without; a person's row is deleted before it is written, and `ledger check`
# counts any repeated.)
SCHEMA_6_TABLES = """create table person_ends (
    person_key bigint not null, start_mi integer not null, end_mi integer not null, batch_id varchar not null
);
create table batch_ends (batch_id varchar not null, person_key bigint not null, start_mi integer, end_mi integer);"""
CANCEL_COLUMNS = ("line_id", "person_key", "district_code", "from_mi", "to_mi", "fen")
PAYEES = """create table payees (
    person_key bigint not null, paid_with ubigint not null, card_with ubigint not null,
    since_batch varchar not null, since_row integer not null
);"""
DDL = """
create table meta (key varchar primary key, value varchar not null);
create table batches (
    batch_id varchar primary key, kind varchar not null, quarter varchar, as_of date not null,
    first_month integer, last_month integer, status varchar not null, base_seq bigint not null,
    registry_sha256 varchar not null, rules_versions varchar not null,
    created_at timestamp not null, published_at timestamp, approved_by varchar,
    lines bigint not null, amount_fen bigint not null, recovery_fen bigint not null,
    summary json not null, manifest json
);
-- batch_lines_schema, batch_pieces_schema, batch_no_card_schema and batch_quarantine_schema are
-- never written: they are the column types of the Parquet files and of the views batch_lines,
-- batch_pieces, batch_no_card and batch_quarantine over them.
create table batch_files (
    batch_id varchar not null, part varchar not null, file varchar not null, sha256 varchar not null,
    rows bigint not null, primary key (batch_id, part)
);
create table batch_lines_schema (
    batch_id varchar not null, line_id varchar not null, line_type varchar not null,
    person_id varchar not null, name varchar, district_code varchar not null, channel varchar,
    card_no varchar, period_from date not null, period_to date not null, months integer not null,
    amount_fen bigint not null, municipal_fen bigint not null, district_fen bigint not null,
    reason varchar not null, cause varchar, rules_version varchar not null,
    paid_with ubigint, card_with ubigint
);
create table batch_pieces_schema (
    batch_id varchar not null, line_id varchar not null, person_id varchar not null,
    from_mi integer not null, to_mi integer not null, fen bigint not null
);
{PARTS_AS_FILES}
create table bank_entries (
    person_id varchar not null, from_mi integer not null, to_mi integer not null, fen bigint not null,
    kind varchar not null, line_id varchar not null, batch_id varchar not null,
    recorded_at timestamp not null
);
-- holdings: people by the exact int64 key of their ID (idcard.order_key_expr; the SQL macro
-- person_id_of(person_key) gives the text back): 4.5 million rows rewritten at each quarter.
create table holdings (
    person_key bigint not null, from_mi integer not null, to_mi integer not null, fen bigint not null
);
create table decisions (
    decision_id bigint primary key, batch_id varchar, person_id varchar not null, district_code varchar,
    action varchar not null, from_month integer, to_month integer, reason varchar not null,
    decided_by varchar not null, decided_at timestamp not null
);
create table recoveries (
    line_id varchar not null, batch_id varchar not null, person_id varchar not null,
    district_code varchar not null, months integer not null, amount_fen bigint not null, cause varchar,
    state varchar not null, changed_at timestamp not null, changed_by varchar, note varchar
);
create table bank_returns (
    line_id varchar not null, status varchar not null, reason varchar, settled_at varchar,
    imported_at timestamp not null, file_sha256 varchar not null
);
-- payees: everyone ever paid (a published payment line), by ID key, and what they were last paid
-- with: paid_with is the stable hash (bytescan.hash_columns, XXH64) of that line's name,
-- district, channel and card, card_with of its channel and card. since_batch and since_row
-- point at the payment line from which the row has held (its row in that published batch's
-- lines file, which never changes); the texts are read from there for the few people a run
-- reports on. A row is rewritten only when paid_with changes. Keeping the four texts here
-- instead cost 3.8 s of a quarter's first publication at 15.35M (DuckDB storing 4.4 million
-- names, IDs, cards and line ids), against 0.5 s for these numbers.
{PAYEES}
{SCHEMA_5_TABLES}
{SCHEMA_6_TABLES}
create table events (
    seq bigint not null, event_at timestamp not null, action varchar not null, batch_id varchar,
    actor varchar, detail json
);
""".replace("{PAYEES}", PAYEES).replace("{PARTS_AS_FILES}", PARTS_AS_FILES).replace(
    "{SCHEMA_5_TABLES}", SCHEMA_5_TABLES).replace("{SCHEMA_6_TABLES}", SCHEMA_6_TABLES)

LOCK_WAIT_SECONDS: float | str = os.environ.get("ALLOWANCE_LOCK_WAIT", "30")  # read where it is waited: lock_wait


def lock_wait(value: float | str) -> float:
    """ALLOWANCE_LOCK_WAIT as seconds. A value that is none (`30s`) is the user's to fix, said in
    one line where it is used: read when the engine loaded, it was a traceback (an audit)."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise UserError(f"ALLOWANCE_LOCK_WAIT={value!r}: not a number of seconds to wait for the ledger (for "
                        "example 30)")
    return seconds

# The Parquet side of a batch: column types exactly those of batch_lines_schema / batch_pieces_schema,
# and in lines and pieces files `person_key`, the exact int64 key of person_id (idcard.parse_ids), which
# the draft has and a publication would otherwise parse from 4.4M IDs twice (0.5-0.8 s). Files written
# before it have none: with_person_key parses it for them, and the views take it by name where it is.
KEYED_PARTS = ("lines", "pieces")
PART_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "lines": {
        "batch_id": pl.String(), "line_id": pl.String(), "line_type": pl.String(), "person_id": pl.String(),
        "name": pl.String(), "district_code": pl.String(), "channel": pl.String(), "card_no": pl.String(),
        "period_from": pl.Date(), "period_to": pl.Date(), "months": pl.Int32(), "periods": pl.String(),
        "amount_fen": pl.Int64(), "municipal_fen": pl.Int64(), "district_fen": pl.Int64(), "reason": pl.String(),
        "cause": pl.String(), "rules_version": pl.String(), "paid_with": pl.UInt64(), "card_with": pl.UInt64(),
        "person_key": pl.Int64(),
    },
    "pieces": {
        "batch_id": pl.String(), "line_id": pl.String(), "person_id": pl.String(), "from_mi": pl.Int32(),
        "to_mi": pl.Int32(), "fen": pl.Int64(), "person_key": pl.Int64(),
    },
    "no_card": {
        "batch_id": pl.String(), "person_id": pl.String(), "name": pl.String(), "district_code": pl.String(),
        "period_from": pl.Date(), "period_to": pl.Date(), "months": pl.Int32(), "amount_fen": pl.Int64(),
    },
    "quarantine": {
        "batch_id": pl.String(), "row_no": pl.Int64(), "reason": pl.String(), "reasons": pl.String(),
        "person_id": pl.String(), "name": pl.String(), "birth_date": pl.String(), "hukou_since": pl.String(),
        "hukou_out_date": pl.String(), "death_date": pl.String(), "district_code": pl.String(),
        "channel": pl.String(), "card_no": pl.String(),
    },
}
# Columns of PART_SCHEMAS that files written before them lack (outputs.PAYMENT_COLUMNS).
OPTIONAL_COLUMNS = ("periods",)
# What a district approves of a line (五 资格审定): all but the batch and line ids, which a redraft renumbers.
LISTED_LINE_COLUMNS = [
    "line_type", "person_id", "name", "district_code", "channel", "card_no", "period_from", "period_to", "months",
    "amount_fen", "municipal_fen", "district_fen", "reason", "cause", "rules_version",
]
# A district's no-card entries and cancelled recoveries in draft $b, for the districts $d: the few
# rows of its list (besides its lines) that review carry compares and lists as they are.
_SMALL_LISTS = {
    "no_card": "select person_id, name, district_code, period_from, period_to, months, amount_fen "
               "from batch_no_card where batch_id = $b and list_contains($d, district_code)",
    "cancelled_recovery": f"select person_id_of(person_key) as person_id, {', '.join(CANCEL_COLUMNS)} "
                          "from batch_cancels where batch_id = $b and list_contains($d, district_code)",
}


def month_runs(pieces: pl.DataFrame) -> pl.DataFrame:
    """Pieces (person_id, from_mi, to_mi, fen; a person's in month order) as maximal runs: one row
    where consecutive pieces of one person pay the same amount in months that follow on."""
    new_run = ((pl.col("person_id") != pl.col("person_id").shift(1)) | (pl.col("fen") != pl.col("fen").shift(1))
               | (pl.col("from_mi") != pl.col("to_mi").shift(1) + 1)).fill_null(True)
    return (pieces.with_columns(_run=new_run.cum_sum())
            .group_by("_run", maintain_order=True)
            .agg(pl.col("person_id").first(), pl.col("from_mi").first(), pl.col("to_mi").last(), pl.col("fen").first())
            .select(pieces.columns))


# A draft's lines and their pieces by district, as slices of its stored files (Ledger._stored_lists).
StoredLists = dict[str, list[tuple[str, pl.DataFrame, pl.DataFrame]]]
# What a rejection from a month reckons again of the lines it keeps (rejection.months_before).
RECKONED_LINE_COLUMNS = ("period_from", "period_to", "months", "periods", "amount_fen", "municipal_fen",
                        "district_fen", "reason", "rules_version")


def _sql_list(paths: list[Path]) -> str:
    """Paths as a SQL list literal of quoted strings."""
    return "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in paths) + "]"


def _run_of(b: dict[str, Any]) -> str:
    """A batch's kind of run and its last due month, as staff name them (`quarterly 2025Q3 to 2025-09`)."""
    last = "no months" if b["last_month"] is None else f"to {fmt(b['last_month'])}"
    return " ".join(x for x in (b["kind"], b["quarter"], last) if x)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def _connect(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + lock_wait(LOCK_WAIT_SECONDS)
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            # Every read that needs an order says so (ORDER BY, or a sort after it); letting
            # DuckDB write and read in any order makes a 4-million-line insert checkpoint in
            # 0.05 s instead of rewriting it for 4-5 s when the ledger closes, and halves its size.
            con.execute("set preserve_insertion_order = false")
            # DuckDB's allocator hands freed memory back to the system on a background thread
            # (within about a second) instead of keeping it: a draft asks DuckDB for a quarter's
            # channel changes, a 0.5-0.65 GB join, and then builds its largest frames in polars.
            con.execute("set allocator_background_threads = true")
            return con
        except duckdb.IOException as e:
            if "lock" not in str(e).lower() or time.monotonic() > deadline:
                if "lock" in str(e).lower():
                    raise LedgerBusy(f"{path}: ledger is busy (another run holds it); try again later") from None
                raise LedgerError(f"{path}: cannot open the ledger ({first_line(e)})") from None
            time.sleep(0.2)
        except duckdb.Error as e:
            raise LedgerError(f"{path}: not a ledger file ({first_line(e)})") from None


PAID_WITH = ("name", "district_code", "channel", "card_no")  # what payees.paid_with hashes, in this order
CARD_WITH = ("channel", "card_no")  # and payees.card_with


def line_hashes(lines: pl.DataFrame) -> dict[str, pl.Series]:
    """paid_with and card_with of each line (see payees), from its texts."""
    return {"paid_with": hash_columns([lines[c] for c in PAID_WITH]),
            "card_with": hash_columns([lines[c] for c in CARD_WITH])}


def payee_rows(lines: pl.DataFrame) -> pl.DataFrame:
    """A batch's payment lines as payees rows (_k, paid_with, card_with, since_row). `lines` is
    the batch's lines file as stored (since_row is a line's row in it), with the hashes the draft
    wrote; a file without them (a draft made before schema 4), or `lines` without them, has them
    computed from its texts."""
    if not {"paid_with", "card_with"} <= set(lines.columns):
        lines = lines.with_columns(**line_hashes(lines))
    pay = with_person_key(lines.select("line_type", "person_id", "paid_with", "card_with", STORED_KEY)
                          .with_row_index("since_row").filter(pl.col("line_type") == "PAYMENT"), "payment line")
    return pay.select("_k", "paid_with", "card_with", pl.col("since_row").cast(pl.Int32))


STORED_KEY = pl.col("^person_key$")  # a frame's person_key in a select, or nothing where it has none


def _who(some: list[str], of: list[str], verb: bool = True) -> str:
    """'that person' (is), or 'k of the n people (e.g. a few, masked)' (are), for a refusal."""
    if len(of) == 1:
        return "that person is" if verb else "that person"
    return (f"{len(some)} of the {len(of)} people (e.g. {', '.join(idcard.mask(p) for p in some[:3])})"
            + (" are" if verb else ""))


def _drafted_with(b: dict[str, Any], rules: Rules | None, from_month: int) -> None:
    """A rejection from a month keeps the months before it in draft `b`, reckoned by the rules
    tables it was made with (rejection.months_before): refused, in one line, without them."""
    drafted_by = json.loads(b["summary"] or "{}").get("rules_sha256")
    if rules is None or drafted_by is None or rules.sha256() != drafted_by:
        given = "no rules tables were given" if rules is None else (
            f"the rules tables given ({rules.sha256()[:12]}) are not those it was drafted with "
            f"({drafted_by[:12]})" if drafted_by else "it was drafted before its rules tables were named")
        raise LedgerError(f"batch {b['batch_id']} keeps the months before --from {fmt(from_month)}, but "
                          f"{given}: give the draft's --rules, or run the draft again; nothing recorded")


def _kept_summary(cut: pl.DataFrame | None, still: pl.DataFrame, named: pl.DataFrame) -> dict[str, Any]:
    """What a rejection leaves of the rejected people in its draft (review's `kept_before`), by
    kind: `cut` the lines kept (line_type, amount_fen, person_id; None for none), `still` the
    cancelled recoveries kept (person_key, from_mi, to_mi, fen a month), `named` their
    person_id and person_key."""
    lines = cut if cut is not None else pl.DataFrame(schema={"person_id": pl.String, "line_type": pl.String,
                                                             "amount_fen": pl.Int64})
    people = set(lines["person_id"]) | set(named.join(still.select("person_key"), on="person_key",
                                                      how="semi")["person_id"])
    return {"people": len(people),
            **{kind: {"lines": int((lines["line_type"] == t).sum()),
                      "amount_fen": int(lines.filter(pl.col("line_type") == t)["amount_fen"].sum())}
               for kind, t in (("payments", "PAYMENT"), ("recoveries", "RECOVERY"))},
            "recoveries_cancelled_fen": int((still["fen"] * (still["to_mi"] - still["from_mi"] + 1)).sum())}


def _refunds(people: int = 0, fen: int = 0, recovery_lines: pl.Series | None = None,
             by_line: dict[str, int] | None = None) -> dict[str, Any]:
    """A bank return's `recovered_but_never_delivered`: how many people, how much, and which
    recoveries (their line ids: staff find them in `recoveries list`; no resident ID is named),
    with how much of it each (`by_line`: _REFUND_ALLOCATION says which recovery a month's is for)."""
    lines = [] if recovery_lines is None else recovery_lines.unique().sort().to_list()
    return {"people": people, "fen": fen, "recovery_lines": lines, **({"by_line": by_line} if by_line else {})}


def _refund_change(before: pl.DataFrame, after: pl.DataFrame) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two reckonings of the refunds by hand (Ledger._refund_allocation), as `_refunds` says them:
    what each recovery is to refund more (a failure's `recovered_but_never_delivered`), and less
    (a retry's `refunds_not_due`)."""
    key = ["_k", "month_idx", "line_id"]
    change = (after.join(before, on=key, how="full", coalesce=True, suffix="_before")
              .select(*key, fen=pl.col("fen").fill_null(0) - pl.col("fen_before").fill_null(0)))

    def said(rows: pl.DataFrame) -> dict[str, Any]:
        by_line = rows.group_by("line_id").agg(pl.col("fen").sum()).sort("line_id")
        return _refunds(rows["_k"].n_unique(), int(rows["fen"].sum()), rows["line_id"],
                        {line: int(fen) for line, fen in by_line.iter_rows()})

    return (said(change.filter(pl.col("fen") > 0)),
            said(change.filter(pl.col("fen") < 0).with_columns(fen=-pl.col("fen"))))


# Published batches in the order they were published (`porder`: batch_id, published_at, and
# `published`, the order); two in one second (published_at keeps seconds) by their publish events.
_PUBLISHED_ORDER = """porder as (
    select b.batch_id, b.published_at, e.seq,
           row_number() over (order by b.published_at, e.seq nulls first, b.batch_id) as published
    from batches b left join (select batch_id, max(seq) as seq from events where action = 'publish' group by 1) e
    using (batch_id) where b.status = 'published')"""

def _taken_back(keys: str | None = None) -> str:
    """SQL: what each recovery takes back, month by month (line_id, person_key, month_idx, fen):
    its months less what cancellations took off it (CANCEL entries naming it: a publication's,
    entitled again, or a bank failure's); a recovery with nothing left has no row. `keys`: a
    query of the person_keys to read, or every recovery's."""
    months_of = f" where m.person_key in ({keys})" if keys else ""
    cancels_of = f" and person_key_of(e.person_id) in ({keys})" if keys else ""
    return f"""
    select line_id, person_key, month_idx, sum(fen) as fen from (
        select m.line_id, m.person_key, unnest(generate_series(m.from_mi, m.to_mi)) as month_idx, m.fen
        from recovery_months m{months_of}
        union all
        select e.line_id, person_key_of(e.person_id), unnest(generate_series(e.from_mi, e.to_mi)), -e.fen
        from bank_entries e join recoveries r using (line_id) where e.kind = 'CANCEL'{cancels_of})
    group by all having sum(fen) > 0"""


# The refunds by hand, person-month by person-month, and the recovery each is for (CTEs, after
# `porder` and `took` of the same people; `keys`: a query of their person_keys). A month's refund
# outstanding is what was brought back to zero in a failed payment's name (Ledger._cancel_months)
# and not undone by a retry; it is taken off what the person's confirmed recoveries got back of
# the month (`took`: _taken_back), first those that asked back a payment still reversed (published after it and
# before its failure, with what recoveries between them took back leaving some of it), the latest
# first (a payment delivered since, which the ledger nets against a refund, made good the oldest);
# then the others, oldest first (audits 29C, 30A, 30C, 30D, 30E).
# A publication and a failure are ordered by the publication's event and the failure's import's
# (written at its entries' instant: `now`, that of an import under way, whose event is not yet
# written, or null). An import's event written by an engine before keeps only the second: a
# publication in it is taken as after the failure, as a night's run publishes after its returns.
# `refund_alloc`: person_key, month_idx, line_id, fen.
_REFUND_ALLOCATION = """
    failed as (select person_key, month_idx, batch_id, max(rev_at) as rev_at, -sum(fen) as fen from (
                  select person_key_of(e.person_id) as person_key, e.line_id, e.batch_id, e.fen,
                         case when e.kind = 'REVERSAL' then e.recorded_at end as rev_at,
                         unnest(generate_series(e.from_mi, e.to_mi)) as month_idx
                  from bank_entries e where e.kind in ('REVERSAL', 'RETRY_PAID')
                        and person_key_of(e.person_id) in ({keys}))
               group by person_key, month_idx, line_id, batch_id having sum(fen) < 0),
    failed_when as (select f.*, f.rev_at >= {now} as current_import,
                           -- its import's event, at the entries' own instant; an event written by an
                           -- engine before that keeps the second: the first in or after it
                           coalesce((select min(v.seq) from events v
                                     where v.action in ('bank_returns', 'notice_dated') and v.event_at = f.rev_at),
                                    (select min(v.seq) from events v
                                     where v.action in ('bank_returns', 'notice_dated', 'upgrade')
                                           and v.event_at >= date_trunc('second', f.rev_at))) as rev_seq
                    from failed f),
    owed_back as (select person_key, month_idx, sum(fen) as refund from (
                     select person_key_of(e.person_id) as person_key, e.fen,
                            unnest(generate_series(e.from_mi, e.to_mi)) as month_idx
                     from bank_entries e
                     where e.kind = 'CANCEL' and person_key_of(e.person_id) in ({keys})
                           and e.line_id not in (select line_id from recoveries))
                  group by all having sum(fen) > 0),
    ranked as (select t.person_key, t.month_idx, t.line_id, t.fen, o.refund, p.published,
                      exists (select 1 from failed_when f join porder q using (batch_id)
                              where f.person_key = t.person_key and f.month_idx = t.month_idx
                                    and p.published > q.published
                                    and (f.current_import is true
                                         or coalesce(p.seq < f.rev_seq, p.published_at < f.rev_at))
                                    -- what recoveries between them took back leaves some of it
                                    and (select coalesce(sum(b.fen), 0) from took b join recoveries rb using (line_id)
                                         join porder pb on pb.batch_id = rb.batch_id
                                         where b.person_key = t.person_key and b.month_idx = t.month_idx
                                               and pb.published > q.published and pb.published < p.published)
                                        < f.fen) as asked
               from took t join recoveries r using (line_id) join porder p on p.batch_id = r.batch_id
               join owed_back o using (person_key, month_idx) where r.state = 'recovered'),
    refund_alloc as (select person_key, month_idx, line_id, least(fen, refund - before) as fen from (
                        select *, coalesce(sum(fen) over (
                            partition by person_key, month_idx
                            order by asked desc, case when asked then -published else published end, line_id
                            rows between unbounded preceding and 1 preceding), 0) as before
                        from ranked)
                     where before < refund)"""

# Each recovery's months still owed something (the register's `months`): its line's months less
# the CANCEL entries naming it (a recovery with none left has no row).
_STILL_OWED_MONTHS = f"select line_id, count(*)::integer as months from ({_taken_back()}) group by line_id"


def _run_fen(runs: pl.DataFrame) -> int:
    """The fen in runs of months (from_mi, to_mi, fen a month)."""
    return int((runs["fen"] * (runs["to_mi"] - runs["from_mi"] + 1)).sum()) if runs.height else 0


def taken_off_owed(owed: pl.LazyFrame, need: pl.LazyFrame, key: str) -> pl.DataFrame:
    """Each month's `need` (key, month_idx, need) taken off what the recoveries still owe for that
    month (`owed`: key, month_idx, line_id, fen, month by month), oldest recovery first: the
    rows of `owed` that give something, with `cancel`, how much (never more than owed or needed)."""
    month = [key, "month_idx"]
    return (
        owed.join(need, on=month)
        .sort(*month, "line_id")
        .with_columns(before=(pl.col("fen").cum_sum() - pl.col("fen")).over(month))
        .with_columns(cancel=pl.min_horizontal("fen", pl.col("need") - pl.col("before")).clip(lower_bound=0))
        .filter(pl.col("cancel") > 0)
        .collect()
    )


def with_person_key(frame: pl.DataFrame, what: str) -> pl.DataFrame:
    """`frame` (rows of a lines or pieces file) with `_k` in place of its `person_key`, which the
    draft wrote; rows of a file written before lines and pieces carried it have theirs parsed from
    person_id (keyed). `ledger check` holds every stored key to its person_id."""
    if "person_key" in frame.columns and frame["person_key"].null_count() == 0:
        return frame.rename({"person_key": "_k"})
    return keyed(frame.drop("person_key", strict=False), what)


def keyed(frame: pl.DataFrame, what: str, strict: bool = True) -> pl.DataFrame:
    """`frame` with `_k`, the exact int64 key of its person_id.

    Every ID in holdings, payees and the journal came from a clean extract row, so there a row
    without a key means a damaged ledger and stops the run (`strict`); a review decision naming
    an ID that is not well formed matches nobody and is dropped.
    """
    out = frame.with_columns(_k=idcard.order_key_expr("person_id"))
    if not strict:
        return out.filter(pl.col("_k").is_not_null())
    bad = out.filter(pl.col("_k").is_null()).height
    if bad:
        raise LedgerError(
            f"{bad} {what} row(s) whose person id is not an 18-character ID; run `allowance ledger check`"
        )
    return out


def _in_force(alias: str) -> str:
    """SQL: the decision row `alias` (of table decisions) has no RELEASE of its person after it."""
    return (f"not exists (select 1 from decisions r where r.action = 'RELEASE' "
            f"and r.person_id = {alias}.person_id and r.decision_id > {alias}.decision_id)")


def held_keys(decisions: pl.DataFrame) -> pl.DataFrame:
    """_k of the people under a HOLD among `decisions` (Ledger.blocked: the decisions in force)."""
    return keyed(decisions.filter(pl.col("action") == "HOLD"), "decisions", strict=False).select("_k")


# Events that never change what is paid or owed: neither a batch id's base nor a stale draft.
NOT_STATE_ACTIONS = "('draft', 'upgrade', 'approve', 'bank_folder', 'bank_files_undelivered', 'bank_files_delivered')"

# No line's end changed (Ledger._apply_fates of nothing: its counts, all naught).
_NO_FATES = pl.DataFrame(schema={"line_id": pl.String, "was_reversed": pl.Boolean, "fate": pl.String})

# The bank's notices on record as line_fates orders them: each with the date staff gave it where
# it had none the engine can order by (`allowance bank-returns date`, an event of its own; the
# notice as recorded stays as the bank sent it, and a file read again matches it as it was).
# The date staff last gave each notice (a later one corrects an earlier: audit 25A).
NOTICE_DATES = """select line_id, status, recorded, settled_at from (
    select detail->>'line_id' as line_id, detail->>'status' as status, detail->>'recorded' as recorded,
           detail->>'settled_at' as settled_at,
           row_number() over (partition by detail->>'line_id', detail->>'status', detail->>'recorded'
                              order by seq desc) as k
    from events where action = 'notice_dated') where k = 1"""
# Each notice on record with the date staff gave it, if any: line_id, status, recorded, given.
DATED_NOTICES = f"""select b.line_id, b.status, b.settled_at as recorded, d.settled_at as given
from bank_returns b left join ({NOTICE_DATES}) d
on d.line_id = b.line_id and d.status = b.status and d.recorded is not distinct from b.settled_at"""
RECORDED_NOTICES = f"""select line_id, status, coalesce(given, recorded) as settled_at from ({DATED_NOTICES})"""
def _not_a_ledger(p: Path, tables: set[str]) -> str:
    """The message for a DuckDB database some other application made, where a ledger is asked for."""
    some = ", ".join(sorted(tables)[:3]) + (", …" if len(tables) > 3 else "")
    return f"{p}: a DuckDB database that is not a ledger (it has table(s) {some})"


# The lines the ledger holds reversed now: a REVERSAL not undone by a RETRY_PAID since.
REVERSED_LINES = """select line_id from bank_entries where kind in ('REVERSAL', 'RETRY_PAID') group by line_id
having sum(fen * (to_mi - from_mi + 1)) < 0"""

# The events after which a draft is stale (its differences were taken against another ledger):
# every one that changes what is paid or owed. Not drafts, upgrades or district approvals; not a
# bank return file that reverses nothing and pays no failed line on a retry (it confirms what the
# ledger holds); not the publication of a
# batch with no line and no cancellation. Found by an audit: with the nightly job importing the
# bank's inbox and publishing its supplement every night, a quarterly draft under district review
# went stale on the first night after payment day, and every redraft (a new batch id) needed
# every district's approval again. "No line" is no row in its lines file, payment or recovery
# (batches.lines counts payment lines only: a recovery-only supplement, as after a death, had
# left an older draft publishable, and the month was recovered twice: found by an audit of this).
STATE_EVENTS = f"""(action not in {NOT_STATE_ACTIONS}
    and not (action in ('bank_returns', 'notice_dated') and coalesce((detail->>'failed')::bigint, 1) = 0
             and coalesce((detail->>'paid_on_retry')::bigint, 0) = 0)
    and not (action = 'publish' and batch_id in (
        select b.batch_id from batches b where b.lines = 0 and b.recovery_fen = 0
        and not exists (select 1 from batch_files f where f.batch_id = b.batch_id and f.part = 'lines'
                        and f.rows > 0)
        and not exists (select 1 from batch_cancels c where c.batch_id = b.batch_id))))"""


class Ledger:
    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection) -> None:
        self.path = path
        self.con = con
        self.files = Ledger.store_of(path)
        self._refresh_views()

    @staticmethod
    def store_of(path: Path) -> Path:
        """Where a ledger keeps its batches' files: `<ledger>.batches` beside it."""
        return path.resolve().parent / (path.name + ".batches")

    # ---- opening -------------------------------------------------------------------------
    @staticmethod
    def create(path: Path | str, opening_month: int) -> Ledger:
        """`ledger open`: the first month this engine pays; earlier months were the old system's."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        con = _connect(p)
        try:
            tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
            if "meta" in tables:
                row = con.execute("select value from meta where key='opening_month'").fetchall()[0]
                raise LedgerError(
                    f"{p}: ledger is already open (opening month {fmt(int(row[0])) if row else '?'}); "
                    "it is opened once"
                )
            if tables:  # another application's database (audit 31B: an internal error, a table "already exists")
                raise LedgerError(f"{_not_a_ledger(p, tables)}; open the ledger at a path of its own")
            con.execute("begin")
            con.execute(DDL)
            con.executemany(
                "insert into meta values (?, ?)",
                [
                    ("schema_version", SCHEMA_VERSION),
                    ("opening_month", str(opening_month)),
                    ("seq", "0"),
                    ("opened_at", _now().isoformat()),
                    ("ledger_id", uuid.uuid4().hex),
                ],
            )
            con.execute("commit")
        except BaseException:
            con.close()
            raise
        return Ledger(p, con)

    @staticmethod
    @contextmanager
    def _opened(p: Path, read_only: bool = False) -> Iterator[tuple[duckdb.DuckDBPyConnection, str]]:
        """A connection to an opened ledger of any schema, and its schema version."""
        if not p.exists():
            raise LedgerError(
                f"{p}: no ledger here; open it first with "
                f"`allowance ledger open --opening-month YYYY-MM --ledger {p}`"
            )
        con = _connect(p, read_only=read_only)
        try:
            tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
            if "meta" not in tables and tables:
                raise LedgerError(_not_a_ledger(p, tables))
            if "meta" not in tables:
                raise LedgerError(
                    f"{p}: ledger was never opened; run "
                    f"`allowance ledger open --opening-month YYYY-MM --ledger {p}`"
                )
            row = con.execute("select value from meta where key = 'schema_version'").fetchall()
            yield con, row[0][0] if row else "?"
        finally:
            con.close()

    @staticmethod
    @contextmanager
    def use(path: Path | str, read_only: bool = False) -> Iterator[Ledger]:
        p = Path(path)
        with Ledger._opened(p, read_only) as (con, version):
            if version in UPGRADABLE:
                raise LedgerError(
                    f"{p}: ledger schema {version}, this engine reads schema {SCHEMA_VERSION}; back up the ledger "
                    f"file and its folder {p.name}.batches, then run `allowance ledger upgrade --ledger {p}`"
                )
            if version != SCHEMA_VERSION:
                raise LedgerError(
                    f"{p}: ledger schema {version}, this engine reads schema {SCHEMA_VERSION}; "
                    "it was made by another version of the engine"
                )
            yield Ledger(p, con)

    @staticmethod
    def upgrade(path: Path | str) -> tuple[str, str, int]:
        """`ledger upgrade`: convert a ledger of an older schema (UPGRADABLE) in one transaction.

        3 → 4: each batch's no-card list and quarantine, DuckDB rows in schema 3, become files
        of the batch; each payee's four texts become their hashes, and its since_line_id the
        batch and row of that line (read from the batch's lines file, checked against its
        SHA-256). The lines and pieces files are not rewritten: the lines of a file without the
        hashes have them computed when they are needed (payee_rows) or when the file is rewritten
        (a review). 4 → 5: the recovery tables, recovery_months filled from the pieces of every
        published recovery line, and the district approvals (none yet). A schema-3 ledger takes
        both steps, in one transaction. Returns (schema found, schema now, recovery months
        mended); a ledger at SCHEMA_VERSION only has its register's months mended, if need be.
        """
        p = Path(path)
        with Ledger._opened(p) as (con, found):
            if found == SCHEMA_VERSION:
                return found, found, Ledger(p, con)._mend_recovery_months()
            if found not in UPGRADABLE:
                raise LedgerError(f"{p}: ledger schema {found}; this engine upgrades only schema "
                                  f"{', '.join(UPGRADABLE)} (to {SCHEMA_VERSION})")
            con.execute("begin")
            touched: set[str] = set()
            try:
                detail: dict[str, Any] = {"from": found, "to": SCHEMA_VERSION}
                version = found
                while version != SCHEMA_VERSION:
                    step = {"3": Ledger._upgrade_3_to_4, "4": Ledger._upgrade_4_to_5,
                            "5": Ledger._upgrade_5_to_6}[version]
                    detail.update(step(p, con, touched))
                    version = UPGRADABLE[version]
                led = Ledger(p, con)
                led.run("update meta set value = ? where key = 'schema_version'", [SCHEMA_VERSION])
                led._bump("upgrade", None, None, detail)
                led.run("commit")
            except BaseException:
                con.execute("rollback")
                raise
            finally:
                for bid in touched:  # files written for a transaction that rolled back
                    Ledger._prune(p.resolve().parent / (p.name + ".batches"), bid, con)
        return found, SCHEMA_VERSION, int(detail.get("recovery_months_mended", 0))

    @staticmethod
    def _upgrade_3_to_4(p: Path, con: duckdb.DuckDBPyConnection, touched: set[str]) -> dict[str, Any]:
        """Inside `upgrade`'s transaction: schema 3's no-card lists, quarantines and payees as schema 4 keeps them."""
        moved = {part: con.sql(f"select * from batch_{part}").pl() for part in ("no_card", "quarantine")}
        con.execute("drop table batch_no_card")
        con.execute("drop table batch_quarantine")
        con.execute(PARTS_AS_FILES)
        con.execute("alter table batch_lines_schema add column paid_with ubigint")
        con.execute("alter table batch_lines_schema add column card_with ubigint")
        led = Ledger(p, con)
        order = {"no_card": ["district_code", "person_id"], "quarantine": ["row_no"]}
        for part, frame in moved.items():
            for bid in frame["batch_id"].unique().sort():
                touched.add(bid)
                rows = frame.filter(pl.col("batch_id") == bid).sort(order[part])
                led.run("insert into batch_files values (?, ?, ?, ?, ?)",
                        [bid, part, *led._write_part(bid, part, rows)])
        led._refresh_views()
        new = led._payees_from_schema_3()
        led.run("drop table payees")
        led.run(PAYEES)
        led.insert_frame("payees", new)
        return {"payees": new.height}

    @staticmethod
    def _upgrade_5_to_6(p: Path, con: duckdb.DuckDBPyConnection, touched: set[str]) -> dict[str, Any]:
        """Inside `upgrade`'s transaction: schema 6's tables, empty. No earlier engine kept the
        ends its extracts showed, so each is known from the first publication after the upgrade
        whose extract shows it. A schema-5 ledger made before the recovery register's months followed
        cancellations has them mended (_recount_recovery_months, as `upgrade` of a current ledger does)."""
        con.execute(SCHEMA_6_TABLES)
        mended = Ledger(p, con)._recount_recovery_months()
        return {"recovery_months_mended": mended} if mended else {}

    @staticmethod
    def _upgrade_4_to_5(p: Path, con: duckdb.DuckDBPyConnection, touched: set[str]) -> dict[str, Any]:
        """Inside `upgrade`'s transaction: schema 5's tables, with the months of every recovery
        published so far (their lines' pieces, checked against their SHA-256)."""
        con.execute(SCHEMA_5_TABLES)
        led = Ledger(p, con)
        # Every published recovery line opened a recovery, and its pieces are its batch's negative ones.
        for (bid,) in led.run("select distinct batch_id from recoveries order by 1"):
            led.part(bid, "pieces", ["fen"])  # checked against its SHA-256 first (a damaged file stops it)
            led._record_recovery_months(bid)
        # Schema 4 met a bank failure of months since recovered with CANCEL entries in the failed
        # payment line's name, and marked every open recovery touching those months cancelled,
        # owing its whole amount still; a written-off one it left owing. Schema 5 takes the months
        # off the recoveries that claim them, in their names (owed_recoveries reads those), and
        # cancels a recovery only once it owes nothing. Left as schema 4 had them, the register
        # owed months the bank never paid, and a later run netted a reissue against them: an
        # audit's resident got 360 yuan less. Each import's CANCEL entries are put again as this
        # engine puts them, the same fen for the same person-months, in the order and at the time
        # they were made: the holdings do not change (an audit: worked out from today's holdings,
        # a month paid again since was cancelled away). What a recovery confirmed as recovered had
        # got back of those months, a refund schema 4 never said, is kept in the upgrade's event
        # for `recoveries refunds`.
        old = keyed(led.df("select person_id, from_mi, to_mi, fen, line_id, recorded_at from bank_entries "
                           "where kind = 'CANCEL' order by recorded_at"), "cancel entries")
        redone, refunds = 0, _refunds()
        if old.height:
            led.run("update recoveries set state = 'open' where state = 'cancelled' and changed_by = 'bank return'")
            led.run("delete from bank_entries where kind = 'CANCEL'")
            for (at,) in old.select("recorded_at").unique(maintain_order=True).iter_rows():
                group = old.filter(pl.col("recorded_at") == at)
                need = explode_months(group.lazy()).group_by("_k", "month_idx").agg(need=pl.col("fen").sum())
                redone += led._cancel_months(need, group.select("line_id").unique(), at)[0]
            # (none before: every CANCEL entry was put again just now)
            put_back = led._refund_allocation(None)
            refunds = _refund_change(put_back.clear(), put_back)[0]
        detail: dict[str, Any] = {
            "recovery_months": int(led.one("select count(*) from recovery_months")[0]),  # type: ignore[index]
            "failed_payment_cancellations_redone": redone}
        if refunds["fen"]:
            detail["recovered_but_never_delivered"] = refunds
        return detail

    def _payees_from_schema_3(self) -> pl.DataFrame:
        """Schema 3's payees (texts and since_line_id) as schema 4 keeps them."""
        old = self.df("select person_key as _k, name, district_code, channel, card_no, since_line_id from payees")
        since = old.select("_k", since_batch=pl.col("since_line_id").str.head(-9), line_id=pl.col("since_line_id"))
        rows = [since.clear().with_columns(since_row=pl.lit(0, pl.UInt32))]
        for (bid,) in since.select("since_batch").unique().sort("since_batch").iter_rows():
            ids = self.part(bid, "lines", ["line_id"]).with_row_index("since_row")
            rows.append(since.filter(pl.col("since_batch") == bid).join(ids, on="line_id", how="left"))
        new = pl.concat(rows).join(old, on="_k")
        if (lost := new.filter(pl.col("since_row").is_null()).height) or new.height != old.height:
            raise LedgerError(f"{self.path}: {lost or old.height - new.height} payee(s) point at no line of their "
                              "batch's lines file; run `allowance ledger check` with the previous engine")
        return new.select(
            pl.col("_k").alias("person_key"),
            paid_with=hash_columns([new[c] for c in PAID_WITH]),
            card_with=hash_columns([new[c] for c in CARD_WITH]),
            since_batch="since_batch", since_row=pl.col("since_row").cast(pl.Int32))

    def close(self) -> None:
        self.con.close()

    # ---- plumbing: DuckDB 2 wants every result consumed before the next statement ----------
    def run(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, params or []).fetchall()

    def one(self, sql: str, params: list[Any] | None = None) -> tuple[Any, ...] | None:
        rows = self.run(sql, params)
        return rows[0] if rows else None

    @contextmanager
    def _registered(self, **frames: pl.DataFrame) -> Iterator[None]:
        """Polars frames visible to SQL by name (zero-copy through Arrow) for the block's duration."""
        for name, frame in frames.items():
            self.con.register(name, frame.to_arrow())
        try:
            yield
        finally:
            for name in frames:
                self.con.unregister(name)

    def insert_frame(self, table: str, frame: pl.DataFrame) -> None:
        """Append a polars frame to a table by column name."""
        names = ", ".join(frame.columns)
        with self._registered(_incoming=frame):
            self.run(f"insert into {table} ({names}) select {names} from _incoming")

    # ---- the Parquet side: batch lines and pieces ----------------------------------------------
    def _refresh_views(self) -> None:
        """(Re)define the views batch_lines and batch_pieces over the files `batch_files` lists."""
        self.run(
            "create or replace temp macro person_id_of(k) as "
            "lpad((k // 11)::varchar, 17, '0') || case when k % 11 = 10 then 'X' else (k % 11)::varchar end"
        )
        # The inverse, for IDs that came from a clean extract row (18 characters, 17 digits + digit/X).
        self.run(
            "create or replace temp macro person_key_of(p) as "
            "left(p, 17)::bigint * 11 + case when right(p, 1) = 'X' then 10 else right(p, 1)::bigint end"
        )
        for part in PART_SCHEMAS:
            files = [self.files / f for (f,) in self.run(
                "select file from batch_files where part = ? order by batch_id", [part])]
            missing = [f for f in files if not f.is_file()]
            if missing:
                raise LedgerError(
                    f"{self.path}: ledger file {missing[0]} is missing ({len(missing)} in all); the ledger is "
                    f"the DuckDB file and the folder {self.files.name} together: restore both from the backup"
                )
            src = f"select * from batch_{part}_schema"
            if files:
                # by name: a ledger upgraded from schema 3 has lines files without the hash columns
                src += f" union all by name select * from read_parquet({_sql_list(files)}, union_by_name = true)"
            try:
                self.run(f"create or replace temp view batch_{part} as {src}")
            except duckdb.Error as e:  # a file cut short or grown: no Parquet footer (an audit: an internal error)
                raise LedgerError(
                    f"{self.path}: a ledger file cannot be read ({first_line(e)}); the ledger is the DuckDB file "
                    f"and the folder {self.files.name} together: restore both from the backup") from None
        published = [self.files / f for (f,) in self.run(
            "select f.file from batch_files f join batches b using (batch_id) "
            "where f.part = 'pieces' and b.status = 'published' order by f.batch_id")]
        src = "select * from bank_entries"
        if published:
            src += (
                " union all select p.person_id, p.from_mi, p.to_mi, p.fen, "
                "case when p.fen > 0 then 'PAY' else 'RECOVERY' end, p.line_id, p.batch_id, b.published_at "
                f"from read_parquet({_sql_list(published)}) p join batches b using (batch_id)"
            )
        self.run(f"create or replace temp view entries as {src}")

    def _write_part(self, batch_id: str, part: str, frame: pl.DataFrame) -> tuple[str, str, int]:
        """One part of a batch as a Parquet file named by its hash, synced to disk: (file, sha256, rows)."""
        # Lines carry the hashes payees keep (see payees) and lines and pieces their person_key:
        # the draft brings them (batch.build_draft; its validation has loaded the compiled
        # kernels, so a publication needs none: numba and its kernels cost 0.3-0.5 s and 176 MB
        # to load). A review of a file written before them gets them here.
        if part == "lines" and not {"paid_with", "card_with"} <= set(frame.columns):
            frame = frame.with_columns(**line_hashes(frame))
        if part in KEYED_PARTS and "person_key" not in frame.columns:
            frame = keyed(frame, part).rename({"_k": "person_key"})
        buf = io.BytesIO()
        # No column statistics: a file holds one batch, so they could only ever skip a whole
        # file for `where batch_id = ?`, and reading its one-value batch_id column instead costs
        # nothing; computing min and max of 4.4 million names, IDs and cards cost 0.25 s a draft.
        # The cast makes a draft's enum codes (batch.LINE_TYPES …) the text every file holds.
        # A review of a draft stored before `periods` existed keeps it without: its lines' periods
        # cannot be told from the lines alone, and null would say "every month" (check_lines).
        schema = {c: t for c, t in PART_SCHEMAS[part].items() if c in frame.columns or c not in OPTIONAL_COLUMNS}
        frame.select(list(schema)).cast(schema).write_parquet(
            buf, compression="zstd", compression_level=1, statistics=False, row_group_size=PARQUET_ROW_GROUP_ROWS)
        data = buf.getbuffer()
        sha = hashlib.sha256(data).hexdigest()
        name = f"{batch_id}/{part}-{sha[:16]}.parquet"
        final = self.files / name
        if not (final.is_file() and final.stat().st_size == len(data)):
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_suffix(".tmp")
            with tmp.open("wb") as f:
                f.write(data)
            durable.sync(tmp)  # its bytes, then its name (below)
            os.replace(tmp, final)
            # The name too, before the transaction that lists it commits: the batch's folder
            # (its file names) and the files folder (a batch folder made just now).
            durable.sync(final.parent)
            durable.sync(self.files)
        return name, sha, frame.height

    def _store_parts(self, batch_id: str, parts: dict[str, pl.DataFrame]) -> None:
        """Inside a transaction: write the parts' files (two at a time) and list them in batch_files."""
        todo = {part: frame for part, frame in parts.items() if frame.height}
        try:
            with ThreadPoolExecutor(2) as pool:
                written = dict(zip(todo, pool.map(lambda kv: self._write_part(batch_id, *kv), todo.items()),
                                   strict=True))
        except OSError as e:  # a full disk, a read-only folder: exit 1 as any OS error, said where
            raise AllowanceError(f"{self.files}: cannot store batch {batch_id}'s files "
                                 f"({os_reason(e)}); nothing was saved: free the space or fix "
                                 "the folder, then run again") from None
        self.run("delete from batch_files where batch_id = ?", [batch_id])
        for part, (name, sha, rows) in written.items():
            self.run("insert into batch_files values (?, ?, ?, ?, ?)", [batch_id, part, name, sha, rows])
        self._refresh_views()

    def _prune_files(self, batch_id: str) -> None:
        """After a commit or a rollback: delete the batch's files that batch_files does not list."""
        Ledger._prune(self.files, batch_id, self.con)

    @staticmethod
    def _prune(files: Path, batch_id: str, con: duckdb.DuckDBPyConnection) -> None:
        folder = files / batch_id
        if not folder.is_dir():
            return
        keep = {f for (f,) in con.execute("select file from batch_files where batch_id = ?", [batch_id]).fetchall()}
        for f in folder.iterdir():
            if f"{batch_id}/{f.name}" not in keep:
                f.unlink(missing_ok=True)
        if not keep:  # a draft whose files were never stored (a full disk): no empty folder left behind
            with contextlib.suppress(OSError):
                folder.rmdir()

    def _read_part_file(self, name: str, sha: str, rows: int, columns: list[str] | None = None) -> pl.DataFrame:
        """A batch file as recorded in batch_files (or those of its columns; `person_key` only where
        the file has it), or a LedgerError saying how it differs."""
        path = self.files / name
        if not path.is_file():
            raise LedgerError(f"{path}: is missing; restore it from the backup")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            raise LedgerError(f"{path}: does not match the SHA-256 the ledger recorded; restore it from the backup")
        if columns is not None and "person_key" in columns:  # asked of every file, written by some (KEYED_PARTS)
            present = pl.read_parquet_schema(io.BytesIO(data))
            columns = [c for c in columns if c != "person_key" or c in present]
        frame = pl.read_parquet(io.BytesIO(data), columns=columns)
        if frame.height != rows:
            raise LedgerError(f"{path}: {frame.height} rows, the ledger recorded {rows}")
        return frame

    def part(self, batch_id: str, part: str, columns: list[str] | None = None) -> pl.DataFrame:
        """A batch's lines or pieces as stored (or those of their columns), in line order,
        checked against their SHA-256."""
        row = self.one("select file, sha256, rows from batch_files where batch_id = ? and part = ?", [batch_id, part])
        if row is None:
            return pl.DataFrame(schema=PART_SCHEMAS[part]).select(columns or pl.all())
        return self._read_part_file(*row, columns=columns)

    # ---- meta ------------------------------------------------------------------------------
    def _meta(self, key: str) -> str:
        row = self.one("select value from meta where key=?", [key])
        if row is None:
            raise LedgerError(f"{self.path}: ledger has no {key}")
        return str(row[0])

    def identity(self, create: bool = False) -> str:
        """This ledger's own id, which its manifests carry (`ledger_id`): a copy of it (its backup)
        has the same one. Made at `ledger open`. A ledger opened by an earlier engine has one derived
        from when it was opened (audit 18D: a random one, made at its first publication, was not in
        a backup taken before it, and that backup restored paid the publication again unseen); it
        is stored at its next publication (`create`)."""
        row = self.one("select value from meta where key = 'ledger_id'")
        if row is not None:
            return str(row[0])
        # A ledger opened by an earlier engine: its id is derived from what it has held since its
        # opening (every backup of it holds the same), so a backup taken before its first
        # publication by this engine still knows that publication's manifest as its own.
        opened = self.one("select value from meta where key = 'opened_at'")
        derived = hashlib.sha256(
            f"{opened[0] if opened else ''}|{self._meta('opening_month')}".encode()).hexdigest()[:32]
        if create:
            self.run("insert into meta values ('ledger_id', ?)", [derived])
        return derived

    @property
    def opening_month(self) -> int:
        return int(self._meta("opening_month"))

    @property
    def seq(self) -> int:
        return int(self._meta("seq"))

    def _rollback(self) -> None:
        """Roll the open transaction back. When DuckDB has already aborted it (a write that failed:
        a full disk under the WAL), the rollback's own "no transaction is active" must not hide
        the error that aborted it (found by an audit: the user saw only the rollback's)."""
        try:
            self.run("rollback")
        except duckdb.Error:
            pass

    def _bump(self, action: str, batch_id: str | None, actor: str | None, detail: dict[str, Any],
              at: dt.datetime | None = None) -> int:
        """Inside a transaction: advance the sequence and log the event (who, when, why). `at`: the
        instant of the change's bank entries, where it made some (_entries_now), so each entry is
        traced to its own event (_REFUND_ALLOCATION orders a failure against publications by it)."""
        seq = self.seq + 1
        self.run("update meta set value=? where key='seq'", [str(seq)])
        self.run(
            "insert into events values (?, ?, ?, ?, ?, ?)",
            [seq, at or _now(), action, batch_id, actor, json.dumps(detail, ensure_ascii=False, default=str)],
        )
        return seq

    # ---- reads -------------------------------------------------------------------------------
    def df(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> pl.DataFrame:
        return self.con.sql(sql, params=params or None).pl()

    def holdings(self) -> pl.DataFrame:
        """The net per person as runs of months: _k (the ID's exact int64 key), from_mi, to_mi, fen."""
        return self.df("select person_key as _k, from_mi, to_mi, fen from holdings")

    def returned_months(self, before: int) -> pl.DataFrame:
        """_k, month_idx: the months before `before` (a run's window) of every payment the bank
        returned (a REVERSAL, retried since or not) that no recovery ever asked back. A run
        reckons them as it does its window's (batch.released_reach): a re-issue is paid however far
        the window has moved past the month meanwhile, and a retry the bank paid after the re-issue
        is recovered (audit 31C: the month paid twice, only listed as overpaid). Where the ledger
        holds what the person is entitled to, nothing comes of it. A month a recovery touched is
        left to the rules that month's recoveries and refunds follow (a re-issue delivered, then
        recovered, is not owed again: audit 30C's story). Only the old reversals are read."""
        return self.df("""
            with r as (select distinct person_key_of(person_id) as _k,
                              unnest(generate_series(from_mi, least(to_mi, ? - 1))) as month_idx
                       from bank_entries where kind = 'REVERSAL' and from_mi < ?)
            select r._k, r.month_idx::integer as month_idx from r
            where not exists (select 1 from recovery_months m where m.person_key = r._k
                              and r.month_idx between m.from_mi and m.to_mi)
            order by 1, 2""", [before, before])

    def reversals(self) -> pl.DataFrame:
        """Months whose payment the bank returned (REVERSAL entries of lines it did not pay on a
        retry since): the next run re-issues them."""
        return self.df(
            f"select distinct person_id, from_mi, to_mi from bank_entries where kind = 'REVERSAL' and line_id in ("
            f"{REVERSED_LINES})")

    def apply_to_holdings(self, delta: pl.DataFrame) -> None:
        """Inside a transaction: add signed runs to the holdings and store them canonical again."""
        if delta.height == 0:
            return
        cols = ["_k", "from_mi", "to_mi", "fen"]
        # Every ID as its exact int64 key: sorting, joining and storing integers, not 18-byte text.
        old = self.holdings()
        # (a person_id only where a file has no person_key: see record_publication)
        delta = with_person_key(delta.select(pl.col("^person_id$"), "from_mi", "to_mi", "fen", STORED_KEY),
                                "new entries").select(cols)
        # The held runs the new entries touch, as one mask over them: a semi and an anti join of a
        # quarter's 4.4 million keys took 0.45-0.5 s, the mask and its two filters 0.25-0.3 s. A
        # fresh ledger holds nothing (the set of keys alone took 0.13-0.2 s to build).
        touched = (old.lazy().select(pl.col("_k").is_in(delta["_k"].implode()).fill_null(False)).collect().to_series()
                   if old.height else pl.Series(dtype=pl.Boolean))
        segs = pl.concat([old.filter(touched), delta])
        merged = net_segments(segs.lazy(), key="_k").collect()
        new = pl.concat([old.filter(~touched).select(cols), merged.select(cols)])
        self.run("delete from holdings")
        self.insert_frame("holdings", new.rename({"_k": "person_key"}))

    def latest_published_quarter_end(self) -> int | None:
        row = self.one(
            "select max(last_month) from batches where status='published' and kind='quarterly'"
        )
        return None if row is None or row[0] is None else int(row[0])

    def latest_published_as_of(self) -> tuple[dt.date, str] | None:
        """The latest as-of date of a published batch, and that batch's id."""
        row = self.one("select as_of, batch_id from batches where status='published' order by as_of desc, batch_id "
                       "limit 1")
        return None if row is None else (row[0], row[1])

    def batch(self, batch_id: str) -> dict[str, Any]:
        cur = self.con.execute("select * from batches where batch_id=?", [batch_id])
        rows = cur.fetchall()
        row = rows[0] if rows else None
        if row is None:
            raise LedgerError(f"{self.path}: unknown batch {batch_id!r}; `allowance batches list` shows them")
        cols = [d[0] for d in cur.description]
        return dict(zip(cols, row, strict=True))

    def blocked(self) -> pl.DataFrame:
        """Active holds and rejections: person_id, from_mi, to_mi, action (SPEC §1.5).

        REJECT (not entitled, 资格审定) takes the months out of the entitlement, so months paid
        are recovered; HOLD (pending a check) freezes them: nothing paid, nothing recovered.
        """
        return self.df(
            """
            select person_id, from_month as from_mi, to_month as to_mi, action from decisions d
            where action in ('HOLD', 'REJECT') and """ + _in_force("d")
        ).cast({"from_mi": pl.Int32, "to_mi": pl.Int32})

    def released(self) -> pl.DataFrame:
        """Holds and rejections since released, for the retroactive clock they stopped
        (batch.released_reach): person_id, from_mi (the first month the decision covered),
        decided_as_of (the as-of of the draft it was placed on) and paid_as_of (the as-of of the
        first batch published after its release: drafted after it, since a release makes every
        draft before it stale, so its base is at least the release's event; null when none has
        been); and for collected_while_decided, action (HOLD, REJECT), decided_at and paid_at (when
        that batch was published). A few rows: people a district decided on."""
        return self.df(
            """
            with d as (  -- each hold or rejection with the first release after it (if any)
                select person_id, from_month, batch_id, action, decided_at, released_by from (
                    select *, min(case when action = 'RELEASE' then decision_id end) over (
                        partition by person_id order by decision_id
                        rows between 1 following and unbounded following) as released_by
                    from decisions)
                where action in ('HOLD', 'REJECT') and released_by is not null),
            rel as (
                select seq, batch_id, actor, event_at, (detail->>'$.decisions[0]')::bigint as first_id,
                       (detail->>'$.decisions[1]')::bigint as last_id
                from events where action = 'review_release'),
            ev as (  -- releases recorded before events named their decisions
                select batch_id, actor, event_at, min(seq) as seq from rel where first_id is null group by all),
            r as (  -- the release's event: the one naming it, or the first of its batch and actor at or
                    -- after its second
                select r.decision_id, coalesce(named.seq, ev.seq) as seq from decisions r
                left join rel named on r.decision_id between named.first_id and named.last_id
                asof left join ev on r.batch_id = ev.batch_id and r.decided_by = ev.actor
                                     and r.decided_at <= ev.event_at
                where r.action = 'RELEASE'),
            -- published batches in the order published: each made every other draft stale (one
            -- publishing nothing does not, so two may share a base: the first published counts)
            pub as (select base_seq, as_of, published_at from (
                        select base_seq, as_of, published_at, row_number() over (
                            partition by base_seq order by published_at, batch_id) as n
                        from batches where status = 'published')
                    where n = 1)
            select d.person_id, d.from_month as from_mi, b.as_of as decided_as_of, pub.as_of as paid_as_of,
                   d.action, d.decided_at, pub.published_at as paid_at
            from d join r on r.decision_id = d.released_by join batches b on b.batch_id = d.batch_id
            asof left join pub on r.seq <= pub.base_seq
            """
        ).cast({"from_mi": pl.Int32, "decided_as_of": pl.Date, "paid_as_of": pl.Date})

    def collected_while_decided(self, released: pl.DataFrame) -> pl.DataFrame:
        """_k, month_idx: each month a recovery confirmed recovered while a hold or rejection of
        the person stood (from the decision to the publication of the first batch after its
        release: `released`, Ledger.released(); or a hold in force, to now) got back (its months
        less its cancellations), that the decision covered (a hold, every month of theirs; a
        rejection, from its month), that no recovery published since took back again (one that
        asked back a payment that then failed took back nothing the district does not refund by
        hand: _REFUND_ALLOCATION), and that
        the ledger holds nothing for now (recovered, not paid again since). allowance/reach.py:
        such a month is paid back on the release where the person is entitled to it, whatever its
        age; while a hold stands, it is not expired. A few rows, if any."""
        none = pl.DataFrame(schema={"_k": pl.Int64, "month_idx": pl.Int32})
        # Inclusive at both ends, to the second the ledger keeps: a recovery marked in the second
        # its hold was placed is taken as marked under it (nothing is paid unless the person is
        # entitled to the month and the ledger holds nothing for it).
        with self._registered(_released=released.select("person_id", "action", "from_mi", "decided_at",
                                                         "paid_at").cast({"paid_at": pl.Datetime("us")})):
            return self.df(
                """
                with d as (select person_key_of(person_id) as person_key, person_id, action, from_mi, decided_at,
                                  paid_at from _released
                           union all  -- a hold in force (audit 29B: its months were reported expired meanwhile)
                           select person_key_of(person_id), person_id, action, from_month, decided_at, null
                           from decisions h where action = 'HOLD' and """ + _in_force("h") + """),
                -- what each recovery of theirs takes back, month by month: its months less what
                -- cancellations took off it (audit 29A: a month cancelled off a collected one, and
                -- held at nothing for another recovery collected before the decision, was taken as its)
                took as (""" + _taken_back("select person_key from d") + """),
                """ + _PUBLISHED_ORDER + """,
                -- the recoveries a hand refund is for (_REFUND_ALLOCATION)
                """ + _REFUND_ALLOCATION.format(keys="select person_key from d", now="null") + """,
                m as (select distinct g.person_key, g.month_idx, d.action, d.from_mi as decided_from
                      from took g join recoveries r using (line_id) join d using (person_key)
                      where r.state = 'recovered' and r.changed_at >= d.decided_at
                            and (d.paid_at is null or r.changed_at <= d.paid_at)
                            -- paid back once: a recovery published since that takes the month back
                            -- again (with no decision standing) is not the decision's doing (audit
                            -- 29B: a month paid back, recovered and collected again, was paid again);
                            -- one whose cancellation took it off again takes nothing (audit 29C), and
                            -- one published in the second of the collection counts as after it, as
                            -- every other bound of this rule counts its second in (29C); one that
                            -- asked back a payment that then failed at the bank took nothing the
                            -- district does not refund by hand (29C: the payback failed after such a
                            -- recovery was collected, and October and November were never paid
                            -- again; 30A: not a later one, that asked back a payment delivered)
                            and not exists (
                                select 1 from took o join recoveries ro using (line_id)
                                join batches b on b.batch_id = ro.batch_id
                                where o.person_key = g.person_key and o.line_id <> g.line_id
                                      and o.month_idx = g.month_idx and b.published_at >= r.changed_at
                                      and (o.person_key, o.month_idx, o.line_id) not in (
                                          select person_key, month_idx, line_id from refund_alloc))),
                c as (select distinct person_key, month_idx from m
                      where action = 'HOLD' or month_idx >= decided_from)
                select c.person_key as _k, c.month_idx from c
                where (select coalesce(sum(h.fen), 0) from holdings h where h.person_key = c.person_key
                       and c.month_idx between h.from_mi and h.to_mi) <= 0
                order by 1, 2
                """).cast(none.schema)  # type: ignore[arg-type]

    def refunds_reported(self) -> pl.DataFrame:
        """Every bank-return import that found months a confirmed recovery had got back of a
        payment the bank then said failed (`recovered_but_never_delivered`): money a family
        returned that it never got, for the district to refund by hand. Kept in the import's
        event, so the list stands after the night that reported it (and in a schema-4 ledger's
        upgrade's, for the imports schema 4 made without saying so). One row per import:
        imported_at, file_sha256 (null for an upgrade), people, fen, recovery_lines (a few rows:
        imports, not people). An import that found the bank paid such a payment on a retry after
        all (`refunds_not_due`) is a row too, its fen negative: not to be refunded. A notice staff
        dated (`bank-returns date`) that changed how its line ended is read as an import; `source`
        says which event each row is (bank_returns, notice_dated, upgrade)."""
        return self.df(
            "select seq, event_at as imported_at, detail->>'$.file_sha256' as file_sha256, action as source, "
            "cast(detail->>'$.recovered_but_never_delivered.people' as bigint) as people, "
            "cast(detail->>'$.recovered_but_never_delivered.fen' as bigint) as fen, "
            "cast(detail->'$.recovered_but_never_delivered.recovery_lines' as varchar[]) as recovery_lines, "
            "(detail->'$.recovered_but_never_delivered.by_line')::varchar as by_line "
            "from events where action in ('bank_returns', 'notice_dated', 'upgrade') "
            "and coalesce(cast(detail->>'$.recovered_but_never_delivered.fen' as bigint), 0) > 0 "
            # an import that found the bank paid such a line on a retry: that much is not due after all
            "union all select seq, event_at, detail->>'$.file_sha256', action, "
            "cast(detail->>'$.refunds_not_due.people' as bigint), -cast(detail->>'$.refunds_not_due.fen' as bigint), "
            "cast(detail->'$.refunds_not_due.recovery_lines' as varchar[]), "
            "(detail->'$.refunds_not_due.by_line')::varchar from events "
            "where action in ('bank_returns', 'notice_dated') "
            "and coalesce(cast(detail->>'$.refunds_not_due.fen' as bigint), 0) > 0 order by seq").drop("seq")

    def refunds_total(self, refunds: pl.DataFrame) -> dict[str, int]:
        """People and fen of `refunds_reported`: each person a refund names once, however many imports
        named them; the fen net of what was found not due after all."""
        # A line is still to refund where what imports reported for it, less what they found not
        # due, is above nothing (a failure, then its retry: audit 21B, "1 people, 0.00 yuan" after a
        # refund withdrawn; audit 25C, "0 people, 180.00 yuan" after one of two payments retried),
        # by each report's fen by line (`by_line`). A report made before by_line existed says no
        # amounts by line: a line any such report names is netted by how many reports name it, as
        # before (audit 25D: shared out equally, two people's refund of 840 yuan left one of them
        # owed 120 after their own 300 was withdrawn). A handful of reports: one per import.
        rows = list(refunds.iter_rows(named=True))
        counted = {line for r in rows if not r.get("by_line") for line in r["recovery_lines"] or []}
        net: dict[str, int] = {}
        for r in rows:
            sign = 1 if r["fen"] > 0 else -1
            by = json.loads(r["by_line"]) if r.get("by_line") else {}
            for line in set(r["recovery_lines"] or []) | set(by):
                net[line] = net.get(line, 0) + sign * (1 if line in counted else abs(int(by.get(line, 0))))
        lines = sorted(line for line, fen in net.items() if fen > 0)
        people = self.one("select count(distinct person_id) from recoveries where list_contains(?, line_id)",
                          [lines]) if lines else (0,)
        return {"people": int(people[0]), "fen": int(refunds["fen"].sum())}  # type: ignore[index]

    # ---- writes ------------------------------------------------------------------------------
    def owed_recoveries(self) -> pl.DataFrame:
        """What is still to be got back, month by month, of every recovery not recovered: open,
        or written off (the money is still with the person). _k, line_id, district_code,
        from_mi, to_mi, fen (> 0 a month): what each recovery takes back (_taken_back: its months
        less what cancellations took off them), in runs of consecutive months of one amount.
        A handful of rows, read without touching a batch file."""
        open_ = "select line_id from recoveries where state in ('open', 'written_off')"
        keys = f"select person_key from recovery_months where line_id in ({open_})"
        return self.df(f"""
            select person_key as _k, line_id, district_code, min(month_idx)::integer as from_mi,
                   max(month_idx)::integer as to_mi, fen
            from (select t.person_key, t.line_id, r.district_code, t.month_idx, t.fen::bigint as fen,
                         t.month_idx - row_number() over (partition by t.line_id, t.fen order by t.month_idx) as run
                  from ({_taken_back(keys)}) t join recoveries r using (line_id)
                  where r.state in ('open', 'written_off'))
            group by person_key, line_id, district_code, fen, run
            order by line_id, from_mi""")

    def save_draft(
        self,
        batch: dict[str, Any],
        lines: pl.DataFrame,
        pieces: pl.DataFrame,
        no_card: pl.DataFrame,
        quarantine: pl.DataFrame,
        cancels: pl.DataFrame | None = None,
        ends: pl.DataFrame | None = None,
    ) -> None:
        """Store a draft batch, replacing an unpublished draft of the same id (rerun-safe).

        `cancels`: recoveries still owed for months the person is entitled to again, cancelled
        instead of paid (batch.cancel_owed_recoveries; schema of batch_cancels, no batch_id).
        `ends`: what the extract changes of person_ends (batch.ends_seen: person_key, start_mi,
        end_mi, null months for an end withdrawn), recorded when the batch is published."""
        bid = batch["batch_id"]
        self.run("begin")
        try:
            row = self.one("select status from batches where batch_id=?", [bid])
            if row is not None and row[0] == "published":
                raise LedgerError(f"batch {bid} is already published")
            self.run("delete from batches where batch_id=?", [bid])
            self.run("delete from batch_cancels where batch_id=?", [bid])
            self.run("delete from batch_ends where batch_id=?", [bid])
            if ends is not None and ends.height:
                self.insert_frame("batch_ends", ends.select(pl.lit(bid).alias("batch_id"), "person_key", "start_mi",
                                                            "end_mi"))
            if cancels is not None and cancels.height:
                self.insert_frame("batch_cancels", cancels.select(pl.lit(bid).alias("batch_id"), *CANCEL_COLUMNS))
            cols = list(batch)
            self.run(
                f"insert into batches ({', '.join(cols)}) values ({', '.join('?' * len(cols))})",
                [batch[c] for c in cols],
            )
            self._store_parts(bid, {"lines": lines, "pieces": pieces, "no_card": no_card, "quarantine": quarantine})
            self._bump("draft", bid, None, {"lines": lines.height})
            self.run("commit")
        except BaseException:
            self._rollback()
            self._refresh_views()
            raise
        finally:
            self._prune_files(bid)
            self._prune_leftovers()

    def _prune_leftovers(self) -> None:
        """The folders of the store no batch lists a file in: a draft killed after writing its
        files, before its commit (an audit: left for ever, with whole IDs and card numbers, 150 MB
        of lines at 15M). This process holds the ledger for writing, so no other draft is under
        way; only folders of Parquet files are removed."""
        if not self.files.is_dir():
            return
        listed = {b for (b,) in self.run("select distinct batch_id from batch_files")}
        for folder in self.files.iterdir():
            if folder.is_dir() and folder.name not in listed and all(
                    f.is_file() and f.suffix in (".parquet", ".tmp") for f in folder.iterdir()):
                shutil.rmtree(folder, ignore_errors=True)

    def record_publication(
        self, batch_id: str, approved_by: str, manifest: dict[str, Any], published_at: dt.datetime,
        payees: pl.DataFrame, out: Path | None = None,
    ) -> None:
        """One transaction: PAY and RECOVERY entries for every line, batch marked published.

        `payees` is payee_rows of the batch's lines file (the publication has read it for the
        bank files); `out`, the folder the bank files go to, is kept in the event (Ledger.published_elsewhere)."""
        self.run("begin")
        try:
            b = self.batch(batch_id)
            if b["status"] == "published":
                self._rollback()
                return
            if self.changed_since(b["base_seq"]):
                raise LedgerError(
                    f"batch {batch_id} was drafted before the ledger last changed; "
                    "rerun the draft and publish the new batch"
                )
            now = published_at
            self._update_payees(batch_id, payees)
            # The batch's pieces become its journal entries when its status turns 'published'
            # below (a payment line's pieces are positive, a recovery line's negative).
            # Their stored keys; their IDs are read only from a file written before it had them
            # (decoding 4.4 million IDs that are not needed took 0.1 s).
            pieces = self.part(batch_id, "pieces", ["from_mi", "to_mi", "fen", "person_key"])
            if "person_key" not in pieces.columns or pieces["person_key"].null_count():
                pieces = self.part(batch_id, "pieces", ["person_id", "from_mi", "to_mi", "fen", "person_key"])
            self.apply_to_holdings(pieces)
            del pieces
            self._record_cancels(batch_id, now)
            self._record_ends(batch_id)
            # Every recovery line opens a recovery (positive fen to get back); it counts as
            # recovered in the net at once, so it is never listed again as new.
            self.run(
                """
                insert into recoveries
                select line_id, batch_id, person_id, district_code, months, -amount_fen, cause, 'open', ?, ?, null
                from batch_lines where batch_id = ? and line_type = 'RECOVERY'
                """,
                [now, approved_by, batch_id],
            )
            self._record_recovery_months(batch_id)
            self.run(
                "update batches set status='published', published_at=?, approved_by=?, manifest=? where batch_id=?",
                [now, approved_by, json.dumps(manifest, ensure_ascii=False), batch_id],
            )
            self._bump("publish", batch_id, approved_by, {"lines": b["lines"], "amount_fen": b["amount_fen"],
                                                          **({"out": str(out.resolve())} if out else {})})
            self._refresh_views()
            self.run("commit")
        except BaseException:
            self._rollback()
            self._refresh_views()
            raise

    def _record_ends(self, batch_id: str) -> None:
        """Inside a publication: the ends its draft's extract showed (batch_ends) become the
        ledger's (person_ends); an end withdrawn (null: the person's row shows none now) goes."""
        self.run("delete from person_ends where person_key in "
                 "(select person_key from batch_ends where batch_id = ?)", [batch_id])
        self.run("insert into person_ends select person_key, start_mi, end_mi, batch_id from batch_ends "
                 "where batch_id = ? and end_mi is not null", [batch_id])

    def person_ends(self) -> pl.DataFrame:
        """_k, start_mi, end_mi: the months each closed record entitled (from the 65th birthday or
        moving in, to the death or moving out) as the last published extract that showed them said
        it (at 15.35M, the year's dead and moved out who were paid, and those dropped since)."""
        return self.df("select person_key as _k, start_mi, end_mi from person_ends")

    def _record_cancels(self, batch_id: str, now: dt.datetime) -> None:
        """Inside a publication: the recoveries its draft cancelled (batch_cancels) are cancelled.
        CANCEL entries (the recovery's line id, this batch) bring the holdings back up for those
        months, and the register owes that much less: a recovery owing nothing more is cancelled."""
        cancels = self.df("select person_key, from_mi, to_mi, fen from batch_cancels where batch_id = ?", [batch_id])
        if cancels.height == 0:
            return
        # Any change to a recovery's state bumps the ledger's seq, so a draft that saw it owed is
        # stale by then; this is the publication's own check, not a user path.
        gone = [r[0] for r in self.run(
            "select distinct c.line_id from batch_cancels c join recoveries r using (line_id) where c.batch_id = ? "
            "and r.state not in ('open', 'written_off') order by 1 limit 3", [batch_id])]
        if gone:
            raise LedgerError(f"batch {batch_id} cancels recoveries no longer owed ({', '.join(gone)}); "
                              "rerun the draft and publish the new batch")
        self.run(
            "insert into bank_entries select person_id_of(person_key), from_mi, to_mi, fen, 'CANCEL', line_id, "
            "batch_id, ? from batch_cancels where batch_id = ?", [now, batch_id])
        self.apply_to_holdings(cancels)
        self._owe_less("select line_id, sum(fen * (to_mi - from_mi + 1)) as fen from batch_cancels "
                       "where batch_id = ? group by line_id", [batch_id], now, "publication",
                       f"entitled again in {batch_id}: ")

    def _owe_less(self, cancelled: str, params: list[Any], now: dt.datetime, by: str, why: str) -> None:
        """The register's side of a cancellation (a publication's, or a bank failure's): each
        recovery in `cancelled` (a query of line_id, fen) owes that much less, and is cancelled
        once it owes nothing; the note says why and how much."""
        self.run(
            f"""
            update recoveries r set amount_fen = r.amount_fen - c.fen,
                   state = case when r.amount_fen <= c.fen then 'cancelled' else r.state end,
                   changed_at = ?, changed_by = ?,
                   -- added to, not replaced: a second cancellation wiped out the first's (audit 20D)
                   note = case when r.note is null or r.note = '' then '' else r.note || '; ' end
                          || ? || c.fen || ' fen not to be recovered'
            from ({cancelled}) c
            where r.line_id = c.line_id
            """,
            [now, by, why, *params],
        )
        # ... and its months are those it still owes something of (an audit found the count it
        # was published with kept beside an amount of fewer months): the CANCEL entries are in.
        self._recount_recovery_months()

    def _recount_recovery_months(self) -> int:
        """Inside a transaction: each recovery's `months` set to those it still owes something of
        (_STILL_OWED_MONTHS), where it differs. Returns how many changed. A register of recovery
        lines, not of people: a few thousand rows a quarter."""
        changed = self.df(f"""
            select r.line_id, coalesce(o.months, 0) as months from recoveries r
            left join ({_STILL_OWED_MONTHS}) o using (line_id) where r.months <> coalesce(o.months, 0)""")
        if changed.height:
            with self._registered(_changed=changed):
                self.run("update recoveries r set months = c.months from _changed c where r.line_id = c.line_id")
        return changed.height

    def _mend_recovery_months(self) -> int:
        """A schema-5 ledger made before the register's `months` followed its cancellations (the
        engine before a3d28db kept the count a recovery was published with): each recovery's
        months set to those it still owes something of, as `ledger check` now expects (an audit
        found such a ledger failing the check, with `upgrade` saying there was nothing to do).
        One transaction, and an `upgrade` event naming how many, when any changed."""
        self.run("begin")
        try:
            mended = self._recount_recovery_months()
            if mended:
                self._bump("upgrade", None, None, {"from": SCHEMA_VERSION, "to": SCHEMA_VERSION,
                                                   "recovery_months_mended": mended})
            self.run("commit")
        except BaseException:
            self._rollback()
            raise
        return mended

    def _record_recovery_months(self, batch_id: str) -> None:
        """Inside a publication (or an upgrade): the months of a batch's recovery lines, its negative
        pieces, for owed_recoveries."""
        row = self.one("select file from batch_files where batch_id = ? and part = 'pieces'", [batch_id])
        if row is None:
            return
        # A file the caller has just read and checked against its SHA-256; only the few negative
        # pieces are decoded whole.
        rec = (pl.scan_parquet(self.files / row[0]).filter(pl.col("fen") < 0)
               .select("line_id", "person_id", "from_mi", "to_mi", "fen", STORED_KEY).collect())
        if rec.height:
            rec = with_person_key(rec, "recovery piece")
            self.insert_frame("recovery_months", rec.select(
                "line_id", pl.col("_k").alias("person_key"), "from_mi", "to_mi", -pl.col("fen")))

    def _draft(self, batch_id: str, refusal: str) -> dict[str, Any]:
        """A batch that a change (a review, an approval) needs still to be a draft."""
        b = self.batch(batch_id)
        if b["status"] != "draft":
            raise LedgerError(f"batch {batch_id} is {b['status']}; {refusal}")
        return b

    def districts_of(self, batch_id: str) -> list[str]:
        """The districts with something in a batch: a payment or recovery line, a no-card entry, a
        recovery cancelled. Each approves its own list (五)."""
        return [r[0] for r in self.run(
            "select district_code from batch_lines where batch_id = ? union "
            "select district_code from batch_no_card where batch_id = ? union "
            "select district_code from batch_cancels where batch_id = ? order by 1", [batch_id] * 3)]

    def approvals(self, batch_id: str) -> list[dict[str, Any]]:
        """The districts that approved this draft's list as it now stands: who, when, note."""
        return self.df("select district_code, approved_by, approved_at, note from approvals where batch_id = ? "
                       "order by district_code", [batch_id]).to_dicts()

    def approve(self, batch_id: str, districts: list[str], by: str, note: str | None) -> list[dict[str, Any]]:
        """五 区民政部门资格审定: districts approve their list in a draft (again: who and when replaced).

        What is paid does not change, so no draft goes stale; the event keeps who, when and why.
        A district with nothing in the batch is refused, and then nothing is recorded."""
        if not by.strip():
            raise LedgerError("an approval needs --by")
        wanted = list(dict.fromkeys(d.strip() for d in districts))
        if not wanted:
            raise LedgerError("an approval needs at least one --district")
        self.run("begin")
        try:
            self._draft(batch_id, "only a draft's lists are approved")
            have = set(self.districts_of(batch_id))
            if stray := [d for d in wanted if d not in have]:
                raise LedgerError(f"batch {batch_id} has nothing for district {', '.join(stray)}; nothing approved "
                                  f"(its districts: {', '.join(sorted(have)) or 'none'})")
            rows = pl.DataFrame({"batch_id": batch_id, "district_code": wanted, "approved_by": by,
                                 "approved_at": _now(), "note": note},
                                schema={"batch_id": pl.String, "district_code": pl.String, "approved_by": pl.String,
                                        "approved_at": pl.Datetime("us"), "note": pl.String})
            with self._registered(_approved=rows):
                self.run("delete from approvals where batch_id = ? and district_code in "
                         "(select district_code from _approved)", [batch_id])
                self.run("insert into approvals select * from _approved")
            self._bump("approve", batch_id, by, {"districts": wanted, "note": note})
            self.run("commit")
        except BaseException:
            self._rollback()
            raise
        return self.approvals(batch_id)

    def carry_approvals(self, batch_id: str, from_batch: str, by: str, with_changes: bool = False) -> dict[str, Any]:
        """五 区民政部门资格审定 over a redraft: the approvals of an earlier draft of the same run
        (kind, quarter, last due month) stand for every district whose list in this draft is the
        same, line for line. A publication between them (a nightly supplement paying a newcomer
        in Pudong) makes the earlier draft stale, and its redraft would otherwise need all sixteen
        districts to approve again; here only the districts whose list changed do.

        A list is the same when its payment and recovery lines (all but the batch and line ids:
        person, name, channel, card, period, months, amounts, reason, cause, rules version) and
        their months are the same row for row, and its no-card entries and cancelled recoveries
        the same rows (see _lists_differ); the approval keeps its approver and time, and its note
        says where it came from. Districts already approved in this draft are left as they are.
        Approving changes nothing paid, so no draft goes stale; the event keeps who carried them.
        Returns carried, changed (approved before, list different: approve again), emptied
        (approved before, nothing left in this draft: nothing to approve), not_yet (nothing to
        carry), already (approved here before); with `with_changes`, also `changes`: the rows of
        the changed and emptied lists that differ, on either side (_changed_rows), for the
        districts to review again only what changed."""
        if not by.strip():
            raise LedgerError("carrying approvals needs --by")
        if from_batch == batch_id:
            raise LedgerError(f"{batch_id} is the draft the approvals would be carried to; name the earlier draft")
        self.run("begin")
        try:
            new = self._draft(batch_id, "only a draft's lists are approved")
            old = self._draft(from_batch, "its lists were published as approved; approvals are carried from an "
                                          "earlier draft of the same run")
            # The same kind of run up to the same month (a redraft some days later may start its
            # retroactive window a month later: the lists are compared whatever their months).
            if any(old[k] != new[k] for k in ("kind", "quarter", "last_month")):
                raise LedgerError(f"{from_batch} ({_run_of(old)}) is not a draft of the same run as {batch_id} "
                                  f"({_run_of(new)}); nothing carried")
            have = self.districts_of(batch_id)
            here = {a["district_code"] for a in self.approvals(batch_id)}
            before = {a["district_code"]: a for a in self.approvals(from_batch)}
            asked = [d for d in have if d in before and d not in here]
            differs, one, other = self._lists_differ(from_batch, batch_id, asked) if asked else (set(), {}, {})
            carried = [d for d in asked if d not in differs]
            # approved before, and nothing of theirs left here (everyone moved, died, was held):
            # said, and listed, not silently dropped (an audit)
            emptied = sorted(d for d in before if d not in have)
            if carried:
                rows = pl.DataFrame(
                    [{"batch_id": batch_id, "district_code": d, "approved_by": before[d]["approved_by"],
                      "approved_at": before[d]["approved_at"],
                      "note": f"carried from {from_batch} by {by}: list unchanged"
                              + (f" ({before[d]['note']})" if before[d]["note"] else "")} for d in carried],
                    schema={"batch_id": pl.String, "district_code": pl.String, "approved_by": pl.String,
                            "approved_at": pl.Datetime("us"), "note": pl.String})
                self.insert_frame("approvals", rows)
            # What was compared, carried or not, so that the redraft's hint stops naming it (an
            # audit); compared again with nothing carried and nothing approved since, not again.
            if carried or ((asked or emptied) and not self._carried_since_approved(batch_id, from_batch)):
                self._bump("approve", batch_id, by, {"districts": carried, "carried_from": from_batch,
                                                     "changed": sorted(differs), "emptied": emptied})
            self.run("commit")
        except BaseException:
            self._rollback()
            raise
        got: dict[str, Any] = {"carried": carried, "changed": sorted(differs), "emptied": emptied,
                               "not_yet": [d for d in have if d not in before and d not in here],
                               "already": [d for d in have if d in here]}
        if with_changes:
            if emptied:
                one = {**one, **self._stored_lists(from_batch, emptied)}
            got["changes"] = self._changed_rows(from_batch, batch_id, sorted([*differs, *emptied]), one, other)
        return got

    def _carried_since_approved(self, batch_id: str, from_batch: str) -> bool:
        """Were `from_batch`'s approvals compared with `batch_id`'s lists (carried or not) after
        its last approval?"""
        row = self.one(
            "select count(*) from events e where e.action = 'approve' and e.batch_id = ? "
            "and e.detail->>'carried_from' = ? and e.seq > coalesce((select max(seq) from events a "
            "where a.action = 'approve' and a.batch_id = ?), 0)", [batch_id, from_batch, from_batch])
        return bool(row and row[0])

    def earlier_approvals(self, batch_id: str) -> dict[str, Any] | None:
        """The latest other draft of the same run as `batch_id` (kind, quarter, last month) with
        district approvals this draft has not, and not yet carried from: {"from": its id,
        "districts": theirs}; else None. A redraft's report names it, with the command that
        carries them (carry_approvals); once carried, the districts left are to approve again."""
        rows = self.run(
            "select o.batch_id, list(a.district_code order by a.district_code) from batches n "
            "join batches o on o.kind = n.kind and o.quarter is not distinct from n.quarter "
            "and o.last_month is not distinct from n.last_month and o.batch_id <> n.batch_id and o.status = 'draft' "
            "join approvals a on a.batch_id = o.batch_id "
            "where n.batch_id = ? and a.district_code not in (select district_code from approvals where batch_id = ?) "
            "group by o.batch_id, o.created_at order by o.created_at desc, o.batch_id desc", [batch_id, batch_id])
        # Compared since its last approval (an approval there afterwards is new: named again),
        # or nothing of those districts in this draft: nothing to carry (audits).
        have: set[str] | None = None  # this draft's districts, asked once, if at all
        for old, districts in rows:
            if self._carried_since_approved(batch_id, old):
                continue
            have = set(self.districts_of(batch_id)) if have is None else have
            if mine := [d for d in districts if d in have]:
                return {"from": old, "districts": mine}
        return None

    def _lists_differ(self, a: str, b: str, districts: list[str]) -> tuple[set[str], StoredLists, StoredLists]:
        """Of `districts`, those whose list differs between drafts a and b (see carry_approvals).

        Lines and their months are compared in the order stored, the line order (type, district,
        channel, person): a district's lines of one type are one run of rows, its months the
        pieces of those lines, so each is compared as slices, without a copy. Two equal lists
        have their rows in the same order, so rows out of step could only make a list count as
        changed, never the reverse. (DuckDB's EXCEPT ALL over these columns took 47 s at 15.35M,
        and a polars join and partition of them 12 s and 5.4 GB.) Returns the districts, and the
        two drafts' slices (for _changed_rows)."""
        one, other = self._stored_lists(a, districts), self._stored_lists(b, districts)
        # months as each person's runs of one amount, however cut into pieces (a draft that cancels
        # a recovery stores its person's pieces month by month; the same months a redraft without
        # the cancellation stores as one piece: audit 27C), compared so only where the pieces differ
        differs = {d for d in districts if len(one.get(d, [])) != len(other.get(d, []))
                   or not all(x[0] == y[0] and x[1].equals(y[1])
                              and (x[2].equals(y[2]) or month_runs(x[2]).equals(month_runs(y[2])))
                              for x, y in zip(one.get(d, []), other.get(d, []), strict=True))}
        # The no-card entries and the cancelled recoveries: a few rows, counted with their repeats.
        for sql in _SMALL_LISTS.values():
            p, q = sql.replace("$b", "$x"), sql.replace("$b", "$y")
            differs |= {r[0] for r in self.con.execute(
                f"select distinct district_code from (({p} except all {q}) union all ({q} except all {p}))",
                {"x": a, "y": b, "d": districts}).fetchall()}
        return differs, one, other

    def _changed_rows(self, a: str, b: str, districts: list[str], one: StoredLists, other: StoredLists
                      ) -> pl.DataFrame:
        """What differs in `districts`' lists between drafts a (approved) and b (now), row by row:
        side (approved / now), district_code, person_id, what (line, months, no_card,
        cancelled_recovery) and the line's details where it is one. A row on one side only is
        listed there; a changed line is listed on both sides."""
        schema = {"side": pl.String, "district_code": pl.String, "person_id": pl.String, "what": pl.String,
                  **{c: PART_SCHEMAS["lines"][c] for c in LISTED_LINE_COLUMNS if c not in ("district_code",
                                                                                           "person_id")}}
        found = [pl.DataFrame(schema=schema)]
        none = {at: pl.DataFrame(schema={c: PART_SCHEMAS[part][c] for c in cols}) for at, part, cols in (
            (1, "lines", LISTED_LINE_COLUMNS), (2, "pieces", ("person_id", "from_mi", "to_mi", "fen")))}
        for d in districts:
            for what, at in (("line", 1), ("months", 2)):
                x, y = (pl.concat([r[at] for r in side[d]]) if side.get(d) else none[at] for side in (one, other))
                if what == "months":  # however cut into pieces (_lists_differ)
                    x, y = month_runs(x), month_runs(y)
                for side, mine, theirs in (("approved", x, y), ("now", y, x)):
                    only = mine.join(theirs, on=mine.columns, how="anti", nulls_equal=True)
                    found.append(only.select([pl.lit(side).alias("side"), pl.lit(d).alias("district_code"),
                                              "person_id", pl.lit(what).alias("what"),
                                              *[c for c in only.columns if what == "line"
                                                and c not in ("district_code", "person_id")]]))
        if districts:
            for what, sql in _SMALL_LISTS.items():
                for side, p, q in (("approved", "$x", "$y"), ("now", "$y", "$x")):
                    rows = self.con.sql(f"{sql.replace('$b', p)} except all {sql.replace('$b', q)}",
                                        params={"x": a, "y": b, "d": districts}).pl()
                    if what == "cancelled_recovery":  # its months and what of them is cancelled
                        rows = rows.with_columns(period_from=month_date_expr("from_mi"),
                                                 period_to=month_date_expr("to_mi"),
                                                 months=pl.col("to_mi") - pl.col("from_mi") + 1).with_columns(
                            amount_fen=pl.col("fen") * pl.col("months"))
                    found.append(rows.select(pl.lit(side).alias("side"), "district_code", "person_id",
                                             pl.lit(what).alias("what"),
                                             *[c for c in ("name", "period_from", "period_to", "months",
                                                           "amount_fen") if c in rows.columns]))
        rows = pl.concat(found, how="diagonal_relaxed").select(list(schema)).unique(maintain_order=True)
        # a line that changed changes its months too: its person is listed once, by the line
        lined = rows.filter(pl.col("what") == "line").select("district_code", "person_id")
        rows = rows.filter(pl.col("what") != "months").vstack(
            rows.filter(pl.col("what") == "months").join(lined, on=["district_code", "person_id"], how="anti"))
        return rows.sort("district_code", "person_id", "what", "side")

    def _stored_lists(self, batch_id: str, districts: list[str]) -> StoredLists:
        """A draft's lines and pieces by district, as (line type, its lines, their pieces) slices of
        the stored files in their order, without batch or line ids (_lists_differ)."""
        lines = self.part(batch_id, "lines", [*LISTED_LINE_COLUMNS, "line_id"])
        pieces = self.part(batch_id, "pieces", ["line_id", "person_id", "from_mi", "to_mi", "fen"])
        per_line = pieces["line_id"].rle().struct.unnest()
        if not per_line["value"].equals(lines["line_id"]):
            raise LedgerError(f"batch {batch_id}: its pieces are not in its lines' order; nothing carried")
        ends = np.cumsum(per_line["len"].to_numpy(), dtype=np.int64)
        runs = (lines.select(r=pl.struct("line_type", "district_code").rle_id()).with_row_index("at")
                .group_by("r", maintain_order=True).agg(pl.col("at").first(), n=pl.len()))
        lines, pieces = lines.drop("line_id"), pieces.drop("line_id")
        out: dict[str, list[tuple[str, pl.DataFrame, pl.DataFrame]]] = {}
        types, codes = lines["line_type"], lines["district_code"]
        for at, n in runs.select("at", "n").iter_rows():  # a run per line type and district: a few dozen
            line_type, district = types[at], codes[at]
            if district in districts:
                first = int(ends[at - 1]) if at else 0
                out.setdefault(district, []).append(
                    (line_type, lines.slice(at, n), pieces.slice(first, int(ends[at + n - 1]) - first)))
        return out

    def review(self, batch_id: str, person_id: str | list[str], action: str, reason: str, by: str,
               from_month: int | None = None, rules: Rules | None = None) -> dict[str, Any]:
        """五 区民政部门资格审定: hold, reject or release named people, with who and why.

        A rejection covers the months from `from_month` (a month of the draft's window; by default
        its first): "not entitled since December" leaves the months before it entitled, where a
        rejection from the window's start recovered every month paid in it (audit 26B). The draft
        keeps those months of theirs, under the same line ids (`rejection.months_before`, reckoned
        by `rules`, the tables the draft was made with): left to the next run, a month at the
        window's start expired once that run's window had moved on (audit 26I).

        HOLD and REJECT take each person out of this draft (lines, pieces, no-card entry, recoveries
        it would cancel; a rejection from a month, their months from it) and out of every later run
        until a RELEASE, and withdraw their districts'
        approvals of the list; the draft stays publishable, other drafts go stale.
        A list of people is one decision each but one transaction and one rewrite of the batch's
        files (a rewrite at 15.35M takes about 3 s, so a district's list is not 3 s a person);
        if any of them has nothing in the batch to hold or reject, nothing is recorded.
        """
        typed = list(dict.fromkeys([person_id] if isinstance(person_id, str) else person_id))
        if not reason.strip() or not by.strip():
            raise LedgerError("a review decision needs --reason and --by")
        if not typed:
            raise LedgerError("a review decision needs at least one person")
        # Each ID as the extract's are normalised (a legacy 15-digit one upgraded): a typo or a
        # legacy form must not record a decision that matches nobody.
        norm = idcard.normalized_typed(typed)
        if bad := norm.filter(~pl.col("ok"))["typed"].to_list():
            raise LedgerError(f"{_who(bad, typed)} not a valid resident ID (18 characters, the right check "
                              "character); nothing recorded")
        ids = list(dict.fromkeys(norm["person_id"].to_list()))
        named_all = ids
        already: list[str] = []
        b0 = self.batch(batch_id)
        # What the draft lists for each person starts at its window's first month, or earlier for
        # someone a released decision's stopped clock reaches back for (allowance/reach.py): a
        # decision covers from there (audit 28A: a rejection on the run paying such a month left it
        # to expire, and a redraft under it did not pay it), and `--from` may name such a month
        # (audit 28C: "not entitled since August" was refused on a draft paying August).
        named_all_keys = pl.DataFrame({"person_id": ids}, schema={"person_id": pl.String}).with_columns(
            person_key=idcard.order_key_expr("person_id"))
        decisions_now = self.blocked()  # holds and rejections in force, asked once (the ledger is locked)
        with self._registered(_review_ids=named_all_keys):
            listed, listing = self._listed_from(batch_id, b0, named_all_keys, decisions_now)
        since = dict(listed.select("person_id", "listed_from").iter_rows())
        lowest = dict(listed.select("person_id", "earliest").iter_rows())
        lines_from = dict(listed.select("person_id", "lines_from").iter_rows())
        if from_month is not None:
            if action != "REJECT":
                raise LedgerError("--from is for a rejection: a hold freezes the draft's window whole, and a "
                                  "release lifts the decision whole")
            # Each person's own earliest (audit 28D: one person's early month let a list reject
            # another from months the draft never listed for them), or the month a rejection of
            # theirs stands from (the same decision run again is taken, below).
            rejected_from = {q: int(f) for q, f in decisions_now.filter(pl.col("action") == "REJECT").select(
                "person_id", "from_mi").iter_rows() if q in since and f is not None}
            earliest = {p: min(lowest[p], rejected_from.get(p, lowest[p])) for p in ids}
            # (someone held is refused below, saying so: audit 28E had them told of months)
            held_now = set(decisions_now.filter(pl.col("action") == "HOLD")["person_id"].to_list())
            outside = [p for p in ids if p not in held_now
                       and not earliest[p] <= from_month <= (b0["last_month"] or 0)]
            if b0["first_month"] is None or outside:
                window = (f"{fmt(earliest[outside[0]])} … {fmt(b0['last_month'])}" if b0["first_month"] is not None
                          else "no months")
                whose = "" if len(ids) == 1 else f" for {_who(outside, named_all, verb=False)}"
                raise LedgerError(f"--from {fmt(from_month)} is not a month of batch {batch_id}'s window{whose} "
                                  f"({window}); nothing recorded")
            if from_month > b0["first_month"]:
                # The months before it stay in the draft, reckoned by the tables it was made with.
                _drafted_with(b0, rules, from_month)
        if action in ("HOLD", "REJECT"):
            # A decision run again (killed after its commit, a script rerun) finds it taken: it
            # said the person had no line, as if the name were wrong (an audit). Taken means the
            # same decision, unreleased, from this draft's first month on (a hold from a later
            # month does not cover this draft's earlier ones: a second audit), and then nothing
            # of theirs is in this draft. Said whatever became of the draft since (published,
            # stale): nothing is recorded, and a rerun of a decision that was taken succeeds.
            # (from the first month the draft lists for them: audit 28C, a plain rejection of someone
            # rejected from the window's first month, whose earlier months the draft still paid, was
            # "already")
            standing = {p: f for p, f in decisions_now.filter(
                (pl.col("action") == action) & pl.col("to_mi").is_null()).select("person_id", "from_mi").iter_rows()}
            taken = {p for p in ids if p in standing
                     and standing[p] <= (from_month if from_month is not None else since[p])}
            already = [p for p in ids if p in taken]
            ids = [p for p in ids if p not in taken]
            if not ids:
                return {**self.batch(batch_id), "recovered_next_run": 0, "kept_before": None, "approvals_withdrawn": [],
                        "people": named_all, "already": already}
        if action == "RELEASE":
            # A release run again (killed after its commit, a script rerun) finds the person released
            # here already: said so, exit 0, as a hold or rejection run again is (audit 31B: refused as
            # "not held or rejected"). Someone never decided, or released on another draft, is still
            # refused below.
            last = self.run("select person_id, action, batch_id from decisions where list_contains(?, person_id) "
                            "qualify row_number() over (partition by person_id order by decision_id desc) = 1", [ids])
            decided_now = set(decisions_now["person_id"].to_list())
            already = [p for p, a, bid in last if a == "RELEASE" and bid == batch_id and p not in decided_now]
            ids = [p for p in ids if p not in already]
            if not ids:
                return {**self.batch(batch_id), "recovered_next_run": 0, "kept_before": None, "approvals_withdrawn": [],
                        "people": named_all, "already": already}
        if action == "REJECT" and from_month is None and (
                back := [p for p in ids if lines_from[p] < since[p]]):
            # A month paid back before the person's due months (a recovery collected while an
            # earlier decision stood: allowance/reach.py) is not one a plain rejection covers, and
            # the redraft under it pays the month: taken out here, the two would differ. --from
            # keeps it, as it keeps every month before it.
            raise LedgerError(f"batch {batch_id} pays {_who(back, named_all, verb=False)} back months before the "
                              f"window (a recovery collected while an earlier decision stood); reject --from "
                              f"{fmt(since[back[0]])} with --rules to keep them theirs, or hold; nothing recorded")
        self.run("begin")
        try:
            # a release (or a decision) is recorded against a draft: say which (audit 25B: staff releasing
            # a hold on the published batch that placed it were told only that it was published)
            b = self._draft(batch_id, "only a draft can be reviewed: record it against the latest draft "
                                      "(`allowance batches list`); a hold or rejection stands until released there")
            if action in ("HOLD", "REJECT") and self.changed_since(b["base_seq"]):
                # A hold or a rejection rebases the draft (it stays publishable): on a draft made
                # before the ledger last changed, that would let it be published after all, and
                # pay again what was paid since (found by an audit: 17 355 person-months twice).
                raise LedgerError(f"batch {batch_id} was drafted before the ledger last changed; rerun the draft "
                                  f"and review the new batch; nothing recorded")
            if action == "RELEASE":
                # A release lifts a hold or a rejection; one that lifts nothing is a mistake.
                blocked = set(decisions_now["person_id"].to_list())
                if free := [p for p in ids if p not in blocked]:
                    raise LedgerError(f"{_who(free, named_all)} not held or rejected; nothing to release")
            # The named people, visible to SQL while they are looked up and taken out of the draft.
            named = pl.DataFrame({"person_id": ids}, schema={"person_id": pl.String}).with_columns(
                person_key=idcard.order_key_expr("person_id"))  # well formed: normalised and checked above
            with self._registered(_review_ids=named):
                # Every list each named person is in (a move between districts puts a line in one
                # and a cancelled recovery in another); a decision records the first district.
                lists = listing.filter(pl.col("person_id").is_in(ids)).select("person_id", "district_code").unique()
                found = dict(lists.group_by("person_id").agg(pl.col("district_code").min()).iter_rows())
                missing = [p for p in ids if p not in found]
                if action != "RELEASE":
                    # held named in a rejection (or rejected in a hold): no line, being decided
                    # otherwise; said so, not as if the ID were wrong (an audit). Someone rejected
                    # from a month keeps the draft's months before it (lines found), and is not held
                    # either: a release would lift both, the rejection unseen (audit 27A).
                    decided = {p: (a, f) for p, a, f in
                               decisions_now.select("person_id", "action", "from_mi").iter_rows()}
                    # A rejection from an earlier month than one standing narrows it (the rejection
                    # from a later month covers no month before it, so it is not taken above), even
                    # when the draft has nothing of theirs left: the next run recovers the months
                    # between (audit 27C: refused as "rejected already" then, and the release it
                    # asked for made the draft stale).
                    # Only with --from, on the draft that rejection was recorded against (audit 27D: a
                    # plain rejection, re-entered on a night's draft that never listed them, widened
                    # a rejection from October to the window's start, recovering months staff had
                    # said stay theirs).
                    here = set(self.df("select person_id from decisions where batch_id = ? and action = 'REJECT' "
                                       "and list_contains(?, person_id)", [batch_id, missing])["person_id"].to_list()
                               ) if action == "REJECT" and missing else set()
                    narrowed = {p for p in missing if p in here and decided.get(p, ("",))[0] == "REJECT"
                                and from_month is not None}
                    # A rejection standing from a later month is widened only by one given --from,
                    # listed or not: a plain one re-entered would recover months staff said stay theirs.
                    # (A hold from later months is extended by a hold on a draft with earlier ones.)
                    if other := [p for p in ids if p in decided and p not in narrowed
                                 and (p in missing or decided[p][0] != action
                                      or (action == "REJECT" and from_month is None))]:
                        action_then, since = decided[other[0]]
                        was = "held" if action_then == "HOLD" else "rejected"
                        # counted among all named (audit 26G: "that person" for a file of two, one
                        # of them taken already), and said from which month it stands
                        # where --from would do (listed here, or rejected on this draft; audit 27E:
                        # it pointed at a draft published since)
                        # (for every one of them: audit 27F had it judged on the first)
                        widen = (", or give --from an earlier month" if action == "REJECT" and all(
                            decided[q][0] == "REJECT" and (q not in missing or q in here) for q in other) else "")
                        raise LedgerError(f"{_who(other, named_all)} {was} already"
                                          f"{f' (from {fmt(int(since))})' if since else ''}: release first to "
                                          f"{action.lower()}{widen}; nothing recorded")
                    if missing := [p for p in missing if p not in narrowed]:
                        raise LedgerError(f"batch {batch_id} has no line for {_who(missing, named_all, verb=False)}; "
                                          f"nothing to {action.lower()}")
                    if narrowed:  # recorded in the district of the rejection they narrow
                        found.update(self.df(
                            "select person_id, last(district_code order by decision_id) as district_code "
                            "from decisions where action = 'REJECT' and list_contains(?, person_id) group by 1",
                            [sorted(narrowed)]).iter_rows())
                # What the draft lists for each person starts at its window's first month, or earlier
                # for someone a released decision's stopped clock reaches back for (allowance/reach.py):
                # a decision covers from there (audit 28A: a rejection on the run paying such a month
                # left it to expire, and a redraft under it did not pay it).
                listed = listed.filter(pl.col("person_id").is_in(ids))
                self.con.register("_review_from", listed.to_arrow())
                kept_before = None
                if action == "REJECT" and from_month is not None and any(
                        min(since[p], lines_from[p]) < from_month for p in ids):
                    kept_before = from_month  # their months before it stay in the draft
                    _drafted_with(b, rules, from_month)
                did = int(self.one("select coalesce(max(decision_id), 0) + 1 from decisions")[0])  # type: ignore[index]
                # One insert of all the decisions (row by row, a 20 000-person list took seconds).
                self.insert_frame("decisions", pl.DataFrame(
                    {"decision_id": range(did, did + len(ids)), "batch_id": batch_id, "person_id": ids,
                     "district_code": [found.get(p) for p in ids], "action": action,
                     "from_month": [from_month if from_month is not None else since[p] for p in ids],
                     "to_month": None, "reason": reason, "decided_by": by,
                     "decided_at": _now()},
                    schema={"decision_id": pl.Int64, "batch_id": pl.String, "person_id": pl.String,
                            "district_code": pl.String, "action": pl.String, "from_month": pl.Int32,
                            "to_month": pl.Int32, "reason": pl.String, "decided_by": pl.String,
                            "decided_at": pl.Datetime("us")}))
                # A rejected person's months already paid in the draft's window are recovered by
                # the next run (a line here would renumber the draft's line ids); staff are told.
                to_recover = int(self.one(
                    "select count(distinct h.person_key) from holdings h join _review_from r using (person_key) "
                    # (from the person's due months: older ones are listed as overpaid, not recovered:
                    # audit 28G)
                    "where h.fen > 0 and h.to_mi >= greatest(coalesce(?, r.listed_from), r.listed_from) "
                    "and h.from_mi <= ?",
                    [from_month, b["last_month"] or 0])[0]) if action == "REJECT" else 0  # type: ignore[index]
                withdrawn: list[str] = []
                kept: dict[str, Any] | None = None  # what a rejection from a month keeps of theirs
                if action in ("HOLD", "REJECT"):
                    # Their lists change: an approval of a list as it was no longer holds.
                    withdrawn = [r[0] for r in self.run(
                        "delete from approvals where batch_id = ? and list_contains(?, district_code) "
                        "returning district_code", [batch_id, lists["district_code"].unique().sort().to_list()])]
                    # The batch's files are immutable: new ones without the people replace them.
                    others = ~pl.col("person_id").is_in(ids)
                    if kept_before is not None:
                        # ... but a rejection from a month keeps their lines' months before it
                        # (their no-card entries, listed and not paid, are listed again next run).
                        assert rules is not None  # refused above otherwise
                        parts, kept = self._keep_before(batch_id, ids, named, kept_before, rules)
                    else:
                        parts = {part: self.part(batch_id, part).filter(others) for part in ("lines", "pieces")}
                        if action == "REJECT":
                            # no line month before it, but cancelled recoveries of older months stay
                            # (audit 28D: the command said nothing was kept; 28G: nor, a plain one)
                            still = self.df("select c.person_key, c.from_mi, c.to_mi, c.fen from batch_cancels c "
                                            "join _review_from r using (person_key) where c.batch_id = ? "
                                            "and c.to_mi < coalesce(?, r.listed_from)", [batch_id, from_month])
                            # (null for nothing, as for "already")
                            kept = _kept_summary(None, still, named) if still.height else None
                    parts["no_card"] = self.part(batch_id, "no_card").filter(others)
                    parts["quarantine"] = self.part(batch_id, "quarantine")
                    # Nothing of theirs is cancelled either where the decision covers it: held, every
                    # recovery stays as it is (their case is open, whichever months it names); rejected,
                    # they are not entitled to the months it recovers from the rejection's month on,
                    # and the months before it stay theirs, older than the window too (audit 28C: a
                    # rejection from November left July's and August's recoveries owed, reported
                    # expired; cancel_owed_before_window now agrees, so a redraft gives the same).
                    self.run("delete from batch_cancels c using _review_from r where c.batch_id = ? "
                             "and c.person_key = r.person_key and c.to_mi >= coalesce(?, r.listed_from)",
                             [batch_id, -1 if action == "HOLD" else from_month])
                    self._store_parts(batch_id, parts)
                    self._refresh_totals(batch_id)
            detail: dict[str, Any] = {"reason": reason} if len(ids) == 1 else {"reason": reason, "people": len(ids)}
            # which decisions the event recorded (Ledger.released: a release's event by its ids, not
            # by its second: audit 28A matched two releases in one second to the first one's event)
            detail["decisions"] = [did, did + len(ids) - 1]
            seq = self._bump(f"review_{action.lower()}", batch_id, by, detail)
            if action in ("HOLD", "REJECT"):
                self.run("update batches set base_seq=? where batch_id=?", [seq, batch_id])
            self.run("commit")
        except BaseException:
            self._rollback()
            self._refresh_views()
            raise
        finally:
            with contextlib.suppress(duckdb.Error):
                self.con.unregister("_review_from")
            self._prune_files(batch_id)
        return {**self.batch(batch_id), "recovered_next_run": to_recover, "kept_before": kept,
                "approvals_withdrawn": sorted(withdrawn),
                "people": named_all, "already": already}

    def _listed_from(self, batch_id: str, b: dict[str, Any], named: pl.DataFrame,
                     decisions: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """With `_review_ids` registered: person_id, person_key, listed_from and earliest, for each
        named person, from what the draft lists for them (a line, a no-card entry, a cancelled
        recovery); and that listing (person_id, district_code, mi: a row each). `decisions`: the
        holds and rejections in force (Ledger.blocked).

        listed_from, where a plain decision covers from: its window's first month, or an earlier
        one a released decision's stopped clock reaches back for (allowance/reach.py, as the draft
        reckoned it: a release since would have made the draft stale), the person's due months.
        Not a cancelled recovery of a month older than those (cancel_owed_before_window): a
        decision is a run of months from its first, and covering from such a month covered the
        months between, which the draft never listed (audit 28F: paid ones listed as overpaid,
        expired ones no longer reported).

        earliest, the lowest `--from`: the first month of anything the draft lists, those older
        cancellations too (audit 28E: "not entitled since August" was refused where the draft
        cancelled August's recovery)."""
        first = b["first_month"] or 0
        held = held_keys(decisions)["_k"]
        released = keyed(self.released(), "decisions", strict=False).join(
            named.select(_k="person_key"), on="_k", how="semi")
        reach = reach_by_key(released, held, first, month_index(b["as_of"]), None)
        # and the months of a payment the bank returned, which the draft reckons as its window's
        # (returned_months; audit 31C: a hold covered from the window, the re-issued month older
        # than it reported expired meanwhile, and a plain rejection was refused as if paying back)
        returned = (self.returned_months(first).join(named.select(_k="person_key"), on="_k", how="semi")
                    .group_by("_k").agg(returned_mi=pl.col("month_idx").min()))
        if returned.height:
            reach = (reach.join(returned, on="_k", how="full", coalesce=True)
                     .select("_k", reach_mi=pl.min_horizontal("reach_mi", "returned_mi").cast(pl.Int32)))
        month = "(year(period_from) * 12 + month(period_from) - 1)"
        listed = self.df(
            f"select person_id, district_code, {month} as mi, true as line from batch_lines where batch_id = $b "
            "and person_id in (select person_id from _review_ids) union all "
            f"select person_id, district_code, {month}, true from batch_no_card where batch_id = $b "
            "and person_id in (select person_id from _review_ids) union all "
            "select r.person_id, c.district_code, c.from_mi, false from batch_cancels c "
            "join _review_ids r using (person_key) where c.batch_id = $b", {"b": batch_id})
        due_from = pl.col("reach_mi").fill_null(first)
        earliest = (listed.join(named.select("person_id", _k="person_key"), on="person_id")
                    .join(reach, on="_k", how="left")
                    .group_by("person_id").agg(pl.col("mi").filter(pl.col("mi") >= due_from).min().alias("due"),
                                               pl.col("mi").min().alias("any"),
                                               pl.col("mi").filter("line").min().alias("line")))
        return (named.select("person_id", "person_key").join(earliest, on="person_id", how="left")
                .select("person_id", "person_key",
                        listed_from=pl.min_horizontal(pl.col("due").fill_null(first), pl.lit(first)).cast(pl.Int32),
                        earliest=pl.min_horizontal(pl.col("any").fill_null(first), pl.lit(first)).cast(pl.Int32),
                        # a line's first month before listed_from: a month paid back, a recovery
                        # collected while a decision stood (allowance/reach.py)
                        lines_from=pl.min_horizontal(pl.col("line").fill_null(first), pl.lit(first)).cast(pl.Int32)),
                listed)

    def _keep_before(self, batch_id: str, ids: list[str], named: pl.DataFrame, kept_before: int,
                     rules: Rules) -> tuple[dict[str, pl.DataFrame], dict[str, Any]]:
        """Inside review's transaction, `_review_ids` registered: the draft's lines and pieces with
        the rejected people's months before `kept_before` kept (rejection.months_before) and the
        rest of theirs gone, and what is kept of theirs, by kind."""
        others = ~pl.col("person_id").is_in(ids)
        theirs = self.df("select person_key, from_mi, to_mi, fen from holdings "
                         "where person_key in (select person_key from _review_ids)")
        # every cancellation of theirs: the lines were reckoned with them all (audit 27A)
        cancelled = self.df("select person_key, from_mi, to_mi, fen from batch_cancels where "
                            "batch_id = ? and person_key in (select person_key from _review_ids)",
                            [batch_id])
        # and for their reasons: months the bank returned, whether ever paid
        returned = self.reversals().filter(pl.col("person_id").is_in(ids))
        ever_paid = self.df("select person_key from payees where person_key in "
                            "(select person_key from _review_ids)")["person_key"]
        parts = {part: self.part(batch_id, part) for part in ("lines", "pieces")}
        b = self.batch(batch_id)
        cut, cut_pieces = months_before(parts["lines"].filter(~others), parts["pieces"].filter(~others), kept_before,
                                        named, theirs, cancelled, rules, returned, ever_paid,
                                        (b["last_month"] or 0) - 2)  # its quarter's first month
        # what stays of theirs, by kind (audit 27C: a payment and a recovery netted, and
        # cancellations kept not said)
        still = cancelled.filter(pl.col("from_mi") < kept_before)
        kept = _kept_summary(cut, still, named)
        # In place, in file order: the kept lines are the same rows with new totals
        # (a concat and sort of a 15.35M quarter's lines and pieces took 2 GB more).
        lines = parts.pop("lines").filter(others | pl.col("line_id").is_in(cut["line_id"].implode()))
        at = lines.select((~others).arg_true()).to_series()
        assert at.len() == cut.height
        parts["lines"] = lines.with_columns(lines[c].scatter(at, cut[c]) for c in RECKONED_LINE_COLUMNS
                                            if c in lines.columns)
        del lines
        pieces = parts.pop("pieces").filter(others | (pl.col("from_mi") < kept_before))
        parts["pieces"] = pieces.with_columns(
            pl.when(others).then("to_mi").otherwise(pl.min_horizontal("to_mi", pl.lit(kept_before - 1)))
            .cast(pl.Int32).alias("to_mi"))
        del pieces
        assert parts["pieces"].filter(~others).equals(cut_pieces)
        return parts, kept

    def _refresh_totals(self, batch_id: str) -> None:
        pay = self.one(
            "select count(*), coalesce(sum(amount_fen), 0) from batch_lines where batch_id=? and line_type='PAYMENT'",
            [batch_id],
        )
        rec = self.one(
            "select count(*), coalesce(sum(amount_fen), 0) from batch_lines where batch_id=? and line_type='RECOVERY'",
            [batch_id],
        )
        nc = self.one("select count(*), coalesce(sum(amount_fen), 0) from batch_no_card where batch_id=?", [batch_id])
        reasons = self.run(
            "select reason, count(*) from batch_lines where batch_id=? group by 1 order by 1", [batch_id]
        )
        summary = json.loads(self.batch(batch_id)["summary"])
        summary["payments"] = {"lines": int(pay[0]), "amount_fen": int(pay[1])}  # type: ignore[index]
        summary["recoveries"] = {"lines": int(rec[0]), "amount_fen": int(rec[1])}  # type: ignore[index]
        summary["no_card"] = {"people": int(nc[0]), "amount_fen": int(nc[1])}  # type: ignore[index]
        summary["by_reason"] = {r: int(n) for r, n in reasons}
        cancels = self.one("select count(distinct line_id), count(distinct person_key), coalesce(sum(fen * "
                           "(to_mi - from_mi + 1)), 0) from batch_cancels where batch_id = ?", [batch_id])
        summary["recoveries_cancelled"] = {"lines": int(cancels[0]), "people": int(cancels[1]),  # type: ignore[index]
                                           "fen": int(cancels[2])}  # type: ignore[index]
        # The change report and `changes` are the extract's changes as drafted; the people taken
        # out by review since are counted here, so a reader sees why the payments are fewer.
        summary["taken_out_by_review"] = {a.lower(): int(n) for a, n in self.run(
            "select action, count(distinct person_id) from decisions where batch_id = ? "
            "and action in ('HOLD', 'REJECT') group by 1 order by 1", [batch_id])}
        self.run(
            "update batches set lines=?, amount_fen=?, recovery_fen=?, summary=? where batch_id=?",
            [pay[0], pay[1], rec[1], json.dumps(summary, ensure_ascii=False), batch_id],  # type: ignore[index]
        )

    def _update_payees(self, batch_id: str, rows: pl.DataFrame) -> None:
        """What each person was last paid with (payees), from the batch's payee_rows.

        Only the people paid with something else than their row says, or who have none, are
        written (at a quarter about 1 in 70; rewriting all 4.4 million rows took 3 s).
        """
        with self._registered(_paid=rows):
            self.run(
                """
                create or replace temp table _payees_changed as
                select n._k, n.paid_with, n.card_with, n.since_row
                from _paid n left join payees p on p.person_key = n._k
                where p.person_key is null or p.paid_with <> n.paid_with
                """
            )
        self.run("delete from payees where person_key in (select _k from _payees_changed)")
        self.run("insert into payees select _k, paid_with, card_with, ?, since_row from _payees_changed", [batch_id])
        self.run("drop table _payees_changed")

    def ever_paid(self, people: pl.DataFrame) -> pl.DataFrame:
        """The rows of `people` (with _k, the ID's exact int64 key) whose person was ever paid (a
        published payment line), in no particular order. DuckDB is handed the keys: with a night's
        handful of people that takes 0.01-0.03 s, where reading the 4.4 million payees' keys out
        to join them took 0.1-0.15 s; at a quarter's 4.5 million people both take 0.2-0.28 s."""
        with self._registered(_people=people):
            return self.df("select * from _people where _k in (select person_key from payees)")

    def last_covered(self) -> int | None:
        """The last month any published batch ran to (None before the first publication)."""
        row = self.one("select max(last_month) from batches where status = 'published'")
        return None if row is None or row[0] is None else int(row[0])

    def not_held_after_cover(self, months: pl.DataFrame) -> pl.DataFrame:
        """The rows of `months` (_k, mi: a person and a month) whose month a published batch had
        covered (mi at most last_covered) and for which the ledger holds nothing, other than a
        month the bank returned that no publication drafted since its return has covered (its
        re-issue is no news; a returned month a publication has gone past since without paying
        it is, and so is one re-issued and recovered since: audit 25D): a month a run went past
        without paying them. A handful of rows asked.

        "Drafted since" is by the ledger's sequence, not by the clock (both are to the second:
        an import and a publication in one second were in no known order): a REVERSAL's import
        is the event of the return file that brought its line's notice at that instant (or the
        notice dating that reversed the line), the first at or after its second (a caller's hash
        that is not the file's content may name two imports: audit 25E), and a batch's draft saw
        it when its base_seq is at least that event's seq. A return not traced to its event counts
        as fresh."""
        if months.height == 0:
            return months
        with self._registered(_months=months):
            return self.df(
                """
                with rev as (
                    select e.person_id, e.from_mi, e.to_mi, coalesce(
                        (select min(ev.seq) from bank_returns r join events ev on ev.action = 'bank_returns'
                             and ev.detail->>'file_sha256' = r.file_sha256
                             and ev.event_at >= date_trunc('second', r.imported_at)
                         where r.line_id = e.line_id and r.status = 'FAILED' and r.imported_at = e.recorded_at),
                        (select min(ev.seq) from events ev where ev.action = 'notice_dated'
                             and ev.detail->>'line_id' = e.line_id and coalesce((ev.detail->>'failed')::bigint, 0) > 0
                             and ev.event_at >= date_trunc('second', e.recorded_at))) as seq
                    from bank_entries e
                    where e.kind = 'REVERSAL' and e.person_id in (select person_id_of(_k) from _months))
                select m.* from _months m
                where m.mi <= (select max(last_month) from batches where status = 'published')
                and not exists (select 1 from holdings h where h.person_key = m._k
                                and m.mi between h.from_mi and h.to_mi and h.fen > 0)
                and not exists (
                    select 1 from rev
                    where rev.person_id = person_id_of(m._k) and m.mi between rev.from_mi and rev.to_mi
                    and not exists (select 1 from batches b where b.status = 'published'
                                    and m.mi between b.first_month and b.last_month and b.base_seq >= rev.seq))
                """)

    def channel_changes(self, paid: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Of the people in `paid` (_k, channel, card_no): those last paid to another channel or
        card (_k), and, of those whose card is new to them (never paid, or last paid elsewhere),
        the ones whose card number is the one another person was last paid to, under any channel
        (_k, other_k: a card is one person's; the change report lists them as CARD_SHARED).
        Compared as card_with hashes: a quarter's 4.4 million payees are integers to DuckDB, not
        texts. A ledger with no payees (a first quarter) is asked nothing; at a later quarter the
        new cards are the new entrants' and the changed ones' (some 60 000 at 15.35M), each hashed
        under every channel and joined to the payees' cards."""
        mine = paid.select("_k", card_with=hash_columns([paid[c] for c in CARD_WITH]))
        with self._registered(_paid=mine):
            if not self.one("select exists (select 1 from payees)")[0]:  # type: ignore[index]
                return (pl.DataFrame(schema={"_k": pl.Int64}),
                        pl.DataFrame(schema={"_k": pl.Int64, "other_k": pl.Int64}))
            fresh = self.df("select n._k, p.person_key is not null as had from _paid n "
                            "left join payees p on p.person_key = n._k "
                            "where p.person_key is null or p.card_with <> n.card_with")
        cards = paid.join(fresh.select("_k"), on="_k", how="semi").select("_k", "card_no")
        under_any = pl.concat([cards.select("_k", card_with=hash_columns(
            [pl.Series([c] * cards.height, dtype=pl.String), cards["card_no"]])) for c in CHANNELS])
        with self._registered(_fresh=under_any):
            taken = self.df("select distinct f._k, p.person_key as other_k from payees p "
                            "join _fresh f on p.card_with = f.card_with where p.person_key <> f._k order by 1, 2")
        return fresh.filter(pl.col("had")).select("_k"), taken

    def payees(self, keys: pl.Series) -> pl.DataFrame:
        """Who of `keys` was last paid with what: _k, person_id, name, district_code, last_channel,
        last_card_no (a run needs a handful of the 4.4 million rows)."""
        with self._registered(_payee_keys=keys.rename("_k").to_frame()):
            found = self.df("select person_key as _k, since_batch, since_row from payees "
                            "where person_key in (select _k from _payee_keys)")
        return self._paid_with(found).select(
            "_k", "person_id", "name", "district_code", last_channel="channel", last_card_no="card_no")

    def _paid_with(self, payees: pl.DataFrame) -> pl.DataFrame:
        """For payees rows (_k, since_batch, since_row): _k, person_id and the line's name,
        district_code, channel and card_no, read from each batch's lines file (checked against its
        SHA-256). A line that is not a payment to that person is a damaged ledger."""
        cols = ["person_id", *PAID_WITH]
        found = [pl.DataFrame(schema={"_k": pl.Int64, **{c: pl.String for c in cols}})]
        for (bid,) in payees.select("since_batch").unique().sort("since_batch").iter_rows():
            at = payees.filter(pl.col("since_batch") == bid)
            lines = self.part(bid, "lines", ["line_type", *cols])
            if at["since_row"].max() >= lines.height:  # type: ignore[operator]
                raise LedgerError(f"{self.path}: a payee points past the end of batch {bid}'s lines; "
                                  "run `allowance ledger check`")
            got = keyed(lines.gather(at["since_row"]), "payment line")
            if got.filter((pl.col("line_type") != "PAYMENT") | (pl.col("_k") != at["_k"])).height:
                raise LedgerError(f"{self.path}: a payee points at a line of batch {bid} that is not a payment "
                                  "to them; run `allowance ledger check`")
            found.append(got.select("_k", *cols))
        return pl.concat(found)

    def import_bank_returns(self, returns: pl.DataFrame, file_sha256: str,
                            today: dt.date | None = None) -> dict[str, int]:
        """§8: each line ends as its latest notice says (returns.line_fates): a FAILED reverses the
        line's months so the next run re-issues them (a bounce, 退汇, after a PAID too); a PAID
        after the FAILED (a retry the bank paid) undoes the reversal. Every row not recorded before
        is recorded; importing the same file twice changes nothing.

        Refuses unknown line ids (naming them), recovery lines, lines whose batch or amount the
        bank's file states otherwise, a PAID and a FAILED of one line with no known order, and a
        settled_at before its line's batch or after `today` (Shanghai's date; a simulation gives
        its own) and the day after: a wrong year decides how a line ended.
        """
        latest_day = (today or today_shanghai()) + dt.timedelta(days=1)
        # reason and settled_at may be left out (SPEC §8 names line_id and status): read_bank_returns
        # gives them as blanks, and so does this for a frame given directly (it had failed in DuckDB)
        returns = returns.with_columns(pl.lit(None, pl.String).alias(c) for c in ("reason", "settled_at")
                                       if c not in returns.columns)
        # each row's day however spelled (returns.days_given), held to the line's batch and to tomorrow
        returns = returns.with_columns(_day=days_given(returns["settled_at"]))
        with self._registered(_ret=returns):
            self.run("begin")
            try:
                # In the same pass, a settled_at before its line's batch was drafted, or after tomorrow: a
                # wrong year decided a line's end with no word (audit 21A: a credit typed 2052 made the
                # real bounce an earlier attempt, and the person unpaid). Its day however it is spelled
                # (returns.days_given: `20240802` too, audit 25B; an offset read in Shanghai, audit 21B: a
                # UTC timestamp's date had refused a line paid at 01:30 in Shanghai); a row recorded before
                # is no news whatever its date (audit 21B: a file left in the inbox refused every night).
                odd = self.df(
                    "select r.line_id, r.status, l.line_id is null or b.status <> 'published' as unknown, "
                    "r.settled_at, b.as_of, r._day > $latest as late "
                    "from _ret r left join batch_lines l using (line_id) "
                    "left join batches b on b.batch_id = l.batch_id "
                    "where l.line_id is null or b.status <> 'published' "
                    "or r._day < b.as_of or r._day > $latest order by 1",
                    {"latest": latest_day})
                unknown = odd.filter("unknown")["line_id"].to_list()
                if unknown:
                    more = f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""
                    raise LedgerError(
                        f"{len(unknown)} unknown or unpublished line id(s): {', '.join(unknown[:5])}{more}; "
                        "nothing imported"
                    )
                if odd.height:
                    with self._registered(_early=odd.select("line_id", "status", "settled_at")):
                        odd = odd.join(self.df(
                            "select e.* from _early e semi join bank_returns b on b.line_id = e.line_id "
                            "and b.status = e.status and b.settled_at is not distinct from e.settled_at"),
                            on=["line_id", "status", "settled_at"], how="anti", nulls_equal=True)
                if odd.height:
                    r = odd.sort("late", "line_id", descending=[True, False]).row(0, named=True)
                    when = (f"after tomorrow ({latest_day}, Shanghai)" if r["late"] else
                            f"before its batch was drafted (as of {r['as_of']})")
                    raise LedgerError(
                        f"line {r['line_id']} is settled_at {r['settled_at']}, {when}; {odd.height} such row(s): "
                        "a wrong date decides how a line ended, so nothing is imported: ask the bank for the "
                        "right one")
                # A bank's own record of a line, where its file has one, is the ledger's: a file
                # answering for other lines (another batch's, amounts not paid) is not recorded.
                for col, ours in (("batch_id", "l.batch_id"), ("amount_fen", "l.amount_fen")):
                    if col in returns.columns and (odd := self.run(
                            f"select r.line_id, r.{col}, {ours}, count(*) over () from _ret r "
                            f"join batch_lines l using (line_id) where r.{col} is distinct from {ours} "
                            f"and r.{col} is not null order by 1 limit 1")):
                        line, theirs, mine, n = odd[0]
                        raise LedgerError(f"line {line} has {col} {theirs} in the bank's file but {mine} in the "
                                          f"ledger ({n} line(s) differ); nothing imported")
                rec = [r[0] for r in self.run(
                    "select line_id from _ret join batch_lines using (line_id) where line_type <> 'PAYMENT' "
                    "order by 1 limit 5"
                )]
                if rec:
                    raise LedgerError(f"bank returns name recovery lines ({', '.join(rec)}); nothing imported")
                # A line's fate is its latest status by settled_at (returns.line_fates): PAID then
                # FAILED is a bounce (退汇), reversed; FAILED then PAID a retry the bank paid, whose
                # reversal is undone (RETRY_PAID entries): refused, the night's supplement re-issued
                # the months all the same, and the bank had paid them (audit 20F: 450 yuan). Every
                # row not recorded before is recorded (only the identical row is no news: importing a
                # file twice changes nothing), so three notices of one line (a failed attempt, the
                # retry's credit, its bounce) come to the same end in any order of reading (audit 20F:
                # a second notice of one status was dropped as no news, and an order left the
                # bounce unreversed). Where the order is not known the file is refused, as before.
                fresh = self.df(
                    "select r.line_id, r.status, min(r.reason) as reason, r.settled_at from _ret r "
                    "where not exists (select 1 from bank_returns b where b.line_id = r.line_id "
                    "and b.status = r.status and b.settled_at is not distinct from r.settled_at) "
                    "group by r.line_id, r.status, r.settled_at order by line_id, status, settled_at nulls first")
                if (mixed := unordered_in_file(fresh)).height:
                    raise LedgerError(
                        f"line {mixed['line_id'][0]} is both PAID and FAILED in this file, with no known order "
                        f"(PAID {mixed['settled_at'][0] or 'undated'}, FAILED {mixed['failed_at'][0] or 'undated'}; "
                        "settled_at YYYY-MM-DD, with a time of day on both when they fall on one day); nothing "
                        "imported")
                # a file read again (the nightly inbox) has no news: nothing more is read for it
                no_fates = pl.DataFrame(schema={"line_id": pl.String, "was_reversed": pl.Boolean,
                                                "fate": pl.String, "said": pl.List(pl.String)})
                fates = no_fates if fresh.height == 0 else line_fates(
                    self.df(f"select * from ({RECORDED_NOTICES}) where line_id in (select line_id from _ret)"),
                    fresh.select("line_id", "status", "settled_at"),
                    self.df(f"select * from ({REVERSED_LINES}) where line_id in (select line_id from _ret)"),
                )
                if (unknown_order := fates.filter(pl.col("fate").is_null()).sort("line_id")).height:
                    first = unknown_order.row(0, named=True)
                    more = f" (+{unknown_order.height - 1} more)" if unknown_order.height > 1 else ""
                    raise LedgerError(
                        f"line {first['line_id']}{more} is reported PAID and FAILED with no known order "
                        f"({', '.join(first['said'])}): whether the bank paid it in the end cannot "
                        "be told; ask the bank for the settlement dates (YYYY-MM-DD, with a time of day on both "
                        "when they fall on one day), put them in the file, and give a notice already on record "
                        "its date with `allowance bank-returns date`; nothing imported")
                now = self._entries_now()
                if fresh.height:
                    self.insert_frame(
                        "bank_returns",
                        fresh.with_columns(imported_at=pl.lit(now), file_sha256=pl.lit(file_sha256)),
                    )
                counts = {
                    "rows": returns.height,
                    "new": fresh.height,
                    "already_recorded": returns.height - fresh.height,
                    "paid": int((fresh["status"] == "PAID").sum()) if fresh.height else 0,
                    **self._apply_fates(fates, now),
                }
                if fresh.height:
                    self._bump("bank_returns", None, None, {**counts, "file_sha256": file_sha256}, at=now)
                self.run("commit")
                return counts
            except BaseException:
                self._rollback()
                raise

    def _entries_now(self) -> dt.datetime:
        """Inside a transaction: the instant of this change's bank entries and notices, after every
        earlier one of either. A retry takes back what its line's last failure cancelled by that
        instant, and two imports in one second (the nightly inbox) had looked like one (audit 21B;
        _now is to the second); a return is traced to its own import by it (not_held_after_cover:
        a credit's import and its bounce's in one second were taken for one, audit 25E)."""
        now = _now()
        last = self.one("select greatest((select max(recorded_at) from bank_entries), "
                        "(select max(imported_at) from bank_returns))")
        if last and last[0] is not None and now <= last[0]:
            now = last[0] + dt.timedelta(microseconds=1)
        return now

    def _apply_fates(self, fates: pl.DataFrame, now: dt.datetime) -> dict[str, Any]:
        """Inside a transaction: each line's end (returns.line_fates) put into the ledger at `now`. A
        line the ledger holds reversed that ended PAID (a retry the bank paid) has its reversal
        undone (RETRY_PAID), and what its failure cancelled; one not reversed that ended FAILED is
        reversed (REVERSAL) and its months taken off the recoveries still claiming them. What
        changed, as import_bank_returns counts it."""
        restored = pl.DataFrame(schema={"person_id": pl.String, "from_mi": pl.Int32, "to_mi": pl.Int32,
                                        "fen": pl.Int64})
        recoveries_restored: list[dict[str, Any]] = []
        refunds_before = self._refund_allocation(now)
        retried = fates.filter(pl.col("was_reversed") & (pl.col("fate") == "PAID")).select("line_id")
        if retried.height:
            with self._registered(_retried=retried):
                self.run(
                    """
                    insert into bank_entries
                    select p.person_id, p.from_mi, p.to_mi, p.fen, 'RETRY_PAID', p.line_id, p.batch_id, ?
                    from batch_pieces p join _retried using (line_id)
                    """,
                    [now],
                )
                restored = self.df("select p.person_id, p.from_mi, p.to_mi, p.fen "
                                   "from batch_pieces p join _retried using (line_id)")
                uncancelled, recoveries_restored = self._undo_failure_cancels(now)
            self.apply_to_holdings(pl.concat([restored, uncancelled], how="vertical_relaxed"))
            if recoveries_restored:
                log.get().warning("recoveries_restored", recoveries=recoveries_restored,
                                  why="a payment these recoveries had been cut for (it failed at the bank) "
                                      "was paid on a retry after all: they owe that again")
            log.get().warning("paid_on_retry", lines=retried.height, fen=_run_fen(restored),
                              why="the bank paid these lines after it had failed them: their reversal is "
                                  "undone, and months a run re-issued since are recovered by the next run")
        failed = fates.filter(~pl.col("was_reversed") & (pl.col("fate") == "FAILED")).select("line_id")
        reversed_ = pl.DataFrame(schema={"person_id": pl.String, "from_mi": pl.Int32, "to_mi": pl.Int32,
                                         "fen": pl.Int64})
        cancelled, reduced = 0, []
        if failed.height:
            with self._registered(_failed=failed):
                self.run(
                    """
                    insert into bank_entries
                    select p.person_id, p.from_mi, p.to_mi, -p.fen, 'REVERSAL', p.line_id, p.batch_id, ?
                    from batch_pieces p join _failed f using (line_id)
                    """,
                    [now],
                )
                reversed_ = self.df(
                    "select p.person_id, p.from_mi, p.to_mi, -p.fen as fen "
                    "from batch_pieces p join _failed f using (line_id)"
                )
            self.apply_to_holdings(reversed_)
            cancelled, reduced = self._cancel_recoveries_of_failed(failed, now)
        # What the refunds by hand are now, against before: each recovery's more is a refund to make
        # (a failure), its less one not due (a retry; a failure a recovery published before it asked
        # back, where the refund had been counted to another). One reckoning for both, and for the
        # payback rule (_REFUND_ALLOCATION): audit 30D.
        returned, not_due = _refund_change(refunds_before, self._refund_allocation(now))
        if returned["fen"]:
            log.get().warning("recovered_but_never_delivered", **returned,
                              why="a recovery confirmed as recovered covered months of a payment the bank now "
                                  "says failed: the family returned money it never got; the district refunds it")
        if not_due["fen"]:
            log.get().warning("refund_not_due", **not_due,
                              why="a refund reported before is not due on these recovery lines: the bank has "
                                  "delivered those months after all (if it was refunded, the district recovers "
                                  "it by hand), or a failure counts it to another line now (the same money)")
        return {
            "failed": failed.height,
            "reversed_fen": -_run_fen(reversed_),
            # lines the bank failed and then paid (a retry): their reversal undone
            "paid_on_retry": retried.height,
            "restored_fen": _run_fen(restored),
            # of refunds reported when those lines failed, what is no longer due
            "refunds_not_due": not_due,
            # each recovery its failure had cut that owes that again (district, fen, what it owes now)
            "recoveries_restored": recoveries_restored,
            "recoveries_cancelled": cancelled,
            # each recovery that now owes less (district, fen taken off, what it owes now)
            "recoveries_reduced": reduced,
            # months a confirmed recovery got back, of payments that never arrived: to refund by hand
            "recovered_but_never_delivered": returned,
        }

    def date_bank_notice(self, line_id: str, status: str, settled_at: str, by: str, reason: str,
                         recorded: str | None = None, today: dt.date | None = None) -> dict[str, Any]:
        """Give a bank notice on record the settlement date and time the bank has since confirmed,
        where it has none the engine can order by (no date, a date alone, another spelling or an
        offset: returns.SETTLED).

        Without it such a notice can never be ordered against the line's next one: the bank's
        retry or bounce of that line refused its whole file every night, and asking the bank for
        the dates could not help, since the notice on record stayed undated (audit 21A). The
        notice stays as the bank sent it; the date is an event (who, why) that every later import
        orders it by (RECORDED_NOTICES): the latest one given, so a date mistyped is corrected by
        giving the right one (audit 25A). A time of day is required: a date alone is no order
        against a notice later that day (audit 25A: a retry on the day given was refused for
        good). A notice whose own value gives a day (`20250810`, an offset: read in Shanghai) is
        dated on that day only. If, so dated, the line's notices on record say it ended otherwise
        than the ledger holds (an undated failure read as a bounce that was a failed attempt
        before the credit), the ledger is put right as an import would (_apply_fates).
        `recorded` picks the notice (its settled_at as recorded, `undated` for none) when the line
        has more than one of that status without a time the engine orders by. The same instant
        again changes nothing.
        """
        status = status.strip().upper()
        if status not in ("PAID", "FAILED"):
            raise UserError(f"--status {status!r}: a bank notice is PAID or FAILED")
        if not by.strip():
            raise UserError("say who dates the notice (--by)")
        if not reason.strip():
            raise UserError("say why (--reason): the bank's confirmation, for the record")
        settled_at = settled_at.strip()
        m = re.match(SETTLED, settled_at)
        try:
            day = dt.date.fromisoformat(m.group(1)) if m and m.group(2) else None
        except ValueError:
            day = None
        if day is None:
            raise UserError(f"--settled-at {settled_at!r}: give the bank's settlement date and time as YYYY-MM-DD "
                            "HH:MM or YYYY-MM-DD HH:MM:SS (Shanghai time): a date alone gives no order against a "
                            "notice later that day")
        latest_day = (today or today_shanghai()) + dt.timedelta(days=1)
        self.run("begin")
        try:
            line = self.one("select b.as_of from batch_lines l join batches b using (batch_id) "
                            "where l.line_id = ? and b.status = 'published'", [line_id])
            if line is None:
                raise LedgerError(f"line {line_id}: no such published line")
            if not line[0] <= day <= latest_day:
                raise LedgerError(f"--settled-at {settled_at}: "
                                  + (f"before the line's batch was drafted (as of {line[0]})" if day < line[0]
                                     else f"after tomorrow ({latest_day}, Shanghai)"))
            notices = self.df(f"select status, recorded, given from ({DATED_NOTICES}) where line_id = ? "
                              "order by status, recorded nulls first", [line_id])
            said = ", ".join(f"{r['status']} {r['recorded'] or 'undated'}"
                             + (f" (dated {r['given']} by staff)" if r["given"] else "")
                             for r in notices.to_dicts()) or "none"
            mine = notices.filter(pl.col("status") == status)
            if recorded is not None:
                mine = mine.filter(pl.col("recorded").is_null() if recorded.strip().lower() == "undated"
                                   else pl.col("recorded") == recorded.strip())
            if mine.height == 0:
                raise LedgerError(f"line {line_id} has no {status} notice on record"
                                  + (f" recorded as {recorded!r}" if recorded is not None else "")
                                  + f" (its notices: {said})")
            # What the engine cannot order by as recorded: no date, another form, or a date alone; or a
            # day that cannot be, before the line's batch or after tomorrow (recorded before either
            # was refused: audit 25A, a credit typed 2052 on record decided every later notice).
            mine = mine.with_columns(impossible=~days_given(mine["recorded"]).is_between(line[0], latest_day)
                                     .fill_null(False))
            open_ = mine.filter(pl.col("recorded").is_null() | settled_clock("recorded").is_null()
                                | pl.col("impossible"))
            if open_.height == 0:
                raise LedgerError(f"line {line_id}: the bank dated its {status} notice with a time of day ("
                                  + ", ".join(mine["recorded"].to_list()) + "): its date stands")
            if open_.height > 1:
                raise LedgerError(
                    f"line {line_id} has {open_.height} {status} notices with no time to order by ("
                    + ", ".join(r or "undated" for r in open_["recorded"].to_list())
                    + "): say which with --recorded (its settled_at as recorded, or `undated`)")
            was, before = open_["recorded"][0], open_["given"][0]
            instant = pl.DataFrame({"a": [before], "b": [settled_at]}, schema={"a": pl.String, "b": pl.String})
            if before is not None and instant.select(
                    (settled_day("a") == settled_day("b")) & (settled_clock("a") == settled_clock("b"))).item():
                self._rollback()
                return {"line_id": line_id, "status": status, "recorded": was, "settled_at": before,
                        "changed": False, "previous": before, "notices_end": None,
                        **self._apply_fates(_NO_FATES, dt.datetime.min)}
            if not open_["impossible"][0] and (its := day_given(was)) is not None and its != day:
                raise LedgerError(f"line {line_id}: its {status} notice is recorded as {was!r}, settled on {its} "
                                  f"(Shanghai); --settled-at {settled_at} is another day: give its time on that day")
            # How the line ends by its notices on record, this one dated so: the status of its
            # latest (those no other is known to be after; returns.settled_before), where they
            # agree. Where that is not how the ledger holds it, the ledger is put right as an
            # import would have (_apply_fates): an undated FAILED read as a bounce after the
            # credit, dated before it, was a failed attempt (the reversal is undone and nothing
            # re-issued); an undated credit dated after the bounce was the bank's retry. Where
            # they do not agree, the line is left as it is (the next notice, dated, decides).
            dated = notices.select(
                pl.lit(line_id).alias("line_id"), "status",
                settled_at=pl.when((pl.col("status") == status) & pl.col("recorded").eq_missing(was))
                .then(pl.lit(settled_at)).otherwise(pl.coalesce("given", "recorded")))
            ends = latest_notices(dated)["status"].unique().to_list()
            reversed_now = self.one(f"select count(*) > 0 from ({REVERSED_LINES}) where line_id = ?",
                                    [line_id])[0]  # type: ignore[index]
            fates = pl.DataFrame({"line_id": [line_id], "was_reversed": [reversed_now],
                                  "fate": [ends[0] if len(ends) == 1 else None]})
            now = self._entries_now()
            counts = self._apply_fates(fates, now)
            if counts["paid_on_retry"] or counts["failed"]:
                log.get().warning("notice_dated_changed_line", line_id=line_id, now_ends=ends[0],
                                  why="a bank notice on record, dated by staff, makes the line's notices say "
                                      "otherwise of how it ended than the ledger held")
            self._bump("notice_dated", None, by, {"line_id": line_id, "status": status, "recorded": was,
                                                   "settled_at": settled_at, "previous": before, "reason": reason,
                                                   **counts}, at=now)
            self.run("commit")
            # None: the notices, so dated, give no order (the ledger holds what it held: audit 25B)
            return {"line_id": line_id, "status": status, "recorded": was, "settled_at": settled_at, "changed": True,
                    "previous": before, "notices_end": ends[0] if len(ends) == 1 else None, **counts}
        except BaseException:
            self._rollback()
            raise

    def _undo_failure_cancels(self, now: dt.datetime) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
        """Inside an import, for the lines in `_retried` (failed, then paid on a retry): what each
        one's last failure cancelled is taken back, as if it had never failed (audit 21A: the
        cancellations stood, the next run recovered those months again, and the district was still
        told to refund them): CANCEL entries of the opposite sign, each month no more than the
        line paid for it, for the months brought to zero in a failed line's name first, then for
        those taken off recoveries (newest first) still open or written off, which owe that much
        again (reopened if cancelled). A recovery confirmed recovered since keeps its cut (the
        district collected that much): those months stay over what is due, and the next run
        recovers them. Returns the runs added (person_id, from_mi, to_mi, fen, for the holdings),
        the refunds no longer due (`_refunds`: what those months' refunds had been reckoned from,
        as _cancel_months reckoned them) and each recovery restored."""
        month = ["person_id", "month_idx"]
        made = self.df(
            "with t as (select e.line_id, any_value(e.person_id) as person_id, max(e.recorded_at) as at "
            "           from bank_entries e join _retried using (line_id) where e.kind = 'REVERSAL' group by 1) "
            "select distinct e.person_id, e.from_mi, e.to_mi, e.fen, e.line_id, e.batch_id, "
            "r.line_id is null as own, e.recorded_at "
            "from t join bank_entries e on e.kind = 'CANCEL' and e.person_id = t.person_id "
            "and (e.recorded_at = t.at and e.fen > 0 or e.recorded_at > t.at and e.fen < 0) "
            "left join recoveries r on r.line_id = e.line_id where coalesce(r.state, '') <> 'recovered' "
            # a failure's CANCEL names a recovery under the recovery's own batch; a publication's
            # (entitled again) under the publishing batch: that one stands (recorded_at is to the second)
            "and (r.line_id is null or e.batch_id = r.batch_id)")
        paid = self.df("select person_id, from_mi, to_mi, fen from batch_pieces join _retried using (line_id)")
        if made.height == 0:
            return made.select("person_id", "from_mi", "to_mi", "fen").clear(), []
        cap = explode_months(paid.lazy()).group_by(month).agg(cap=pl.col("fen").sum())
        # what an earlier retry undid already (a line failed with another of the same months, in one
        # import) is not undone again (audit 21B: a recovery was restored twice, to twice its line)
        left = (explode_months(made.lazy()).group_by([*month, "line_id", "batch_id", "own"])
                .agg(pl.col("fen").sum()).filter(pl.col("fen") > 0))
        undo = (
            left.join(cap, on=month)
            .sort([*month, "own", "line_id"], descending=[False, False, True, True])
            .with_columns(before=pl.col("fen").cum_sum().over(month) - pl.col("fen"))
            .with_columns(undo=pl.min_horizontal("fen", pl.col("cap") - pl.col("before")).clip(lower_bound=0))
            .filter(pl.col("undo") > 0).collect()
        )
        with self._registered(_undo=undo):
            self.run("insert into bank_entries select person_id, month_idx, month_idx, -undo, 'CANCEL', line_id, "
                     "batch_id, ? from _undo", [now])
            self.run(
                """
                update recoveries r set amount_fen = r.amount_fen + u.fen,
                       -- back to what it was before the cut: written off where staff wrote it off
                       -- (the write-off's event names it; audit 21B: reopened, the district was told
                       -- to collect a debt it had written off), else open
                       state = case when r.state <> 'cancelled' then r.state
                                    when exists (select 1 from events e where e.action = 'recovery_written_off'
                                                 and list_contains(cast(e.detail->'$.line_ids' as varchar[]),
                                                                   r.line_id)) then 'written_off'
                                    else 'open' end,
                       changed_at = ?, changed_by = 'bank return',
                       note = case when r.note is null or r.note = '' then '' else r.note || '; ' end
                              || 'the payment recovered was paid by the bank on a retry after all: ' || u.fen
                              || ' fen to be recovered again'
                from (select line_id, sum(undo) as fen from _undo where not own group by line_id) u
                where r.line_id = u.line_id
                """,
                [now],
            )
            self._recount_recovery_months()
            restored = self.df(
                "select u.line_id, r.district_code, sum(u.undo)::bigint as restored_fen, "
                "any_value(r.amount_fen) as owed_fen, any_value(r.state) as state "
                "from _undo u join recoveries r using (line_id) group by all order by r.district_code, u.line_id"
            ).to_dicts()
        runs = undo.select("person_id", from_mi="month_idx", to_mi="month_idx", fen=-pl.col("undo"))
        return runs, restored

    def _refund_allocation(self, now: dt.datetime | None) -> pl.DataFrame:
        """_k, month_idx, line_id, fen: every refund by hand outstanding and the recovery it is for
        (_REFUND_ALLOCATION), of the people with one (a few: brought back to zero in a failed
        payment's name); `now`, the instant of an import under way."""
        keys = ("select distinct person_key_of(person_id) from bank_entries "
                "where kind = 'CANCEL' and line_id not in (select line_id from recoveries)")
        return self.df(
            f"with {_PUBLISHED_ORDER}, took as ({_taken_back(keys)}), "
            + _REFUND_ALLOCATION.format(keys=keys, now="?::timestamp")
            + " select person_key as _k, month_idx::integer as month_idx, line_id, fen::bigint as fen "
              "from refund_alloc", [now])

    def _cancel_recoveries_of_failed(self, failed: pl.DataFrame,
                                     now: dt.datetime) -> tuple[int, list[dict[str, Any]]]:
        """A payment that failed at the bank never reached the person: months of it that were
        since recovered owe nothing back. Their net went below zero with the reversal; CANCEL
        entries bring it back to zero. Each month's is taken off the recoveries still owed for it
        (open or written off, oldest first), which owe that much less, and are cancelled once they
        owe nothing; only those months: a recovery's other months are still owed. Returns how many
        recoveries were cancelled in part or whole, and each that now owes less (district, fen taken
        off, what it owes now). What of those months a recovery confirmed as recovered had already
        got back is brought to zero in the failed line's name: money a family returned that the
        bank never delivered, which no run pays back (the account just failed); the district
        refunds it (_REFUND_ALLOCATION)."""
        neg = self.df("select person_key as _k, from_mi, to_mi, -fen as fen from holdings where fen < 0")
        if neg.height == 0:
            return 0, []
        counts = self._cancel_months(explode_months(neg.lazy()).select("_k", "month_idx", need="fen"), failed, now)
        self.apply_to_holdings(neg.rename({"_k": "person_key"}))
        return counts

    def _cancel_months(self, need: pl.LazyFrame, failed: pl.DataFrame,
                       now: dt.datetime) -> tuple[int, list[dict[str, Any]]]:
        """_cancel_recoveries_of_failed's CANCEL entries and register changes for `need` (_k,
        month_idx, need: the fen each month's net is below zero by), at `now`; the holdings are the
        caller's. Returns the same as it."""
        month = ["_k", "month_idx"]
        taken = taken_off_owed(explode_months(self.owed_recoveries().lazy()), need, "_k").select(
            *month, "line_id", "cancel")
        # What no recovery still claims (one confirmed recovered, say) is brought to zero as before,
        # in the name of the failed line.
        rest = (need.collect().join(taken.group_by(month).agg(pl.col("cancel").sum()), on=month, how="left")
                .with_columns(cancel=pl.col("need") - pl.col("cancel").fill_null(0)).filter(pl.col("cancel") > 0))
        with self._registered(_failed=failed, _taken=taken, _rest=rest.select(*month, "cancel")):
            self.run(
                """
                insert into bank_entries
                select person_id_of(t._k), t.month_idx, t.month_idx, t.cancel, 'CANCEL', t.line_id, r.batch_id, ?
                from _taken t join recoveries r using (line_id)
                """,
                [now],
            )
            self.run(
                """
                insert into bank_entries
                select person_id_of(n._k), n.month_idx, n.month_idx, n.cancel, 'CANCEL', min(p.line_id),
                       min(p.batch_id), ?
                from _rest n join batch_pieces p on p.person_id = person_id_of(n._k)
                join _failed f on f.line_id = p.line_id
                group by all
                """,
                [now],
            )
            self._owe_less("select line_id, sum(cancel) as fen from _taken group by line_id", [], now,
                           "bank return", "the payment recovered failed at the bank: ")
            # Said to the districts, line by line (audit 20A: only a count was said, and a district
            # collecting the amount its recovery file listed took back months never delivered).
            reduced = self.df(
                "select t.line_id, r.district_code, sum(t.cancel)::bigint as cancelled_fen, "
                "any_value(r.amount_fen) as owed_fen, any_value(r.state) as state "
                "from _taken t join recoveries r using (line_id) group by all order by r.district_code, t.line_id")
            if reduced.height:  # in the log too: a night whose run is refused prints no import's lines (audit 20D)
                log.get().warning("recoveries_reduced", recoveries=reduced.to_dicts(),
                                  why="a payment these recoveries claimed failed at the bank: the district "
                                      "collects what each owes now, not what its recovery file listed")
        return taken["line_id"].n_unique(), reduced.to_dicts()

    def set_recovery_state(self, line_ids: list[str], state: str, by: str, note: str | None) -> dict[str, Any]:
        """open → recovered (confirmed by the district) or open → written_off (with a reason)."""
        if not by.strip():
            raise LedgerError("say who made the change (--by)")
        with self._registered(_ids=pl.DataFrame({"line_id": line_ids}).unique()):
            self.run("begin")
            try:
                unknown = [r[0] for r in self.run(
                    "select i.line_id from _ids i anti join recoveries r using (line_id) order by 1 limit 5"
                )]
                if unknown:
                    raise LedgerError(f"unknown recovery line id(s): {', '.join(unknown)}; nothing changed")
                other = self.run(
                    "select line_id, state from recoveries join _ids using (line_id) "
                    "where state not in ('open', ?) order by 1 limit 5",
                    [state],
                )
                if other:
                    raise LedgerError(
                        "recovery line(s) already closed otherwise: "
                        + ", ".join(f"{lid} ({st})" for lid, st in other) + "; nothing changed"
                    )
                n = int(self.one(
                    "select count(*) from recoveries join _ids using (line_id) where state = 'open'"
                )[0])  # type: ignore[index]
                less = self._less_than_listed()
                # The note is added to, not replaced: it says why a recovery owes less than its line
                # (a cancellation), which a confirmation had wiped out (audit 20A).
                self.run(
                    "update recoveries set state=?, changed_at=?, changed_by=?, "
                    "note=case when ?::varchar is null then note when note is null or note = '' then ? "
                    "else note || '; ' || ? end "
                    "where state='open' and line_id in (select line_id from _ids)",
                    [state, _now(), by, note, note, note],
                )
                if n:
                    # which lines, for a retry that restores one cut to nothing since (_undo_failure_cancels)
                    changed = self.df("select line_id from recoveries join _ids using (line_id) "
                                      "where state = 'written_off' order by 1")["line_id"].to_list() \
                        if state == "written_off" else None
                    self._bump(f"recovery_{state}", None, by, {"lines": n, "note": note,
                                                              **({"line_ids": changed} if changed else {})})
                self.run("commit")
                return {"changed": n, "unchanged": len(set(line_ids)) - n, "less_than_listed": less}
            except BaseException:
                self._rollback()
                raise

    def _less_than_listed(self) -> list[dict[str, Any]]:
        """Inside set_recovery_state: the open recoveries among `_ids` that owe less than their
        recovery line listed (a cancellation since: a bank return of months never delivered, or
        entitled again), with both amounts: a district that collected what its file listed has
        the difference to refund (audit 20A). Read from the few batches' lines files concerned."""
        mine = self.df("select r.line_id, r.batch_id, r.district_code, r.amount_fen as recorded_fen "
                       "from recoveries r join _ids using (line_id) where r.state = 'open' order by r.line_id")
        if mine.height == 0:
            return []
        listed = pl.concat([self.part(b, "lines", ["line_id", "amount_fen"]).filter(
            pl.col("line_id").is_in(mine["line_id"].implode())) for b in mine["batch_id"].unique().sort()])
        return (mine.join(listed.select("line_id", listed_fen=-pl.col("amount_fen")), on="line_id")
                .filter(pl.col("recorded_fen") < pl.col("listed_fen"))
                .select("line_id", "district_code", "listed_fen", "recorded_fen").to_dicts())

    def previous_run(self) -> dict[str, Any] | None:
        """The latest run (draft or published) by creation: its as-of and extract size. Creation
        times are whole seconds: of two made in the same second, the later as-of (a quarter and a
        night drafted in one second had the quarter taken for the later run)."""
        cur = self.con.execute(
            "select b.batch_id, b.as_of, b.registry_sha256, b.summary from batches b left join (select batch_id, "
            "max(seq) as seq from events where action = 'draft' group by batch_id) d using (batch_id) "
            "order by b.created_at desc, d.seq desc nulls last, b.as_of desc, b.batch_id desc limit 1"
        )
        rows = cur.fetchall()
        if not rows:
            return None
        bid, as_of, sha, summary = rows[0]
        reg = json.loads(summary)["registry"]
        # rows_with: the most each fact had in any run since the last published quarter (audit 18D:
        # a column leaking 99 rows a night never fell 100 against the night before, and paid them
        # all); a forced run (a purge, said with a reason) is the new baseline. None in the summary
        # of a batch drafted before they were counted.
        high: dict[str, int] = {}
        for (s,) in self.con.execute(
                "select summary from batches where created_at >= coalesce((select max(created_at) from batches "
                "where kind = 'quarterly' and status = 'published'), timestamp '1970-01-01') "
                "order by created_at, batch_id").fetchall():
            one = json.loads(s)
            # a forced run, or one let through by a shrink share raised with a reason (breakers_raised),
            # accepted its extract's counts: they are the new baseline (else every night after it is
            # refused again at the default, until a quarter is published)
            if one.get("forced") or "max_shrink_share" in (one.get("breakers_raised") or {}):
                high = {}
            for k, v in (one["registry"].get("rows_with") or {}).items():
                high[k] = max(high.get(k, 0), int(v))
        return {"batch_id": bid, "as_of": as_of, "registry_sha256": sha, "rows_in": reg["rows_in"],
                "rows_with": high or reg.get("rows_with") or {}}

    def decisions(self, batch_id: str | None = None) -> pl.DataFrame:
        where, params = ("where batch_id = ?", [batch_id]) if batch_id else ("", [])
        return self.df(f"select * from decisions {where} order by decision_id", params)

    def check(self) -> dict[str, Any]:
        """`allowance ledger check`: does the ledger agree with itself? Reads only.

        - every person id in the journal is an 18-character ID (has a key);
        - payees: exactly the people with a published payment line, each row's paid_with the hash
          of their last one's details and its since line a payment to them with those details;
        - `holdings` is exactly the canonical net of the journal (`entries`), person by person;
        - each published batch's PAY and RECOVERY entries add up to its payment and recovery totals;
        - every batch file is there, with the SHA-256 and row count the ledger recorded, and each
          person_key in a lines or pieces file is its row's person_id's key;
        - the recovery register agrees with the published recovery lines and cancellations.
        Returns counts and a list of problems (empty: the ledger is consistent).
        """
        problems: list[str] = []
        published = {bid: no for no, (bid,) in enumerate(
            self.run("select batch_id from events where action = 'publish' order by seq"))}
        # Each file is read once: a published batch's lines give their payees rows as they are read.
        paid = [pl.DataFrame(schema={"_k": pl.Int64, "paid_with": pl.UInt64, "card_with": pl.UInt64,
                                     "since_row": pl.Int32, "batch_no": pl.Int32})]
        for bid, part, name, sha, rows in self.run("select * from batch_files order by batch_id, part"):
            try:
                frame = self._read_part_file(name, sha, rows)
                if "person_key" in frame.columns:  # what a publication trusts instead of parsing person_id
                    # parsed by validation's kernel (35M IDs at four quarters: 1 s, against 6 s as text)
                    shape_ok, *_, key = idcard.parse_id_arrays(frame["person_id"])
                    wrong = int((~shape_ok | (key != frame["person_key"].fill_null(-1).to_numpy())).sum())
                    if wrong:
                        problems.append(f"batch {bid}, {part}: {wrong} row(s) whose person_key is not their "
                                        "person_id's key")
                if part == "lines" and bid in published:
                    # from the texts, not the hashes and keys the file carries: payees are checked against
                    # what was paid
                    paid.append(payee_rows(frame.drop("paid_with", "card_with", "person_key", strict=False))
                                .with_columns(batch_no=pl.lit(published[bid], pl.Int32)))
                del frame
            except LedgerError as e:
                problems.append(f"batch {bid}, {part}: {e}")
        cols = ["_k", "from_mi", "to_mi", "fen"]
        entries = self.df("select person_id, from_mi, to_mi, fen from entries")
        journal = keyed(entries, "journal", strict=False)
        if bad := entries.height - journal.height:
            problems.append(f"{bad} journal row(s) whose person id is not an 18-character ID")
        problems += self._check_payees(list(published), pl.concat(paid).sort("batch_no", maintain_order=True))
        held = self.holdings().with_columns(person_id=idcard.id_from_key_expr("_k"))
        net = net_segments(journal.lazy().select(cols), key="_k").collect()
        stored = held.select(net.columns).cast(net.schema)
        # Compared as multisets (each row with how many times it is there): a holdings run stored
        # twice matches the journal's one run as a set, and would be recovered as overpaid.
        net, stored = (f.with_columns(_n=pl.len().over(cols)) for f in (net, stored))
        differ = pl.concat([net.join(stored, on=[*cols, "_n"], how="anti"),
                            stored.join(net, on=[*cols, "_n"], how="anti")]).select("_k").unique()
        if differ.height:
            who = (pl.concat([held.join(differ, on="_k", how="semi").select("person_id"),
                              journal.join(differ, on="_k", how="semi").select("person_id")])
                   .unique().sort("person_id").head(3)["person_id"].to_list())
            problems.append(
                f"holdings differ from the journal's net for {differ.height} person(s) "
                f"(e.g. {', '.join(idcard.mask(p) for p in who)})"
            )
        totals = self.run(
            """
            select b.batch_id, b.status, b.amount_fen, b.recovery_fen,
                   coalesce(sum(e.fen * (e.to_mi - e.from_mi + 1)) filter (where e.kind = 'PAY'), 0),
                   coalesce(sum(e.fen * (e.to_mi - e.from_mi + 1)) filter (where e.kind = 'RECOVERY'), 0)
            from batches b left join entries e on e.batch_id = b.batch_id and e.kind in ('PAY', 'RECOVERY')
            group by all order by b.batch_id
            """
        )
        for bid, status, amount, recovery, paid, recovered in totals:
            if status == "published" and (paid, recovered) != (amount, recovery):
                problems.append(f"batch {bid}: journal holds {paid} fen paid and {recovered} fen recovered, "
                                f"the batch {amount} and {recovery}")
        problems += self._check_recoveries()
        problems += self._check_ends()
        problems += self._check_notice_days()
        return {
            "ok": not problems,
            "entries": entries.height,
            "holdings_runs": held.height,
            "people": int(held["_k"].n_unique()),
            "batches": len(totals),
            "problems": problems,
        }

    def _check_notice_days(self, today: dt.date | None = None) -> list[str]:
        """`check`'s part for the bank's notices: one on record settled after tomorrow cannot be (a
        year typed wrong), and it decides every later notice of its line. Imports refuse such a
        date since bf463ea; a ledger may hold some recorded before (audit 25A). Staff give each
        the bank's date (`bank-returns date`), which this reads instead."""
        latest = (today or today_shanghai()) + dt.timedelta(days=1)
        # every spelling (returns.days_given): the distinct values not in SETTLED's forms, few or none
        spelt = self.df(f"select distinct settled_at from ({RECORDED_NOTICES}) where settled_at is not null "
                        f"and not regexp_full_match(settled_at, '{SETTLED}')")
        late = spelt.filter(days_given(spelt["settled_at"]) > latest)
        with self._registered(_late=late):
            rows = self.run(
                f"select line_id, status, settled_at, count(*) over () from ({RECORDED_NOTICES}) "
                f"where (regexp_full_match(settled_at, '{SETTLED}') and try_cast(left(settled_at, 10) as date) > ?) "
                "or settled_at in (select settled_at from _late) order by line_id, status limit 1", [latest])
        if not rows:
            return []
        line, status, settled, n = rows[0]
        return [f"{n} bank notice(s) on record settled after tomorrow ({latest}), e.g. line {line}: {status} "
                f"{settled}: a wrong date decides how its line ended; give each the bank's date with "
                "`allowance bank-returns date`"]

    def _check_recoveries(self) -> list[str]:
        """`check`'s part for the recovery register: every published recovery line has one row;
        its months (`recovery_months`, what a draft reads as owed) are that line's pieces; its
        amount is those months less the CANCEL entries naming it; and it is `cancelled` exactly
        when that leaves nothing. A register changed by hand (a state, an amount, a month) would
        otherwise pay months again or chase money not owed, unseen."""
        rows = self.run(
            f"""
            with pieces as (select line_id, from_mi, to_mi, -fen as fen from batch_pieces
                            join batches b using (batch_id) where b.status = 'published' and fen < 0),
                 -- month by month: the register's months and the line's pieces, as multisets
                 moved as (select line_id from (select line_id, from_mi, to_mi, fen from recovery_months
                                                except all select * from pieces)
                           union select line_id from (select * from pieces except all
                                                      select line_id, from_mi, to_mi, fen from recovery_months)),
                 p as (select distinct line_id from pieces),
                 m as (select line_id, sum(fen * (to_mi - from_mi + 1)) as fen from recovery_months group by line_id),
                 c as (select line_id, sum(fen * (to_mi - from_mi + 1)) as fen from bank_entries
                       where kind = 'CANCEL' group by line_id),
                 o as ({_STILL_OWED_MONTHS})
            select
              count(*) filter (where r.line_id is null),
              count(*) filter (where p.line_id is null),
              count(*) filter (where p.line_id is not null and r.line_id is not null
                               and r.line_id in (select line_id from moved)),
              count(*) filter (where r.amount_fen <> coalesce(m.fen, 0) - coalesce(c.fen, 0)),
              count(*) filter (where (r.state = 'cancelled') <> (r.amount_fen = 0)),
              count(*) filter (where r.months <> coalesce(o.months, 0))
            from p full join recoveries r using (line_id) left join m using (line_id) left join c using (line_id)
                 left join o using (line_id)
            """)[0]
        what = ["published recovery line(s) with no recovery register row",
                "recovery register row(s) with no published recovery line",
                "recovery register row(s) whose months are not their recovery line's pieces",
                "recovery register row(s) whose amount is not their months less what was cancelled of them",
                "recovery register row(s) whose state does not match what they still owe (cancelled when nothing)",
                "recovery register row(s) whose months are not the months they still owe something of (a ledger "
                "made before they followed cancellations: `allowance ledger upgrade` mends them)"]
        problems = [f"{n} {w}" for n, w in zip(rows, what, strict=True) if n]
        # A state no command set: `recoveries confirm` and `write-off` record how many lines each
        # changed (events recovery_recovered, recovery_written_off). Recovered is final; a written-off
        # recovery can still be cancelled (entitled again), so those are at most what was written off.
        # A recovery set to recovered by hand is no longer owed, and its months would be paid again.
        for state in ("recovered", "written_off"):
            rows_now, set_by_commands = self.one(
                f"select (select count(*) from recoveries where state = '{state}'), "
                "(select coalesce(sum(cast(json_extract(detail, '$.lines') as bigint)), 0) from events "
                f"where action = 'recovery_{state}')")  # type: ignore[misc]
            if (rows_now > set_by_commands) if state == "written_off" else (rows_now != set_by_commands):
                problems.append(f"{rows_now} recovery register row(s) {state.replace('_', ' ')}, but commands set "
                                f"{set_by_commands}: a state changed by hand")
        return problems

    def _check_ends(self) -> list[str]:
        """`check`'s part for person_ends: each person's is what the last published batch whose
        draft changed it (batch_ends) said, and none where that withdrew it."""
        n = self.one(f"""
            with {_PUBLISHED_ORDER},
                 last as (select person_key, start_mi, end_mi, batch_id from (
                              select e.*, row_number() over (partition by e.person_key order by p.published desc) as r
                              from batch_ends e join porder p using (batch_id)) where r = 1 and end_mi is not null)
            select (select count(*) - count(distinct person_key) from person_ends) + count(*)
            from last l full join person_ends e using (person_key)
            where l.person_key is null or e.person_key is null or l.end_mi <> e.end_mi or l.start_mi <> e.start_mi
                  or l.batch_id <> e.batch_id
            """)[0]  # type: ignore[index]
        what = "person end(s) (death, hukou moved out) not as the published batches' extracts left them"
        return [f"{n} {what}"] if n else []

    def _check_payees(self, published: list[str], every: pl.DataFrame) -> list[str]:
        """`check`'s part for payees, against `every`: payee_rows of every published batch's lines,
        recomputed from their texts, with batch_no (the batch's place in `published`, the
        publication order: 4 quarters at 15.35M are 17.6 million rows)."""
        problems = []
        last = every.unique("_k", keep="last")  # publication order: the last line is the latest
        stored = self.df("select person_key as _k, paid_with, card_with, since_batch, since_row from payees")
        stored = stored.select(
            "_k", "paid_with", "card_with", "since_row",
            batch_no=pl.col("since_batch").replace_strict(published, list(range(len(published))), default=-1,
                                                          return_dtype=pl.Int32))
        if n := last.join(stored, on="_k", how="anti").height:
            problems.append(f"{n} person(s) with a published payment line but no payees row")
        if n := stored.join(last, on="_k", how="anti").height:
            problems.append(f"{n} payees row(s) of people with no published payment line")
        both = stored.join(last, on="_k", suffix="_last")
        if n := both.filter((pl.col("paid_with") != pl.col("paid_with_last"))
                            | (pl.col("card_with") != pl.col("card_with_last"))).height:
            problems.append(f"{n} payees row(s) whose details are not those of their last payment line")
        line = pl.col("batch_no").cast(pl.Int64) * (1 << 32) + pl.col("since_row")  # a line, as one integer
        pointed = stored.with_columns(line=line).join(
            every.select("_k", "paid_with", "card_with", line=line), on="line", how="left", suffix="_line")
        if n := pointed.filter(pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_line"))
                                                 for c in ("_k", "paid_with", "card_with"))).height:
            problems.append(f"{n} payees row(s) whose since line is not a payment to them with those details")
        return problems

    def published_folders(self, batch_id: str | None = None) -> dict[str, Path | None]:
        """Each published batch's out folder (or `batch_id`'s alone): the one recorded at its
        publication, or the last its files were written to since (`record_bank_folder`); None for
        a batch published before bb1e218, which recorded none. Its files are `<out>/<batch_id>`."""
        rows = self.run(
            "select batch_id, arg_max(detail->>'out', seq) from events where action in ('publish', 'bank_folder') "
            "and (? is null or batch_id = ?) group by batch_id order by min(seq)", [batch_id, batch_id])
        return {bid: Path(o) if o else None for bid, o in rows}

    def published_elsewhere(self, batch_id: str, out: Path) -> Path | None:
        """The folder a published batch's bank files belong in, when it is not `out`: its files are
        written only there (a second copy could reach the bank twice). None when they belong in
        `out`: a draft; the recorded folder is `out`; none was recorded (before bb1e218); or the
        recorded one no longer exists (moved together with the ledger)."""
        first = self.published_folders(batch_id).get(batch_id)
        return first if first is not None and first != out.resolve() and first.exists() else None

    def record_bank_folder(self, batch_id: str, out: Path, by: str) -> None:
        """A published batch's files were written to `out`, not to the folder recorded before (it
        had gone: moved with the ledger, or none was recorded): `out` is recorded, so that `ledger
        check` verifies the files there and later publications write only there. An event of its
        own, which changes nothing paid or owed (drafts do not go stale)."""
        was = self.published_folders(batch_id).get(batch_id)
        self.run("begin")
        try:
            self._bump("bank_folder", batch_id, by, {"out": str(out.resolve()), "was": str(was) if was else None})
            self.run("commit")
        except BaseException:
            self._rollback()
            raise

    def record_delivery(self, batch_id: str, delivered: bool, out: Path, why: str | None = None) -> None:
        """A published batch's files could not be moved into place in `out` (`delivered` False: the
        folder was gone, unmounted, when the ledger had committed), or are being moved there after
        such a failure (True: recorded just before the rename, the staged folder saying they are owed
        until it; a failed rename records them owed again).
        Without the record, a published batch with neither its folder nor its staged files was
        taken for one the bank had collected, and never written (audit 26C: paid in the ledger,
        never delivered, and every command saying it was). Events of their own, which change
        nothing paid or owed (drafts do not go stale)."""
        self.run("begin")
        try:
            self._bump("bank_files_delivered" if delivered else "bank_files_undelivered", batch_id, None,
                       {"out": str(out.resolve()), **({"why": why} if why else {})})
            self.run("commit")
        except BaseException:
            self._rollback()
            raise

    def undelivered(self) -> dict[str, Path]:
        """The published batches whose files a publication could not move into place and that no
        publication has delivered since (record_delivery), with the folder they are owed to."""
        rows = self.run(
            "select batch_id, arg_max(detail->>'out', seq) from events "
            "where action in ('bank_files_undelivered', 'bank_files_delivered') group by batch_id "
            "having arg_max(action, seq) = 'bank_files_undelivered' order by batch_id")
        return {bid: Path(o) for bid, o in rows}

    def ledger_state_seq(self) -> int:
        """The sequence number of the last event that changed the ledger (not drafts, upgrades or
        approvals): a draft's base, and part of its batch id, so that a run after any publication,
        even of an empty batch, is a new batch. Whether a draft is stale is `changed_since`."""
        row = self.one(
            f"select coalesce(max(seq), 0) from events where action not in {NOT_STATE_ACTIONS}")
        return int(row[0]) if row else 0

    def ledger_state_count(self) -> int:
        """How many events have changed the ledger (as ledger_state_seq counts them). Not the last
        one's sequence number, which every draft and approval before it moves: a draft run twice,
        or killed after its commit and run again, gave every later batch another id, and so other
        line ids and bank files (an audit)."""
        row = self.one(f"select count(*) from events where action not in {NOT_STATE_ACTIONS}")
        return int(row[0]) if row else 0

    def ledger_state(self) -> str:
        """What a batch id names of the ledger: how many events changed it, and what they left
        (the batches published, each bank return file imported, every review decision, each
        recovery closed), as a digest; the count alone for a ledger with none of these, so a first
        batch's id is what it always was. A count alone named two histories alike: a ledger
        restored from its backup, then given another bank return, drafted a batch of another
        content under the id of one already delivered (audit 18A). Times, actors and notes are
        left out: two ledgers given the same commands draft the same batches."""
        count = self.ledger_state_count()
        row = self.one("""select string_agg(x, chr(10) order by x) from (
            select 'published|' || batch_id as x from batches where status = 'published'
            union all select 'returns|' || coalesce(detail->>'file_sha256', '') from events
                where action = 'bank_returns'
            union all select concat_ws('|', 'dated', detail->>'line_id', detail->>'status', detail->>'settled_at')
                from events where action = 'notice_dated' and ((detail->>'failed')::bigint > 0
                                                               or (detail->>'paid_on_retry')::bigint > 0)
            union all select concat_ws('|', 'decision', batch_id, person_id, action, from_month, to_month)
                from decisions
            union all select concat_ws('|', 'recovery', line_id, state) from recoveries where state <> 'open')""")
        facts = row[0] if row and row[0] else ""
        return f"{count}:{hashlib.sha256(facts.encode()).hexdigest()[:16]}" if facts else str(count)

    def draft_is_stale(self, batch_id: str) -> bool:
        """Is `batch_id` a draft made before the ledger last changed (it can no longer be published)?"""
        b = self.batch(batch_id)
        return b["status"] == "draft" and self.changed_since(b["base_seq"])

    def new_no_card(self, batch_id: str) -> int:
        """How many on the batch's no-card list the last published batch's list did not name."""
        row = self.one(
            "select count(*) from batch_no_card d where d.batch_id = ? and d.person_id not in ("
            "select person_id from batch_no_card where batch_id = (select batch_id from batches "
            "where status = 'published' order by published_at desc, batch_id desc limit 1))", [batch_id])
        return int(row[0]) if row else 0

    def changed_since(self, base_seq: int) -> bool:
        """Has anything changed what is paid or owed since `base_seq` (a draft's base)?"""
        row = self.one(f"select count(*) from events where seq > ? and {STATE_EVENTS}", [base_seq])
        return bool(row and row[0])

