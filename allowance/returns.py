"""Files that come back: bank returns (SPEC §8) and recovery confirmations, read and checked."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import polars as pl

from allowance.errors import InputError, first_line
from allowance.months import SHANGHAI
from allowance.registry import (
    check_parquet_footer,
    read_utf8_csv,
    refuse_nested,
    refuse_repeated_header,
    refuse_unterminated,
)

RETURN_COLUMNS = ("line_id", "status", "reason", "settled_at")
# Columns a bank may send back beside SPEC §8's, as its own record of the line: when present, each
# row is held to the ledger's line (import_bank_returns) before anything is recorded.
CHECKED_COLUMNS = ("batch_id", "amount_fen")


def _read_text_table(path: Path, required: tuple[str, ...], what: str,
                     optional: tuple[str, ...] = ()) -> pl.DataFrame:
    """The columns `required` and `optional` of a return or confirmation file, as trimmed text."""
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        if path.suffix.lower() == ".parquet":
            check_parquet_footer(path)  # a file cut short made polars panic (an audit)
            df = pl.read_parquet(path)
        elif path.suffix.lower() in (".csv", ".txt"):
            df = read_utf8_csv(path, f"a {what} is a .parquet or a UTF-8 .csv file")
            refuse_repeated_header(path, (*required, *optional))
            refuse_unterminated(path)  # cut short in its last field (audit 18E: settled_at '202' recorded)
        else:
            raise InputError(f"{path}: unknown {what} format {path.suffix or '(none)'}; expected .parquet or .csv")
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError) as e:
        # a panic is polars' own failure on a damaged file's bytes (an audit): a page of Rust
        why = "its data cannot be decoded" if isinstance(e, pl.exceptions.PanicException) else first_line(e)
        raise InputError(f"{path}: cannot read the {what} ({why}); is the file whole?") from None
    known = dict.fromkeys((*required, *optional))
    # A column named nearly as one the engine reads (`AMOUNT_FEN`, `batch_id `) would be ignored,
    # and with it what the bank claims of its lines (an audit): refused, saying the exact name.
    if near := [(c, k) for c in df.columns for k in known if c != k and c.strip().lower() == k]:
        raise InputError(f"{path}: column {near[0][0]!r} is read as {near[0][1]} only when named exactly so; "
                         "fix the header")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    kept = [c for c in df.columns if c in known]
    refuse_nested(path, df.select(kept).schema)
    texts = df.select([pl.col(c).cast(pl.String).str.strip_chars() for c in kept]).select(pl.all().replace("", None))
    # A row with nothing in it (a blank line at the end, Excel's `,,,`) is no row; it refused the
    # whole file (an audit), and the nightly job with it, every night until staff moved the file.
    # A bank's own columns alone (a totals row: only an amount) make no row either.
    # `_row` is each row's line in the file (the header is line 1), kept for what is said of it.
    rows = [c for c in kept if c not in CHECKED_COLUMNS]
    return texts.with_row_index("_row", offset=2).filter(pl.any_horizontal(pl.col(rows).is_not_null()))


# settled_at as the engine orders it: a local date, with a time of day or not; anything else (a
# time zone or offset, `2025/07/16`, `20250716`) gives no order (audit 20D: DuckDB's cast dropped an
# offset, and a PAID three hours after a failure was taken for the credit before it).
SETTLED = r"^([0-9]{4}-[0-9]{2}-[0-9]{2})(?:[ T]((?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]+)?)?))?$"


def day_given(value: str | None) -> dt.date | None:
    """The day (in Shanghai) a settled_at value names, however it is spelled: `YYYY-MM-DD` with a
    time or not, `20250810`, `2025/08/10` or `2025.08.10`, or an ISO timestamp with an offset
    (`Z`, `+08:00`) read in Shanghai. None where it names none. Not an order (settled_before
    keeps to SETTLED's forms): what a date staff give a notice must agree with (audit 25A)."""
    if value is None:
        return None
    v = value.strip()
    m = re.match(r"^([0-9]{4})[-/.]?([0-9]{2})[-/.]?([0-9]{2})(?:$|[ T])", v)
    try:
        stamp = dt.datetime.fromisoformat(v.replace(" ", "T", 1)) if m else None
    except ValueError:
        stamp = None
    try:
        if stamp is not None and stamp.tzinfo is not None:
            return stamp.astimezone(SHANGHAI).date()
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None
    except ValueError:
        return None


def days_given(settled_at: pl.Series) -> pl.Series:
    """day_given of each value, as a Date column: the values in SETTLED's forms (nearly all, or
    all) by one expression; the few distinct others one by one (audit 25B: `20240802`, a wrong
    year in another spelling, was not held to the batch's dates, and could then never be dated)."""
    frame = settled_at.cast(pl.String).to_frame("s")
    days = frame.select(settled_day("s")).to_series()
    other = frame.filter(pl.col("s").is_not_null() & days.is_null())["s"].unique()
    if other.len() == 0:
        return days.alias("day")
    named = pl.DataFrame({"s": other, "d": [day_given(v) for v in other]}, schema={"s": pl.String, "d": pl.Date})
    return frame.join(named, on="s", how="left", maintain_order="left").select(
        pl.coalesce(days, pl.col("d")).alias("day")).to_series()


def settled_day(col: str) -> pl.Expr:
    """The date of a row's settled_at, null where it is not one of SETTLED's forms."""
    return pl.col(col).str.extract(SETTLED, 1).str.to_date("%Y-%m-%d", strict=False)


def settled_clock(col: str) -> pl.Expr:
    """Its time of day as `HH:MM:SS.fffffffff` (seconds and nine digits of a fraction filled in with
    zeros: a Parquet timestamp read as text has six), null where it gives none (or gives no date):
    text of one width, so that one instant spelled two ways compares equal (audit 20F: `10:00:00`
    and `10:00:00.000000` had compared as two instants)."""
    t = pl.col(col).str.extract(SETTLED, 2)
    whole = pl.when(t.str.len_chars() == 5).then(t + ":00").otherwise(t.str.slice(0, 8))
    fraction = pl.coalesce(t.str.extract(r"\.([0-9]+)$", 1), pl.lit("")).str.slice(0, 9).str.pad_end(9, "0")
    return pl.when(settled_day(col).is_not_null() & t.is_not_null()).then(whole + "." + fraction)


def settled_before(a: str, b: str) -> pl.Expr:
    """Row settled_at `a` is known to be before `b`: an earlier date, or on the same date both
    with a time and `a`'s earlier. A date without a time beside a time on that day gives no order,
    and nor does a value in no form SETTLED reads: neither is known to be before."""
    da, db = settled_day(a), settled_day(b)
    ca, cb = settled_clock(a), settled_clock(b)
    return ((da < db) | ((da == db) & (ca < cb))).fill_null(False)


def unordered_in_file(notices: pl.DataFrame) -> pl.DataFrame:
    """The lines of one file's new notices (line_id, status, settled_at) with a PAID and a FAILED
    in no known order (settled_before), each such pair once: line_id, settled_at (the PAID's),
    failed_at. Both PAID and FAILED for one line, each PAID in a known order with each FAILED, say
    how it ended (line_fates): the credit then its return is a bounce (退汇), the failure then a
    retry's credit is paid, and a line's whole story (a failed attempt, the retry's credit, its
    bounce) may be told in one file. Without a known order the file contradicts itself (audit 20A:
    a bank's statement of a bounce was refused whole). Only rows not on record are held to it
    (audit 25A: a bank re-sending its statement with an undated failure staff had since dated,
    and the retry's credit, was refused every night)."""
    both = notices.filter(pl.col("status") == "PAID").join(
        notices.filter(pl.col("status") == "FAILED").select("line_id", failed_at="settled_at"), on="line_id")
    return both.filter(~settled_before("settled_at", "failed_at") & ~settled_before("failed_at", "settled_at")
                       ).select("line_id", "settled_at", "failed_at")


def latest_notices(notices: pl.DataFrame) -> pl.DataFrame:
    """The rows of `notices` (line_id, settled_at, …) that no other row of their line is known to
    be after (settled_before): a line's latest notices, one or several where their order is not
    known. What line_fates and a notice staff date (Ledger.date_bank_notice) read a line's end from."""
    ev = notices.with_row_index("_e")
    later = (ev.join(ev.select("line_id", _after="settled_at"), on="line_id")
             .filter(settled_before("settled_at", "_after")).select("_e").unique())
    return ev.join(later, on="_e", how="anti").drop("_e")


def line_fates(recorded: pl.DataFrame, fresh: pl.DataFrame, reversed_lines: pl.DataFrame) -> pl.DataFrame:
    """How each line a bank return file brings news of ended (SPEC §8): its latest status by
    settled_at, over the rows recorded before (`recorded`) and the new ones (`fresh`), each
    line_id, status, settled_at. PAID then FAILED is a bounce (退汇): FAILED; FAILED then PAID is
    a retry the bank paid: PAID. `reversed_lines` (line_id) are the lines the ledger holds
    reversed now. One row per line with a fresh row, in no order: line_id, was_reversed, fate (PAID, FAILED,
    or null where the order is not known: the import is refused) and said (its rows' statuses
    and settled_at).

    The latest rows are those no other row is known to be after (settled_before). Where they do
    not agree: a new FAILED against a line never failed before is a bounce, as it always was (the
    bank's return comes after its credit); no new row among them leaves the line as it was (a
    notice of an earlier attempt); anything else has no known order."""
    cols = {"line_id": pl.String, "was_reversed": pl.Boolean, "fate": pl.String, "said": pl.List(pl.String)}
    if not fresh["line_id"].is_sorted():
        fresh = fresh.sort("line_id")
    ids = fresh["line_id"]
    # A line's only notice is how it ended (a quarter's return file: millions of lines, each once):
    # no pair of notices to order. Told apart without hashing millions of ids: the fresh rows are
    # sorted, so a line's other fresh rows are next to it, and rows recorded before are few.
    alone = ((ids != ids.shift(1)).fill_null(True) & (ids != ids.shift(-1)).fill_null(True))
    if recorded.height:
        recorded = recorded.filter(pl.col("line_id").is_in(ids.implode()))
        alone &= ~ids.is_in(recorded["line_id"].implode())
    was = (pl.col("line_id").is_in(reversed_lines["line_id"].implode()) if reversed_lines.height
           else pl.repeat(False, pl.len()))
    single = fresh.filter(alone).select("line_id", was_reversed=was, fate="status",
                                        said=pl.lit(None, pl.List(pl.String)))
    ev = pl.concat([recorded.with_columns(new=pl.lit(False)), fresh.filter(~alone).with_columns(new=pl.lit(True))],
                   how="vertical_relaxed")
    latest = latest_notices(ev).group_by("line_id").agg(
        statuses=pl.col("status").unique(),
        new_failed=(pl.col("new") & (pl.col("status") == "FAILED")).any(),
        new_latest=pl.col("new").any())
    lines = ev.group_by("line_id").agg(
        failed_before=(~pl.col("new") & (pl.col("status") == "FAILED")).any(),
        said=(pl.col("status") + " " + pl.col("settled_at").fill_null("undated")).unique().sort())
    several = lines.join(latest, on="line_id").select(
        "line_id", was_reversed=was,
        fate=pl.when(pl.col("statuses").list.len() == 1).then(pl.col("statuses").list.first())
        .when(~pl.col("new_latest")).then(pl.when(was).then(pl.lit("FAILED")).otherwise(pl.lit("PAID")))
        .when(pl.col("new_failed") & ~pl.col("failed_before")).then(pl.lit("FAILED")),
        said="said")
    return pl.concat([single.cast(cols), several.cast(cols)])


def read_bank_returns(path: Path) -> pl.DataFrame:
    """line_id, status (PAID|FAILED), reason, settled_at — one row per line and status and
    settled_at, checked; with the
    bank's batch_id and amount_fen (int64) where the file has them, for the ledger to check."""
    df = _read_text_table(path, ("line_id", "status"), "bank return file", (*RETURN_COLUMNS, *CHECKED_COLUMNS))
    for c in RETURN_COLUMNS:
        if c not in df.columns:
            df = df.with_columns(pl.lit(None, pl.String).alias(c))
    checked = [c for c in CHECKED_COLUMNS if c in df.columns]
    df = df.select("_row", *RETURN_COLUMNS, *checked).with_columns(pl.col("status").str.to_uppercase())
    if "amount_fen" in checked:
        # Fen as the lines carry them: a whole number, read from its text (never through a float).
        # `105000.0` is whole (a pandas integer column with a gap is written as floats: an
        # audit); `450.50` and `4.5e4` are not, and a number past int64 is no amount.
        digits = pl.col("amount_fen").str.extract(r"^([+-]?[0-9]+)(?:\.0*)?$")
        fen = digits.cast(pl.Int64, strict=False)
        if (odd := df.filter(pl.col("amount_fen").is_not_null() & fen.is_null())).height:
            r = odd.row(0, named=True)
            raise InputError(f"{path}: row {r['_row']}: amount_fen {r['amount_fen']!r} is not a whole number of fen "
                             f"(an int64); {odd.height} such row(s)")
        df = df.with_columns(amount_fen=fen)
    bad = df.filter(
        pl.col("line_id").is_null() | ~pl.col("status").is_in(["PAID", "FAILED"]).fill_null(False)
    )
    if bad.height:
        r = bad.row(0, named=True)
        raise InputError(f"{path}: row {r['_row']}: needs a line_id and status PAID or FAILED "
                         f"(got {r['line_id']!r}, {r['status']!r}); {bad.height} such row(s)")
    # A line listed twice is kept once: every copy must then say the same of it (an audit had a
    # second row's other batch and amount dropped unchecked with the copy).
    for c in checked:
        twice = (df.group_by("line_id", maintain_order=True).agg(pl.col(c).drop_nulls().n_unique())  # a blank: no claim
                 .filter(pl.col(c) > 1))
        if twice.height:
            raise InputError(f"{path}: line {twice['line_id'][0]} is listed more than once with different {c}")
    # The copy kept carries the claim any copy makes (they agree): a blank first copy dropped the
    # second's, unchecked (an audit).
    df = df.with_columns(pl.col(c).fill_null(pl.col(c).max().over("line_id")) for c in checked)
    # Every row is kept, so that no row's order decides anything (audit 20D: of two PAID rows the
    # first had been kept, and whether it was a bounce's credit with it). A PAID and a FAILED of one
    # line in no known order are the ledger's to refuse (unordered_in_file): only it knows the rows
    # on record, and the dates staff gave them.
    return df.drop("_row").unique(subset=["line_id", "status", "settled_at"], keep="first", maintain_order=True)


def read_line_ids(path: Path, what: str) -> list[str]:
    df = _read_text_table(path, ("line_id",), what)
    ids = df["line_id"].drop_nulls().unique(maintain_order=True).to_list()
    if not ids:
        raise InputError(f"{path}: no line ids in the {what}")
    return ids
