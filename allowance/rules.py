"""The tier tables: versioned, dated, cited YAML validated into pydantic models.

Nothing else in the engine opens the YAML. Code sees amounts through `Rules.at(month)` or
through `Rules.month_table(...)`, a small frame of (month, version, band) rows that the
entitlement joins on, so a quarter straddling two versions pays each month by its own
version (SPEC §2).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator, model_validator

from allowance.constants import CHANNELS
from allowance.errors import RulesError
from allowance.months import Month, month_index, month_start

MAX_MONTHLY_FEN = 10_000_000  # engine rule: 100 000 yuan a month (see Band.monthly_fen)
QUARTER_STARTS = (1, 4, 7, 10)  # SPEC §4: the quarterly run pre-disburses the calendar quarter it starts

Cite = Annotated[str, Field(pattern=r"\S", description="the clause this value comes from (not blank)")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Band(_Strict):
    """One age band of 二 (发放标准)."""

    min_age: StrictInt = Field(ge=0, le=150)
    max_age: StrictInt | None = Field(default=None, ge=0, le=150)
    # At most 100 000 yuan a month: any real band is a few hundred yuan, and a bound keeps every
    # total (4.4M people, decades of months) far inside int64 fen.
    monthly_fen: StrictInt = Field(gt=0, le=MAX_MONTHLY_FEN, description="integer fen per month")
    cite: Cite

    @model_validator(mode="after")
    def _ordered(self) -> Band:
        if self.max_age is not None and self.max_age < self.min_age:
            raise ValueError(f"max_age {self.max_age} is below min_age {self.min_age}")
        return self


class CitedInts(_Strict):
    value: list[StrictInt]
    cite: Cite


class CitedInt(_Strict):
    value: StrictInt
    cite: Cite


class CitedBool(_Strict):
    value: bool
    cite: Cite


class CitedStrs(_Strict):
    value: list[str]
    cite: Cite


class Funding(_Strict):
    """七(二): municipal and district finance share the cost, 1 : 1."""

    municipal: StrictInt = Field(gt=0, le=1000)
    district: StrictInt = Field(gt=0, le=1000)
    cite: Cite


class Version(_Strict):
    """One rules version: everything in it is in force from effective_from to effective_to."""

    # Letters, digits, `.`, `_` and `-`: a line spanning two versions names them joined by `+`
    # (the manifest splits them back), so a `+` or a space in an id corrupted both (audit 26A).
    id: str = Field(min_length=1)
    title: str = ""
    source: Cite
    effective_from: dt.date
    effective_to: dt.date | None = None
    bands: list[Band] = Field(min_length=1)
    disbursement_months: CitedInts
    funding: Funding
    retro_months: CitedInt
    payment_day: CitedInt
    channels: CitedStrs
    exit_month_paid: CitedBool

    @field_validator("id")
    @classmethod
    def _plain_id(cls, v: str) -> str:
        if not re.fullmatch(r"[^\W_][\w.-]*", v):
            raise ValueError(f"{v!r}: an id is letters, digits, '.', '_' and '-', starting with a letter or digit "
                             "(a line spanning two versions names them joined by '+')")
        return v

    @model_validator(mode="after")
    def _coherent(self) -> Version:
        if self.effective_from.day != 1:
            raise ValueError("effective_from must be the first day of a month")
        if self.effective_to is not None:
            if self.effective_to < self.effective_from:
                raise ValueError("effective_to is before effective_from")
            if (self.effective_to + dt.timedelta(days=1)).day != 1:
                raise ValueError("effective_to must be the last day of a month")
        bands = sorted(self.bands, key=lambda b: b.min_age)
        for prev, nxt in itertools.pairwise(bands):
            if prev.max_age is None:
                raise ValueError(f"bands: band from age {prev.min_age} is open-ended but is not the last")
            if nxt.min_age <= prev.max_age:
                raise ValueError(f"bands: ages {nxt.min_age}–{prev.max_age} are in two bands (overlap)")
            if nxt.min_age != prev.max_age + 1:
                raise ValueError(f"bands: no band covers ages {prev.max_age + 1}–{nxt.min_age - 1} (gap)")
        if bands[-1].max_age is not None:
            raise ValueError("bands: the last band must be open-ended (max_age: null)")
        if not self.channels.value:  # no channel: nobody could be paid, while `rules check` said ok (an audit)
            raise ValueError("channels: a version must name at least one channel")
        bad = sorted(set(self.channels.value) - set(CHANNELS))
        if bad:
            raise ValueError(f"channels: unknown channel(s) {bad}; known: {list(CHANNELS)}")
        months = self.disbursement_months.value
        if not months or any(m < 1 or m > 12 for m in months):
            raise ValueError("disbursement_months: values must be months 1–12")
        if sorted(months) != list(QUARTER_STARTS):
            # The engine's runs are calendar quarters (SPEC §4, 四 按季度预拨): another schedule
            # was accepted here and then ignored (an audit), which a table must never be.
            raise ValueError(f"disbursement_months: the engine pre-disburses by calendar quarter, "
                             f"{list(QUARTER_STARTS)} (SPEC §4); {sorted(months)} would need the runs changed, "
                             "not only the rules")
        if not 1 <= self.payment_day.value <= 28:
            raise ValueError("payment_day: must be a day 1–28")
        if self.retro_months.value < 0:
            raise ValueError("retro_months: must be ≥ 0")
        return self

    @property
    def sorted_bands(self) -> list[Band]:
        return sorted(self.bands, key=lambda b: b.min_age)

    @property
    def min_age(self) -> int:
        return self.sorted_bands[0].min_age

    def covers(self, month: Month) -> bool:
        start = month_start(month)
        return self.effective_from <= start and (self.effective_to is None or start <= self.effective_to)

    def band_for(self, age: int) -> Band | None:
        for band in self.sorted_bands:
            if age >= band.min_age and (band.max_age is None or age <= band.max_age):
                return band
        return None

    def split(self, amount_fen: int) -> tuple[int, int]:
        """(municipal, district) shares of an amount; the municipal share takes any odd fen."""
        sign = -1 if amount_fen < 0 else 1
        total = self.funding.municipal + self.funding.district
        district = abs(amount_fen) * self.funding.district // total
        return sign * (abs(amount_fen) - district), sign * district


MAX_LOOKUP_AGE = 150


def lookup_age_expr(age: pl.Expr) -> pl.Expr:
    """The age to look a band up with: the last band is open-ended, so any age above the table is its last row."""
    return pl.min_horizontal(age, pl.lit(MAX_LOOKUP_AGE, pl.Int32))


class Rules:
    """All versions, checked not to overlap. The one date-aware accessor of the engine."""

    def __init__(self, versions: Iterable[Version], origin: str = "", files: dict[str, str] | None = None) -> None:
        self.versions: list[Version] = sorted(versions, key=lambda v: v.effective_from)
        self.origin = origin
        self.files = files or {}
        if not self.versions:
            raise RulesError(f"{origin or 'rules'}: no rules version found")
        ids = [v.id for v in self.versions]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise RulesError(f"{origin}: version id(s) {dupes} defined twice")
        for a, b in itertools.pairwise(self.versions):
            if a.effective_to is None or a.effective_to >= b.effective_from:
                raise RulesError(
                    f"{self.files.get(a.id, origin)}: version {a.id}: field effective_to "
                    f"({a.effective_to or 'open'}) overlaps {self.files.get(b.id, origin)}: version {b.id}: "
                    f"field effective_from ({b.effective_from}); versions must not overlap"
                )

    def at(self, month: Month) -> Version:
        """The version in force in `month`; a month no version covers is an error, never a zero."""
        for v in self.versions:
            if v.covers(month):
                return v
        raise RulesError(f"no rules version is in force in {month_start(month):%Y-%m} ({self.coverage()})")

    def fingerprint(self) -> str:
        """Every version as loaded, in one canonical text: what a batch id is made from."""
        return json.dumps([v.model_dump(mode="json") for v in self.versions], sort_keys=True)

    def sha256(self) -> str:
        """The tables' digest, named in each batch's manifest (`rules_sha256`) and by `rules check`:
        a version corrected in place under the same id pays otherwise, and the version ids alone
        could not say so (audit 26A)."""
        return hashlib.sha256(self.fingerprint().encode()).hexdigest()

    def gaps(self) -> list[tuple[dt.date, dt.date]]:
        """Months between two versions that none covers, as (first day, last day): a run asked
        for them is refused (SPEC §1.4); `rules check` names them, since most are a typed date."""
        return [(a.effective_to + dt.timedelta(days=1), b.effective_from - dt.timedelta(days=1))
                for a, b in itertools.pairwise(self.versions)
                if a.effective_to is not None and a.effective_to + dt.timedelta(days=1) < b.effective_from]

    def covered_since(self, last: int) -> int | None:
        """The first month of the unbroken run of covered months that ends at month index `last`
        (None where no version covers `last`): the months before it no version covers, so nothing
        was ever due in them (SPEC §1.4), and a report of what is owed there asks for none of them."""
        first = None
        for v in reversed(self.versions):
            v_to = month_index(v.effective_to) if v.effective_to is not None else last
            if first is None:
                if month_index(v.effective_from) <= last <= v_to:
                    first = month_index(v.effective_from)
            elif v_to == first - 1:
                first = month_index(v.effective_from)
        return first

    def coverage(self) -> str:
        parts = [f"{v.id}: {v.effective_from} … {v.effective_to or 'open'}" for v in self.versions]
        return "versions in force: " + "; ".join(parts)

    def channels(self, month: Month | None = None) -> tuple[str, ...]:
        """The channels a payment made in `month` may go through (四: the version in force then
        names them; a back-paid month is paid now, on today's card, so the month of payment
        decides, not the month paid), an error in a month no version covers (SPEC §1.4). Without
        a month, every channel any version names: what the extract is checked against (BAD_CHANNEL)."""
        seen = {c for v in ([self.at(month)] if month is not None else self.versions) for c in v.channels.value}
        return tuple(c for c in CHANNELS if c in seen)

    def min_age(self) -> int:
        return min(v.min_age for v in self.versions)

    def month_table(self, first: int, last: int) -> pl.DataFrame:
        """One row per (month index, band) for months first..last: the join table of the engine.

        Raises if any month in the range has no version in force (SPEC §1.4).
        """
        rows: dict[str, list[Any]] = {
            "month_idx": [], "version_id": [], "min_age": [], "max_age": [], "monthly_fen": [],
            "mun_num": [], "mun_den": [],
        }
        for mi in range(first, last + 1):
            v = self.at(mi)
            for b in v.sorted_bands:
                rows["month_idx"].append(mi)
                rows["version_id"].append(v.id)
                rows["min_age"].append(b.min_age)
                rows["max_age"].append(b.max_age if b.max_age is not None else 999)
                rows["monthly_fen"].append(b.monthly_fen)
                rows["mun_num"].append(v.funding.municipal)
                rows["mun_den"].append(v.funding.municipal + v.funding.district)
        return pl.DataFrame(
            rows,
            schema={
                "month_idx": pl.Int32, "version_id": pl.String, "min_age": pl.Int32, "max_age": pl.Int32,
                "monthly_fen": pl.Int64, "mun_num": pl.Int64, "mun_den": pl.Int64,
            },
        )

    def age_lookup(self, first: int, last: int, max_age: int = MAX_LOOKUP_AGE) -> pl.DataFrame:
        """(month_idx, age) → monthly_fen, version_id, band_min_age for ages 0..max_age.

        The last band is open-ended, so callers clamp ages above max_age to max_age
        (`lookup_age_expr`) instead of letting the very old drop out of an inner join.
        """
        t = self.month_table(first, last)
        ages = pl.DataFrame({"age": pl.int_range(0, max_age + 1, eager=True).cast(pl.Int32)})
        return (
            t.join(ages, how="cross")
            .filter((pl.col("age") >= pl.col("min_age")) & (pl.col("age") <= pl.col("max_age")))
            .select("month_idx", "age", "monthly_fen", "version_id", pl.col("min_age").alias("band_min_age"))
        )

    def exit_month_paid(self, month: Month) -> bool:
        return self.at(month).exit_month_paid.value

    def retro_months(self, month: Month) -> int:
        return self.at(month).retro_months.value

    def is_disbursement_month(self, month: Month) -> bool:
        return month_start(month).month in self.at(month).disbursement_months.value


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml's safe loader, refusing a key given twice in one mapping: by default the later value
    wins silently, so a second `monthly_fen` or `retro_months` pasted lower in a file would
    change what is paid while `rules check` said ok."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        # The mapping's own keys; a merge (`<<: *anchor`) may still be overridden by one of them.
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                twice = key in seen
            except TypeError:  # a list or a mapping as a key
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a plain value", key_node.start_mark) from None
            if twice:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        """A whole number only as plain decimal digits: YAML 1.1 reads `07500` as octal (3904),
        `024` as 20, `0x1D4C`, `7_500` and `125:00` (sexagesimal) as other numbers, and `rules
        check` said ok while the table paid 39.04 yuan (audit 26A)."""
        text = str(self.construct_scalar(node))  # type: ignore[no-untyped-call]
        if not re.fullmatch(r"[-+]?(0|[1-9][0-9]*)", text):
            raise yaml.constructor.ConstructorError(
                None, None, f"number {text} is not written in plain decimal digits (YAML reads a leading zero as "
                "octal, and 0x, 0b, _ and : as other numbers): write it without them", node.start_mark)
        return int(text)


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _UniqueKeyLoader.construct_yaml_int)


def _load_file(path: Path) -> list[Version]:
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except OSError as e:
        raise RulesError(f"{path}: cannot read rules file ({e.strerror})") from None
    except UnicodeDecodeError:
        raise RulesError(f"{path}: not UTF-8 text; save the rules file as UTF-8") from None
    except yaml.constructor.ConstructorError as e:
        mark = e.problem_mark
        where = f" line {mark.line + 1}:" if mark else ""
        raise RulesError(f"{path}:{where} {e.problem}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise RulesError(f"{path}:{where} is not valid YAML") from None
    docs = raw.get("versions", [raw]) if isinstance(raw, dict) else None
    if not isinstance(docs, list):
        raise RulesError(f"{path}: expected a mapping (one version) or `versions:` list")
    out = []
    for i, doc in enumerate(docs):
        vid = doc.get("id", f"#{i + 1}") if isinstance(doc, dict) else f"#{i + 1}"
        try:
            out.append(Version.model_validate(doc))
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "(version)"
            msg = err["msg"].removeprefix("Value error, ")
            more = f" (+{len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
            raise RulesError(f"{path}: version {vid}: field {field}: {msg}{more}") from None
    return out


def load(path: Path | str) -> Rules:
    """Load one YAML file or every *.yaml in a directory."""
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.yaml")) + sorted(p.glob("*.yml"))
        if not files:
            raise RulesError(f"{p}: no *.yaml rules files in this directory")
    elif p.exists():
        files = [p]
    else:
        raise RulesError(f"{p}: rules path does not exist")
    versions: list[Version] = []
    where: dict[str, str] = {}
    for f in files:
        for v in _load_file(f):
            if v.id in where:
                raise RulesError(f"{f}: version {v.id}: field id: already defined in {where[v.id]}")
            where[v.id] = str(f)
            versions.append(v)
    return Rules(versions, origin=str(p), files=where)


DEFAULT_RULES_DIR = Path(__file__).resolve().parent.parent / "rules"

