"""Read a registry extract (SPEC §3) and split it into clean rows and quarantined rows.

Every check is a polars expression over the whole extract. A row that fails any check is
quarantined with every reason it failed (`reasons`) and the first of them (`reason`, in the
order of constants.QUARANTINE_REASONS). Rows in = clean + quarantined, always.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from allowance import idcard, log
from allowance.bytescan import bad_text, digits_only, needs_trim, warm_up
from allowance.constants import (
    DATE_COLUMNS,
    DISTRICT_CODES,
    MAX_AGE_ALIVE,
    NAME_MAX_BYTES,
    QUARANTINE_REASONS,
    REGISTRY_COLUMNS,
)
from allowance.errors import InputError, RefusedError, first_line
from allowance.months import SHANGHAI

DEFAULT_MAX_QUARANTINE_SHARE = 0.005  # engine rule: refuse to pay a broken extract (SPEC §3)

CLEAN_SCHEMA: dict[str, pl.DataType] = {
    "person_id": pl.String(),
    "name": pl.String(),
    "birth_date": pl.Date(),
    "district_code": pl.String(),
    "hukou_since": pl.Date(),
    "hukou_out_date": pl.Date(),
    "death_date": pl.Date(),
    "channel": pl.String(),
    "card_no": pl.String(),
}


@dataclass
class Validated:
    clean: pl.DataFrame  # the clean rows (only those a `keep` filter kept, when given one)
    quarantine: pl.DataFrame
    rows_in: int
    legacy_upgraded: int
    sha256: str
    by_reason: dict[str, int] = field(default_factory=dict)
    # Clean rows that carry a death date, a hukou out date: a registry keeps its dead and those who
    # moved out, so from one extract to the next these hardly fall (runs.draft_run's breaker).
    rows_with: dict[str, int] = field(default_factory=dict)

    @property
    def quarantine_share(self) -> float:
        return self.quarantine.height / self.rows_in if self.rows_in else 0.0

    def take_clean(self) -> pl.DataFrame:
        """Hand the clean rows over and keep none here (counts stay right: clean = in - quarantined).

        A draft narrows them to the people who can be paid at once; keeping all 15 million rows
        alive beside that for the rest of the draft cost over a GB of peak memory.
        """
        clean, self.clean = self.clean, self.clean.clear()
        return clean

    def summary(self) -> dict[str, object]:
        return {
            "rows_in": self.rows_in,
            "clean": self.rows_in - self.quarantine.height,
            "quarantined": self.quarantine.height,
            "legacy_ids_upgraded": self.legacy_upgraded,
            "quarantine_by_reason": self.by_reason,
            "registry_sha256": self.sha256,
            "rows_with": self.rows_with,
        }


FACT_COLUMNS = ("death_date", "hukou_out_date")  # facts an extract keeps once it has them


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def read_extract(path: Path | str) -> pl.LazyFrame:
    """Parquet or CSV with the columns of SPEC §3, every column read as text or date."""
    return _read_extract(Path(path))[0]


def _read_extract(p: Path) -> tuple[pl.LazyFrame, pl.Series | None]:
    """The extract, and where a CSV had blank rows (skipped), each row's number in the file
    (None when every row is read: its place is its number)."""
    file_rows: pl.Series | None = None
    if p.is_dir():
        raise InputError(f"{p}: is a folder; --registry takes the extract file (.parquet or .csv)")
    if not p.is_file():
        raise InputError(f"{p}: registry extract not found")
    suffix = p.suffix.lower()
    try:
        if suffix == ".parquet":
            check_parquet_footer(p)
            lf = pl.scan_parquet(p)
            names = lf.collect_schema().names()
        elif suffix in (".csv", ".txt"):
            # Read whole, once: validation takes the extract in blocks, and each block of a lazy
            # CSV scan would parse the file again from its start.
            try:
                df = read_utf8_csv(p, "--registry takes a .parquet or a UTF-8 .csv extract")
            except pl.exceptions.PolarsError as e:
                # a row with more fields than the header: said as one with fewer is, naming it (audit
                # 25B: polars' own "found more fields than defined in 'Schema'" named no row)
                if "more fields" in str(e):
                    _refuse_short_rows(p, len(pl.read_csv(p, n_rows=0, infer_schema=False).columns))
                raise
            # A row with nothing in it (blank lines at the end, Excel's `,,,,`, a line of spaces) is
            # no person: an audit had two trailing blank lines quarantined as MISSING_FIELD, which
            # refused a small extract for its quarantine share. The rows after one keep their
            # number in the file (data row n, the header not counted), which the quarantine and
            # the refusals name: staff find a row by it (numbered without them, the quarantine
            # named the row above or below: an audit).
            blank = pl.all_horizontal(pl.all().str.strip_chars().replace("", None).is_null())
            if skipped := int(df.select(blank.sum()).item()):
                log.get(file=str(p)).warning("blank_rows_skipped", rows=skipped)
                file_rows = pl.int_range(1, df.height + 1, dtype=pl.Int64, eager=True).filter(
                    ~df.select(blank).to_series())
                df = df.filter(~blank)
            lf = df.lazy()
            names = lf.collect_schema().names()
            refuse_repeated_header(p)
            refuse_unterminated(p)
            _refuse_short_rows(p, len(names))
            _refuse_line_breaks(p, lf, file_rows)
        else:
            raise InputError(f"{p}: unknown extract format {suffix or '(none)'}; expected .parquet or .csv")
        missing = [c for c in REGISTRY_COLUMNS if c not in names]
        if missing:
            raise InputError(f"{p}: missing column(s) {', '.join(missing)}; SPEC §3 lists "
                             f"{', '.join(REGISTRY_COLUMNS)}{_header_hint(names, missing)}")
        lf = lf.select(REGISTRY_COLUMNS)
        refuse_nested(p, lf.collect_schema(), "; export it as SPEC §3 gives it")
        _refuse_numbers_for_text(p, lf.collect_schema())
        _refuse_times_of_day(p, lf)
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError) as e:
        raise _unreadable(p, e) from None
    return lf, file_rows


def read_utf8_csv(p: Path, takes: str) -> pl.DataFrame:
    """A CSV file read whole, every column as text, in strict UTF-8 (the extract, a bank return
    file): a GBK or GB18030 export read leniently turns every Chinese name into replacement
    characters, clean rows, and bank files with names no bank can match. What it is instead is
    said: UTF-16, not text at all (`takes` says what is wanted), or another encoding."""
    with p.open("rb") as f:
        head = f.read(4096)
    even, odd = head[:200:2].count(0), head[1:200:2].count(0)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or (max(even, odd) > 40 and min(even, odd) < 5):
        # Excel's "Unicode text" (without its byte-order mark, every other byte of a Latin text
        # is 0): read as UTF-8 it showed as a file missing every column (an audit)
        raise InputError(f"{p}: UTF-16 text, not UTF-8; save it as CSV UTF-8, or convert it, for example "
                         "`iconv -f UTF-16 -t UTF-8`")
    if b"\x00" in head:
        raise InputError(f"{p}: not a text file (it holds NUL bytes); {takes}")
    not_utf8 = InputError(f"{p}: not UTF-8 text (a GBK or GB18030 export?); convert it to UTF-8, "
                          f"for example `iconv -f GB18030 -t UTF-8`")
    try:
        # the header itself, whole: polars read a GBK header (one Chinese column name over ASCII
        # rows) without a word, and the checks that read it as text then crashed (an audit)
        with p.open("rb") as f:
            f.readline(1 << 20).decode("utf-8")
    except UnicodeDecodeError:
        raise not_utf8 from None
    try:
        return pl.read_csv(p, infer_schema=False, encoding="utf8")
    except pl.exceptions.ComputeError as e:
        if "utf-8" not in str(e).lower():
            raise
        raise not_utf8 from None


def check_parquet_footer(p: Path) -> None:
    """What the Parquet footer says, checked before polars reads the data, where both faults
    below made it panic: a page of Rust trace instead of a message (audits).

    - A file shorter than its footer says: its column chunks must lie inside the file. A copy cut
      in the middle, its footer whole, is refused naming what is missing.
    - A timestamp column labelled with a time zone polars does not know ('CST', 'GMT+8', common
      in exports). Each label is tried with polars' own time zone database, which says no
      without panicking (the system's, which knows `localtime` or `posix/...`, let those through
      to the panic: a second audit); a label it does not know is refused, with its column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(p)
    except (pa.ArrowException, OSError):
        return  # not readable as Parquet: polars says so, below
    size = p.stat().st_size
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        for c in range(rg.num_columns):
            col = rg.column(c)
            start = (col.dictionary_page_offset if col.has_dictionary_page and col.dictionary_page_offset
                     else col.data_page_offset)
            if start + col.total_compressed_size > size:
                raise InputError(f"{p}: the file is shorter than its footer says ({size} bytes; row group {g} "
                                 f"ends at byte {start + col.total_compressed_size}): cut short or copied in part; "
                                 "copy it again")
    schema = meta.schema.to_arrow_schema()
    for f in schema:
        tz = getattr(f.type, "tz", None) if pa.types.is_timestamp(f.type) else None
        if not tz:
            continue
        try:
            pl.Series([0]).cast(pl.Datetime("us")).dt.replace_time_zone(tz)
        except pl.exceptions.PolarsError:
            raise InputError(f"{p}: column {f.name} is labelled with time zone {tz!r}, which is not a time zone name "
                             "this engine knows; label it Asia/Shanghai (or +08:00), or export dates") from None


def refuse_repeated_header(p: Path, columns: tuple[str, ...] = REGISTRY_COLUMNS) -> None:
    """A CSV header naming one of `columns` twice is refused: polars reads the second as another
    column (`death_date_duplicated_0`), and an audit had the empty first death_date read and 176
    dead people paid. Which of the two holds the data cannot be known."""
    import csv
    from collections import Counter

    with p.open(encoding="utf-8-sig", newline="") as f:
        header = next(csv.reader(f), [])
    # only the columns the engine reads: two empty names (trailing commas) or a `remark` twice
    # are another system's business, and the engine before read such files (a second audit)
    twice = sorted(c for c, n in Counter(header).items() if n > 1 and c in columns)
    if twice:
        raise InputError(f"{p}: the header names column(s) {', '.join(twice)} more than once; which one holds the "
                         "data cannot be known: fix the export")


def refuse_unterminated(p: Path) -> None:
    """A CSV (an extract, a bank return) whose last row has no line break after it is refused: a
    copy or a transfer cut short inside its last field leaves a row with every field there and the
    last one cut, which no check can tell from a whole value (audit 18C: a 16-digit card cut to 14
    digits was paid into; with the death date the last column, a death date cut away entirely paid
    the dead). Every export tool ends its last row with one; a file written by hand without it is
    refused in one line saying so. What follows the last line break may hold no row (white space,
    a row of commas, DOS's end-of-file mark)."""
    with p.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - 4096))
        tail = f.read()
    # What follows the last line break may be nothing a row is made of: white space (an ideographic
    # space too), DOS's end-of-file mark, a blank row of commas (audit 18E: such files were refused)
    last = re.split(rb"[\r\n]", tail)[-1].decode("utf-8", "replace")
    if tail and re.sub(r"[\s,\x1a\u3000]", "", last) != "":
        raise InputError(f"{p}: the last row does not end with a line break, as a file cut short in its last "
                         "field would not: copy it again (or, if it is whole, end it with a line break)")


def _refuse_line_breaks(p: Path, lf: pl.LazyFrame, file_rows: pl.Series | None = None) -> None:
    """A CSV field that swallowed rows is refused, with the file: a quote left open in a name
    makes every row up to the next quote part of that name (an audit lost 12 people so: neither
    clean nor quarantined). A field holding a line break and a row's worth of commas, or a resident
    ID's 15 or 18 characters after the break, is such a field (below). Any other line break is a
    value's fault, for validation to quarantine the row (a name: BAD_NAME), as it does in a Parquet
    extract (audit 18C: one person's two-line name refused the whole night). Read from the frame
    polars parsed, so quoting is judged as it was for the data."""
    texts = [c for c, t in lf.collect_schema().items() if t == pl.String]
    if not texts:
        return
    # A field that swallowed rows holds the rest of its own row and the start of the row its quote
    # closed in: as many commas as a row has between its fields, at least (when the record it
    # ended up in has the header's fields, which _refuse_short_rows and polars hold it to), whatever
    # the rows held; IDs among them or not (a row with its ID missing or mistyped was lost so).
    # A resident ID after the break is such a field too (a file whose rows are ragged).
    resident_id = r"(?:\d{17}[\dXx]|\d{15})"
    # Where the commas are says it, not how many: the field of column j (0-based, of n) that
    # swallowed rows starts with the rest of its own row (n - 1 - j commas before its first line
    # break) and ends with the start of the row its quote closed in (j commas after its last one).
    # A remark's commas all in one line, a name's before its break, are a value's fault, not a
    # swallow (audit 18F: a remark with 9 commas refused the extract). A resident ID after the
    # break counts only where a row starts: at the start of a line, before a comma.
    names = lf.collect_schema().names()
    n = len(names)

    def commas(part: pl.Expr) -> pl.Expr:
        return part.str.count_matches(",", literal=True)

    swallowed = [
        pl.col(c).str.contains(r"[\r\n]")
        & (commas(pl.col(c).str.extract(r"^([^\r\n]*)")) >= n - 1 - j)
        & (commas(pl.col(c).str.extract(r"([^\r\n]*)$")) >= j)
        | pl.col(c).str.contains(rf"[\r\n][ \t\"]*{resident_id}[ \t\"]*,")
        for j, c in enumerate(names) if c in texts]
    # the rows with a line break anywhere first (a few, if any), then the commas counted in them
    hit = (lf.with_row_index("_row", offset=1)
           .filter(pl.any_horizontal(pl.col(texts).str.contains(r"[\r\n]")))
           .filter(pl.any_horizontal(*swallowed))
           .select("_row").head(1).collect())
    if hit.height:
        row = hit.item() if file_rows is None else file_rows[hit.item() - 1]
        raise InputError(f"{p}: data row {row} has a field holding a line break (a quote left open takes "
                         "the rows after it into one field); fix the export and run again")


def _header_hint(names: list[str], missing: list[str]) -> str:
    """What a header that lacks SPEC §3's columns looks like it is instead: one column holding
    them all (another separator), or the names in other case or with spaces around them. Said,
    not guessed at: a column is read only by its exact name."""
    if len(names) == 1:
        for sep, said in ((";", "';'"), ("\t", "tabs"), ("|", "'|'")):
            if sep in names[0]:
                return f" (the header is one column: the file looks separated by {said}; export it with commas)"
    near = {n.strip().lower(): n for n in names}
    found = [f"{near[c]!r}" for c in missing if c in near]
    return (f" (found as {', '.join(found)}: names must match exactly, in lower case, with no spaces around them)"
            if found else "")


def _unreadable(p: Path, e: BaseException, hint: str = "") -> InputError:
    """The one line for an extract a reader could not read: the reader's first line, with the
    values it quotes left out. polars quotes the field it could not parse (`could not parse
    `"6217…"x` as dtype`), and a quote left open runs that field on through the rows after it;
    pyarrow quotes the row it could not split. An audit had card numbers in such a message, which
    goes to the console and the logs (only the bank files carry them): the column is named
    instead. A panic is polars' own failure on a damaged file's bytes, its message a page of Rust."""
    text = str(e).strip()
    field = re.match(r"could not parse `.*?` as dtype `\w+` at column '([^']*)' \(column number (\d+)\)", text, re.S)
    if isinstance(e, pl.exceptions.PanicException):
        why = "its data cannot be decoded"
    elif field:
        why = (f"column {field.group(1)} (column {field.group(2)}) has a field that is not properly quoted: a stray "
               'or unclosed " in it')
    else:
        why = re.sub(r"(Expected \d+ columns, got \d+):.*", r"\1", first_line(re.sub(r"`[^`]*`", "`…`", text)))
    return InputError(f"{p}: cannot read the extract ({why}){hint}")


def refuse_nested(p: Path, schema: pl.Schema, hint: str = "") -> None:
    """A column of lists, arrays or records is refused, naming it: every column the engine reads is
    text or dates (audit 31B: a name held as a record was written into the bank files as `{"x"}`,
    and a return file's line ids held as lists ended in polars' "cannot cast List type")."""
    for c, dtype in schema.items():
        if dtype.is_nested() or dtype == pl.Object:
            raise InputError(f"{p}: column {c} holds nested values ({dtype}), not "
                             f"{'dates' if c in DATE_COLUMNS else 'text'}{hint}")


def _refuse_numbers_for_text(p: Path, schema: pl.Schema) -> None:
    """A resident ID or a card number stored as a number is refused. As integers, a card number
    has lost any leading zero and an ID its check digit X (one ID in eleven); as floating point,
    both have lost digits. Neither can be seen in what is left, and a card number with a digit
    missing pays into another account or none."""
    lost = {"person_id": "the check digit X", "card_no": "a leading zero"}
    for c, what in lost.items():
        if schema[c].is_numeric():
            raise InputError(f"{p}: column {c} is stored as numbers ({schema[c]}), not text: {what} (and, as floating "
                             "point, digits) cannot be kept in a number; export it as text")


def _refuse_times_of_day(p: Path, lf: pl.LazyFrame) -> None:
    """A date column held as timestamps without a time zone must hold midnights. Spark's INT96
    and pandas' tz_convert(None) write a Shanghai date as the UTC instant of its midnight (16:00
    the day before), and read as Shanghai time that moved every date a day early: an audit had
    deaths on the 1st of a month read as the last day of the one before, that month unpaid.
    Which zone such a time is in cannot be known, so the file is refused. Timestamps labelled
    with their zone are converted (`_local_date`)."""
    schema = lf.collect_schema()
    naive = [c for c in DATE_COLUMNS if isinstance(schema[c], pl.Datetime) and not schema[c].time_zone]  # type: ignore[union-attr]
    for c in naive:
        # On the integers, and only within the dates a registry can hold: a sentinel at the type's
        # largest value made polars panic here (audit 19C), and is BAD_DATE in its row instead.
        dtype = schema[c]
        v = pl.col(c)
        off = lf.select(v.filter(_within_dates(v, dtype) & (v.cast(pl.Int64) % _per_day(dtype) != 0))  # type: ignore[arg-type]
                        # with any fraction of a second: 1 ns past midnight was said as "00:00:00" (audit 19F)
                        .first().dt.to_string("%Y-%m-%d %H:%M:%S%.f")).collect().item()
        if off is not None:
            raise InputError(
                f"{p}: {c} holds times of day ({off}), not dates, with no time zone: a date "
                "exported as a UTC instant would be read a day early; export dates (YYYY-MM-DD, or the Parquet "
                "date type), or timestamps labelled with their time zone")


NEWLINE = b"\n"


def _refuse_short_rows(p: Path, columns: int) -> None:
    """A CSV row with fewer fields than its header is refused, with the file: polars reads the
    fields it lacks as empty, and an audit had such a row (cut before its death date, the columns
    in another order) paid as if the person were alive. A row with more fields, which polars
    refuses in its own words, is said the same way (_read_extract). pyarrow's reader counts each
    row's fields (quoted newlines and all); only the first column is converted, and nothing is
    kept. Blank lines are skipped by read_extract."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    ragged: list[Any] = []

    def seen(row: Any) -> str:
        if (row.text or "").strip():  # a line of spaces is a blank row, skipped by read_extract
            ragged.append(row)
        return "skip"

    names = [f"c{i}" for i in range(columns)]
    try:
        reader = pacsv.open_csv(
            p, read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=seen),
            convert_options=pacsv.ConvertOptions(include_columns=names[:1], column_types={names[0]: pa.string()},
                                                 check_utf8=False))
        for _ in reader:
            pass
    except pa.ArrowInvalid as e:  # the reader's own objection (the row text it quotes is left out)
        raise _unreadable(p, e) from None
    if ragged:
        first = ragged[0]
        fewer = "fewer" if first.actual_columns < columns else "more"
        # where it is, as an editor counts lines (the reader gives no row number with quoted line
        # breaks allowed; audit 25C: a row shown by its text alone is hard to find in 15 million)
        # ... where the row's text is a whole line, not inside a longer one (audit 27D: a count
        # footer "2" was found in line 2's text)
        data, text = p.read_bytes(), (first.text or "").encode()
        at = next((m.start() for m in re.finditer(re.escape(text), data)
                   if (m.start() == 0 or data[m.start() - 1:m.start()] == NEWLINE)
                   and data[m.end():m.end() + 1] in (b"", b"\r", NEWLINE)), -1) if text else -1
        where = f", line {data.count(NEWLINE, 0, at) + 1} of the file" if at >= 0 else ""
        # named by its line alone, no field of it quoted: in a row with fields missing or too many,
        # no field can be known for what it is (audits 27B, 27D, 27E: a name, a birth date, then a
        # card number taken for the ID), and the README promises a reader's error never quotes one
        raise InputError(
            f"{p}: {len(ragged)} row(s) have {fewer} fields than the header's {columns} (the first{where}, has "
            f"{first.actual_columns}); a truncated or malformed export: fix it and run again")


def _as_text(schema: pl.Schema, col: str) -> pl.Expr:
    """A column as trimmed text, empty strings as null (CSV and Parquet alike)."""
    dtype = schema[col]
    if dtype == pl.String:
        e = pl.col(col).str.strip_chars()
    elif dtype == pl.Date:
        e = pl.col(col).dt.to_string("%Y-%m-%d")
    elif isinstance(dtype, pl.Datetime):
        e = _local_date(pl.col(col), dtype).dt.to_string("%Y-%m-%d")
    else:
        # Dictionary-encoded (categorical) and binary text are trimmed as plain text is: an
        # audit had blank names paid, and padded dates refused, when the column was encoded so.
        e = pl.col(col).cast(pl.String).str.strip_chars()
    return pl.when(e == "").then(None).otherwise(e)


def _text_fix(dtype: pl.DataType) -> Callable[[pl.Series], pl.Series]:
    """`_as_text` as a function of a Series (for the few rows `_rebuilt_where` repairs)."""
    return lambda v: v.to_frame("c").select(_as_text(pl.Schema({"c": dtype}), "c")).to_series().alias(v.name)


def _local_date(e: pl.Expr, dtype: pl.Datetime) -> pl.Expr:
    """The Shanghai calendar date of a timestamp. An instant with a time zone (most database and
    Spark exports write a date as its local midnight in UTC: 16:00 the day before) is converted
    first; taking its UTC date would move every date a day early (a death on the 1st of a month
    read as the last day of the one before). A naive timestamp is a local one already."""
    # An instant beyond what the time zone conversion can take (a sentinel at the type's largest
    # or smallest value) made polars panic: the whole extract refused as "cut short". Such a value
    # gives no date here, and `<column>_lost` makes its row BAD_DATE; a naive one too (audit 19C).
    e = pl.when(_within_dates(e, dtype)).then(e)
    if dtype.time_zone:
        return e.dt.convert_time_zone(SHANGHAI.key).dt.date()
    return e.dt.date()


def _per_day(dtype: pl.Datetime) -> int:
    return {"ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}[dtype.time_unit or "us"]


def _within_dates(e: pl.Expr, dtype: pl.Datetime) -> pl.Expr:
    """A timestamp within about 8 000 years either side of 1970: what can be a date of the
    registry; a sentinel at the type's largest or smallest value is not. Nanoseconds span only
    1677-2262: all of it but the two extreme values (audit 19F: a 1<<62 bound lost 1800 and 2200)."""
    if (dtype.time_unit or "us") == "ns":  # two days off each end: a time zone's offset must not overflow
        edge = 2**63 - 1 - 2 * _per_day(dtype)
        return e.cast(pl.Int64).is_between(-edge, edge)
    return e.cast(pl.Int64).is_between(-_per_day(dtype) * 3_000_000, _per_day(dtype) * 3_000_000)


def _as_date(schema: pl.Schema, col: str) -> pl.Expr:
    dtype = schema[col]
    if dtype == pl.Date:
        return pl.col(col)
    if isinstance(dtype, pl.Datetime):
        return _local_date(pl.col(col), dtype)
    text = _as_text(schema, col)
    # A four-digit year: "25-06-20" parsed as the year 25, and was quarantined for the wrong
    # reason (DEATH_BEFORE_BIRTH, HUKOU_DATES) instead of BAD_DATE (an audit).
    return pl.when(text.str.contains(r"^\d{4}-")).then(text.str.to_date("%Y-%m-%d", strict=False))


def _changed(s: pl.Series, idx: pl.Series, fix: Callable[[pl.Series], pl.Series]) -> tuple[pl.Series, pl.Series]:
    """(rows, values): `fix` of `s`'s rows `idx`, only where it changed the value. Writing even
    one value into a column copies it whole (8-10 ms a 2M-row block of text), and most values a
    check sends for repair are broken, not padded: an unknown district, a malformed ID."""
    was = s.gather(idx)
    fixed = fix(was)
    changed = fixed.ne_missing(was)
    return idx.filter(changed), fixed.filter(changed)


def _rebuilt_where(s: pl.Series, where: pl.Series, fix: Callable[[pl.Series], pl.Series]) -> pl.Series:
    """`fix` applied to the rows `where` is true, the rest untouched: a rare repair (a spaced card
    number, a lower-case x) costs a scan of the column, not a rewrite of 15 million strings."""
    idx, fixed = _changed(s, where.fill_null(False).arg_true(), fix)
    # scatter works in place on the Series object: on a clone, so the caller's `s` never changes.
    return s.clone().scatter(idx, fixed) if idx.len() else s


def _judged(
    s: pl.Series, judge: Callable[[pl.Series], pl.Series], fix: Callable[[pl.Series], pl.Series],
    ok: pl.Series | None = None,
) -> tuple[pl.Series, pl.Series]:
    """(`s` with `fix` applied where `judge` fails, `judge` of the result): the column is judged
    once (or was, when `ok` is given), and only its failing rows (a handful per million) are
    repaired and judged again; a row the repair leaves as it was keeps its judgement."""
    ok = judge(s) if ok is None else ok
    idx, fixed = _changed(s, (~ok).fill_null(False).arg_true(), fix)
    if idx.len() == 0:
        return s, ok
    return s.clone().scatter(idx, fixed), ok.clone().scatter(idx, judge(fixed))


def _normalised_ids(raw: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Upper-cased IDs with legacy 15-digit ones upgraded to 18 (only those rows are rebuilt).

    Only an `x` can turn into a valid ID by upper-casing (the check character); an ID with any
    other lower-case letter is malformed either way, and is quarantined with its text as read.
    """
    ids = _rebuilt_where(raw, raw.str.contains("x", literal=True), lambda v: v.str.to_uppercase())
    # Only 15-byte values can be legacy IDs: the pattern is tried on those few, not on every row.
    legacy = (ids.str.len_bytes() == 15).fill_null(False)
    idx = legacy.arg_true()
    if idx.len():
        is_legacy = ids.gather(idx).str.contains(r"^\d{15}$").fill_null(False)
        legacy = legacy.scatter(idx.filter(~is_legacy), False)  # our own Series: in place is fine
    ids = _rebuilt_where(ids, legacy, lambda v: v.to_frame("p").select(idcard.normalized_id_expr("p")).to_series())
    return ids, legacy


CHUNK_ROWS = 1 << 21  # rows checked at a time (a Python loop over a handful of blocks, never over people)


# The most days MAX_AGE_ALIVE + 2 years can span: 365 each and a leap day in every fourth.
_LONGEST_DAYS = (MAX_AGE_ALIVE + 2) * 365 + (MAX_AGE_ALIVE + 2 + 3) // 4


def oldest_birth(as_of: dt.date) -> dt.date:
    """The last birth date at which someone is over MAX_AGE_ALIVE in the as-of date's month by
    SPEC §1's age: the last day of that month, MAX_AGE_ALIVE + 1 years before."""
    first = dt.date(as_of.year - MAX_AGE_ALIVE - 1, as_of.month, 1)
    return (first + dt.timedelta(days=31)).replace(day=1) - dt.timedelta(days=1)


def _checks(as_of: dt.date, textual: list[str], stamped: list[str] | None = None,
            age_on: dt.date | None = None) -> dict[str, pl.Expr]:
    """Every reason of SPEC §3 as a boolean expression over one block of the extract. `stamped`:
    the date columns held as timestamps, each with a `<column>_lost` flag (a value there that
    gives no date)."""
    bd, hs, ho, dd = (pl.col(c) for c in DATE_COLUMNS)
    well_formed = pl.col("id_shape_ok") & pl.col("id_date_ok")

    def none_given(c: str) -> pl.Expr:  # the column is empty, not a value that gave no date (BAD_DATE)
        if c in textual:
            return pl.col(f"{c}_raw").is_null()
        return pl.col(c).is_null() & ~pl.col(f"{c}_lost") if c in (stamped or []) else pl.col(c).is_null()

    checks: dict[str, pl.Expr] = {
        "MISSING_FIELD": pl.any_horizontal(
            [pl.col(c).is_null() for c in ("person_id", "name", "district_code")]
            + [none_given("birth_date")]  # a value that gives no date is BAD_DATE (audit 19F)
        ),
        "ID_FORMAT": pl.col("person_id").is_not_null() & ~well_formed,
        "ID_CHECKSUM": well_formed & ~pl.col("id_checksum_ok"),
        "BAD_DATE": pl.any_horizontal(
            [pl.lit(False)] + [pl.col(f"{c}_raw").is_not_null() & pl.col(c).is_null() for c in textual]
            + [pl.col(f"{c}_lost") for c in stamped or []]
        ),
        "BIRTH_MISMATCH": well_formed & bd.is_not_null() & (bd != pl.col("id_birth")),
        "BIRTH_IN_FUTURE": bd > pl.lit(as_of),
        # Over MAX_AGE_ALIVE by SPEC §1's age (the month of a birthday counts at the new age) in
        # the as-of date's month, born in that month MAX_AGE_ALIVE + 1 years before or earlier;
        # and alive and registered (no death, no move out), or dead or moved out at an age no
        # month was ever paid at. A recorded death or move out ends the payments whatever the
        # age, and its recovery must go through (audit 19A: a death at 121 of someone paid at 120
        # was not recovered), but the months before it would be back pay at a band the row
        # cannot give (audit 19C: born in 1800, dead last month, 18 months of arrears drafted).
        # No month is paid at over MAX_AGE_ALIVE + 1 (the as-of month's age is at most
        # MAX_AGE_ALIVE, and a quarter runs two months past it), so an end at MAX_AGE_ALIVE + 2
        # or over recovers nothing; its age is counted in days, at least as many as those years
        # can hold, so no one younger is caught (a calendar age per row cost 50 ms a 2M block).
        "AGE_IMPLAUSIBLE": (bd <= pl.lit(oldest_birth(age_on or as_of))) & (
            (none_given("death_date") & none_given("hukou_out_date"))
            | (pl.min_horizontal(dd, ho).cast(pl.Int32) - bd.cast(pl.Int32) >= _LONGEST_DAYS)),
        "DEATH_BEFORE_BIRTH": dd < bd,
        "HUKOU_DATES": (hs < bd) | (ho < hs) | (ho < bd),
        "FUTURE_FACT": (dd > pl.lit(as_of)) | (hs > pl.lit(as_of)) | (ho > pl.lit(as_of)),
        # district_ok, channel_ok, card_digits: judged when the block was read (validate).
        "UNKNOWN_DISTRICT": pl.col("district_code").is_not_null() & ~pl.col("district_ok"),
        "BAD_CHANNEL": pl.col("channel").is_not_null() & ~pl.col("channel_ok"),
        "CARD_MISSING": pl.col("channel").is_not_null() & pl.col("card_no").is_null(),
        "BAD_CARD": pl.col("card_no").is_not_null()
        & (
            (pl.col("card_no").str.len_bytes() < 6)
            | (pl.col("card_no").str.len_bytes() > 32)
            | ~pl.col("card_digits")
        ),
        "BAD_NAME": pl.col("name_bad"),
        "DUPLICATE_ID": pl.col("id_duplicated"),
    }
    assert tuple(checks) == QUARANTINE_REASONS
    return {code: expr.fill_null(False) for code, expr in checks.items()}


def validate(
    lf: pl.LazyFrame,
    as_of: dt.date,
    channels: tuple[str, ...],
    sha256: str = "",
    keep: pl.Expr | None = None,
    block_rows: int = CHUNK_ROWS,
    age_on: dt.date | None = None,
) -> Validated:
    """Split an extract into clean and quarantined rows (SPEC §3), judged as of `as_of`.

    The ID column is read and checked whole (a duplicate is judged across all rows); every other
    column is read and checked a block of `block_rows` rows at a time, so one block's columns,
    trimmed copies, flags and filters are all that is alive beside the IDs and the clean rows
    kept (at 15 million rows, 5.4 GB of peak memory became 3.5 GB). With `keep`, a filter over
    the clean columns, only the clean rows it keeps are returned (a draft needs the 5 million
    people who can be paid); the counts still cover every row.
    """
    schema = lf.collect_schema()
    # Raw text of a date is kept only where the extract does not hold a date type: a typed
    # Parquet date cannot be malformed, and formatting 15 million of them just in case is pure
    # cost. Anything else (text, and an integer 20250210 or a categorical alike) is read as text,
    # so a value that is not a YYYY-MM-DD date is BAD_DATE, never silently no date at all.
    textual = [c for c in DATE_COLUMNS if not (schema[c] == pl.Date or isinstance(schema[c], pl.Datetime))]
    n = lf.select(pl.len()).collect().item()
    # The ID column alone, whole: parsed once, and its keys judge duplicates across all rows.
    # Nearly every ID is well formed as read and is parsed as it is; only the others (blank,
    # padded, a lower-case x, a legacy 15-digit number: a few per thousand) are trimmed,
    # normalised and parsed again. Trimming and normalising all 15 million cost about 1 s, and
    # changes nothing in a well-formed ID.
    textual_id = schema["person_id"] == pl.String
    kernels = warm_up()  # loaded while the ID column is read
    person_raw = lf.select(person_id_raw=pl.col("person_id") if textual_id else _as_text(schema, "person_id")
                           ).collect().to_series()
    kernels.join()
    parsed = idcard.parse_id_arrays(person_raw)
    redo = pl.Series(np.flatnonzero(~parsed[0] & person_raw.is_not_null().to_numpy()), dtype=pl.UInt32)
    # The repaired IDs, by row: the blocks below take their normalised text and legacy flag from here.
    repaired = pl.DataFrame(schema={"row": redo.dtype, "person_id": pl.String, "legacy": pl.Boolean})
    if redo.len():
        text = _text_fix(person_raw.dtype)(person_raw.gather(redo))
        # Now `_as_text` of the whole column (the quarantine shows the ID as read, trimmed).
        # Measured: leaving the column as read and trimming only the quarantine's IDs saved about
        # 0.1 s but raised the supplement's peak by 0.2-0.25 GB (2.56-2.63 -> 2.82-2.88 GiB at
        # 15.35M), in three A/B pairs. The column as read is 125 Parquet chunks, the rewritten
        # one a single array; why that changes the peak this much was not pinned down.
        person_raw = person_raw.clone().scatter(redo, text)
        norm, legacy = _normalised_ids(text)
        # Their parse written over the first one's rows, in place (scattering into five polars
        # columns of 15 million rows copied each whole: 0.3 s).
        at = redo.to_numpy()
        for whole, mended in zip(parsed, idcard.parse_id_arrays(norm), strict=True):
            whole[at] = mended
        # Only those the repair changed (most were malformed, and stay as read): writing one
        # value into a block's ID column copies the column.
        repaired = pl.DataFrame({"row": redo, "person_id": norm, "legacy": legacy}).filter(
            pl.col("person_id").ne_missing(text) | pl.col("legacy"))
    # Duplicates among the well-formed keys, taken from the parse's own arrays.
    repeated = idcard.repeated_keys(parsed[4][parsed[0]])
    ids = idcard.id_frame(parsed)
    del parsed
    id_part = pl.concat([person_raw.to_frame(), ids], how="horizontal").with_columns(
        id_duplicated=idcard.duplicated(ids["id_key"], repeated))
    del person_raw, ids
    # Timestamps beyond the dates polars can give (a sentinel at the type's largest value) come out
    # as no date: a death read as none (audit 18E). Such a value is BAD_DATE.
    stamped = [c for c in DATE_COLUMNS if isinstance(schema[c], pl.Datetime)]
    checks = _checks(as_of, textual, stamped, age_on)
    trim = _text_fix(pl.String)
    # District, channel and card are trimmed only where they could need it: a value that is
    # already one of the codes, or all digits, has nothing to trim (trimming 15 million of them
    # cost 1.5 s); the rest get `_as_text`'s trimming, and a card its inner spaces dropped
    # (grouping as printed on the card).
    coded = [c for c in ("district_code", "channel", "card_no") if schema[c] == pl.String]
    # A name is trimmed (and made null when blank) only where an end is white space or it is
    # empty: the rest are already what `_as_text` would give (trimming 15 million cost 0.45 s).
    raw_name = schema["name"] == pl.String
    clean_parts: list[pl.DataFrame] = []
    bad_parts: list[pl.DataFrame] = []
    legacy_clean = 0
    rows_with = dict.fromkeys(FACT_COLUMNS, 0)
    as_read = {c: pl.col(c) if c in coded else _as_text(schema, c) for c in ("district_code", "channel", "card_no")}
    # A known district or channel: one test, over the column as read (an expression in the
    # block's read) and over the few repaired values (a Series) alike.
    def known_district(v: pl.Expr | pl.Series) -> Any:
        return v.is_in(DISTRICT_CODES)

    def known_channel(v: pl.Expr | pl.Series) -> Any:
        return v.is_in(channels)

    for start in range(0, max(n, 1), block_rows):
        base = lf.slice(start, block_rows).select(
            name=pl.col("name") if raw_name else _as_text(schema, "name"),
            **as_read,
            **{f"{c}_raw": _as_text(schema, c) for c in textual},
            **{c: _as_date(schema, c) for c in DATE_COLUMNS},
            **{f"{c}_lost": pl.col(c).is_not_null() & _as_date(schema, c).is_null() for c in stamped},
            # judged as the block is read: polars runs these beside the other columns' decoding
            district_known=known_district(as_read["district_code"]),
            channel_known=known_channel(as_read["channel"]),
        ).collect()
        # Each is judged once on the text as read (a known code; digits only), and again only
        # where it was repaired: the checks below use these judgements, not a second scan.
        district, district_ok = _judged(base["district_code"], known_district, trim, base["district_known"])
        channel, channel_ok = _judged(base["channel"], known_channel, trim, base["channel_known"])
        card, card_digits = _judged(
            base["card_no"], digits_only,
            lambda v: trim(v).str.replace_all(" ", "", literal=True))
        name = _rebuilt_where(base["name"], needs_trim(base["name"]), trim) if raw_name else base["name"]
        # A NUL or a line break in a name, or 100 000 characters of it, went to the bank (an audit).
        base = base.with_columns(name=name, district_code=district, channel=channel, card_no=card,
                                 district_ok=district_ok, channel_ok=channel_ok, card_digits=card_digits,
                                 name_bad=bad_text(name, NAME_MAX_BYTES))
        block_ids = id_part.slice(start, block_rows)
        # The ID as read, with this block's repaired rows put in (a second 15M-string column
        # for the whole extract would cost ~0.5 GB of memory).
        mine = repaired.filter(pl.col("row").is_between(start, start + block_ids.height - 1))
        person_id = block_ids["person_id_raw"].alias("person_id")
        legacy = pl.repeat(False, block_ids.height, eager=True).alias("legacy")
        if mine.height:
            at = (mine["row"] - start).cast(pl.UInt32)
            person_id = person_id.clone().scatter(at, mine["person_id"])
            legacy = legacy.scatter(at, mine["legacy"])
        df = pl.concat([base, block_ids.with_columns(person_id=person_id, legacy=legacy)], how="horizontal"
                       ).with_row_index("row_no", offset=start + 1)
        flags = df.select(**checks)
        any_bad = flags.select(pl.any_horizontal(pl.all()).alias("bad")).to_series()
        legacy_clean += int((df["legacy"] & ~any_bad).sum())
        for c in rows_with:
            rows_with[c] += int((df[c].is_not_null() & ~any_bad).sum())
        # One filter, of only the columns kept: the clean rows, and of those the ones `keep`
        # keeps (filtering the whole block and then filtering again cost 0.5 s at 15 million).
        wanted = ~any_bad if keep is None else ~any_bad & df.select(keep.fill_null(False)).to_series()
        # Clean rows carry the ID's exact int64 key too (idcard.parse_ids): the draft matches
        # people to the ledger on it without parsing 15 million IDs again.
        clean_parts.append(df.select([pl.col(c).cast(t) for c, t in CLEAN_SCHEMA.items()] + [pl.col("id_key")])
                           .filter(wanted))
        bad_parts.append(pl.concat([df.filter(any_bad), flags.filter(any_bad)], how="horizontal"))
    del id_part
    clean = pl.concat(clean_parts)
    bad_rows = pl.concat(bad_parts)
    reasons = pl.concat_str(
        [pl.when(pl.col(code)).then(pl.lit(code)) for code in QUARANTINE_REASONS], separator=";", ignore_nulls=True
    )
    quarantine = bad_rows.with_columns(reasons=reasons).select(
        pl.col("row_no").cast(pl.Int64),
        pl.col("reasons").str.split(";").list.first().alias("reason"),
        "reasons",
        pl.col("person_id_raw").alias("person_id"),
        "name",
        *[pl.col(f"{c}_raw").alias(c) if c in textual else _date_text(c) for c in DATE_COLUMNS],
        "district_code",
        "channel",
        "card_no",
    )
    by_reason = dict(quarantine.group_by("reason").len().sort("reason").iter_rows())
    return Validated(
        clean=clean,
        quarantine=quarantine,
        rows_in=n,
        legacy_upgraded=legacy_clean,
        rows_with=rows_with,
        sha256=sha256,
        by_reason={k: int(v) for k, v in by_reason.items()},
    )


def _date_text(c: str) -> pl.Expr:
    """A typed date as the quarantine shows it: YYYY-MM-DD, or, beyond the years polars can
    format (a sentinel such as date32's largest value), its day number. polars panicked
    formatting such a date, and the run was refused as a damaged file (an audit)."""
    d = pl.col(c)
    ok = d.is_between(pl.date(-9999, 1, 1), pl.date(9999, 12, 31))
    return (pl.when(ok).then(d).dt.to_string("%Y-%m-%d")
            .fill_null(pl.when(d.is_not_null()).then(pl.lit("day ") + d.cast(pl.Int32).cast(pl.String)))
            .alias(c))


NULL_MARKERS = ("NULL", "null", "\\N", "None", "NaN", "nan", "NA", "N/A")


def _null_marker_hint(quarantine: pl.DataFrame) -> str:
    """When the dates refused are another system's word for "no date" (Hive's and MySQL's `\\N`,
    `NULL`: an audit), the hint says so: a date left empty is no date. They are not read as empty
    here: a death date is never guessed."""
    given = pl.concat([quarantine[c].cast(pl.String) for c in DATE_COLUMNS if c != "birth_date"])
    seen = given.filter(given.is_in(NULL_MARKERS)).unique(maintain_order=True).head(3).to_list()
    quoted = " or ".join("'" + m + "'" for m in seen)
    return f"; no date is an empty field, not {quoted}" if seen else ""


def _file_identity(p: Path) -> tuple[int, int, int, int] | None:
    """Which file `p` is, and its size and time: what changes when it is replaced or rewritten."""
    try:
        st = p.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _refuse_if_changed(p: Path, before: tuple[int, int, int, int] | None) -> None:
    if _file_identity(p) != before:
        raise InputError(f"{p}: the extract changed while it was read (replaced, or still being written); "
                         "nothing was drafted: run again once it is complete")


class QuarantineRefused(RefusedError):
    """An extract refused for its quarantined share; `validated` holds its rows judged, so the run
    can write the quarantine for staff to look at (runs.draft_run)."""

    def __init__(self, validated: Validated, message: str) -> None:
        super().__init__(message)
        self.validated = validated


def load_and_validate(
    path: Path | str,
    as_of: dt.date,
    channels: tuple[str, ...],
    max_quarantine_share: float = DEFAULT_MAX_QUARANTINE_SHARE,
    keep: pl.Expr | None = None,
    age_on: dt.date | None = None,
) -> Validated:
    """Read, hash and validate an extract; refuse it when too much of it is broken.

    `keep` (see `validate`) narrows the clean rows returned, never the checks or the counts.
    `age_on`: the day whose month AGE_IMPLAUSIBLE judges the age in, when not the as-of date's (a
    quarter drafted the month before it is paid for its own first month: audit 19G).
    """
    # The file as it was when the run began: the extract is read in blocks, each opening it again,
    # so one replaced meanwhile (a scheduler swapping `latest.parquet`, a copy still being written)
    # was read in part from each (an audit: polars panicked, or said "out of specification"). A
    # link is followed once, to the file it names now: swapping the link later changes nothing
    # here; that file replaced or rewritten refuses the run.
    p = Path(path).resolve() if Path(path).is_symlink() else Path(path)
    before = _file_identity(p)
    lf, file_rows = _read_extract(p)
    # The file's hash (for the manifest) is taken on a second thread while the extract is read
    # and checked: hashlib releases the GIL, and the checks rarely keep both cores busy.
    with ThreadPoolExecutor(1) as pool:
        digest = pool.submit(file_sha256, p)
        try:
            v = validate(lf, as_of, channels, keep=keep, age_on=age_on)
            v.sha256 = digest.result()
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError) as e:
            _refuse_if_changed(p, before)
            raise _unreadable(p, e, "; is the file whole? One cut short or copied in part reads so: copy it "
                                    "again") from None
    _refuse_if_changed(p, before)
    if file_rows is not None:  # a CSV's blank rows were skipped: the quarantine names rows by their number in the file
        v.quarantine = v.quarantine.with_columns(row_no=file_rows.gather(v.quarantine["row_no"] - 1))
    if v.rows_in == 0:
        raise RefusedError(f"{p}: the extract has no rows; refusing to run on an empty registry")
    if v.quarantine_share > max_quarantine_share:
        ranked = sorted(v.by_reason.items(), key=lambda kv: -kv[1])
        top = ", ".join(f"{k} {n}" for k, n in ranked[:4])
        # the form a date must have, when that is most of what failed (an audit: 2025/07/01 or
        # 20250701 in every row was refused as 100 % BAD_DATE, without saying what is wanted)
        hint = (" (dates must be YYYY-MM-DD text, or Parquet dates" + _null_marker_hint(v.quarantine) + ")"
                if ranked[0][0] == "BAD_DATE" else "")
        raise QuarantineRefused(
            v,
            f"{p}: {v.quarantine.height} of {v.rows_in} rows ({v.quarantine_share:.2%}) failed checks, "
            f"above the {max_quarantine_share:.2%} threshold ({top}){hint}; fix the extract or raise "
            "--max-quarantine-share"
        )
    return v
