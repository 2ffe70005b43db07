"""Hypothesis strategies and helpers shared by the property tests (STYLE habit 8).

A drawn registry is a list of rows built with `allowance.testing.person`, each with a distinct
`seq` so that IDs (area + birth + seq + check) never collide, plus the as-of date, the quarter
and the ledger's opening month it is meant to be run with.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from allowance.constants import DISTRICT_CODES
from allowance.rules import Rules, Version
from allowance.runs import Breakers
from allowance.testing import Scenario, person

# Modest and reproducible: the same examples on every run (derandomize), no example database
# written into the working tree, no deadline (a run opens a DuckDB file and writes Parquet).
PROPERTY = settings(
    max_examples=25,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

CHANNEL_CHOICES: tuple[str | None, ...] = (None, "senior_card", "social_security_card")
# (as-of, opening month): the window is max(opening, as-of − 24 months) … 2025-09, so some
# draws reach back across the 2016 / 2024 versions (2024-05-01).
RUN_SETTINGS: tuple[tuple[dt.date, str], ...] = (
    (dt.date(2025, 7, 1), "2025-07"),
    (dt.date(2025, 6, 20), "2025-07"),
    (dt.date(2025, 8, 15), "2024-01"),
    (dt.date(2025, 7, 1), "2023-01"),
)
QUARTER = "2025Q3"
# The circuit breakers (mass stops, a shrinking extract) are statistical: on a registry of a few
# people one death is already "more than 2 %". Runs after the first one in a property are
# made with them wide open, since the properties are about amounts, not about the breakers.
OPEN = Breakers(max_stop_share=1.0, max_shrink_share=1.0)


def add_years(d: dt.date, years: int) -> dt.date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


def month_index(d: dt.date) -> int:
    return d.year * 12 + d.month - 1


def age_in_month(birth: dt.date, month_idx: int) -> int:
    """SPEC §1, written out independently of the engine."""
    year, month = month_idx // 12, month_idx % 12 + 1
    return (year - birth.year) - (1 if month < birth.month else 0)


def band_amount(version: Version, age: int) -> int | None:
    """The monthly fen of the band containing `age` (None below the lowest band)."""
    for b in version.bands:
        if b.min_age <= age and (b.max_age is None or age <= b.max_age):
            return b.monthly_fen
    return None


def expected_months(row: dict[str, Any], rules: Rules, first: int, last: int) -> dict[int, int]:
    """SPEC §1 conditions 1–4 for each month of the window → the amount due."""
    out: dict[int, int] = {}
    for m in range(first, last + 1):
        hs, ho, dd = row["hukou_since"], row["hukou_out_date"], row["death_date"]
        if hs is not None and month_index(hs) > m:  # hukou only from a later month
            continue
        if ho is not None and month_index(ho) < m:  # moved out in an earlier month
            continue
        if dd is not None and month_index(dd) < m:  # died in an earlier month
            continue
        fen = band_amount(rules.at(m), age_in_month(row["birth_date"], m))
        if fen is not None:
            out[m] = fen
    return out


def event_date(draw: st.DrawFn, low: dt.date, high: dt.date) -> dt.date | None:
    """An optional fact dated in [low, high], often in the last three years (where it matters)."""
    if low > high:
        return None
    recent = max(low, dt.date(high.year - 3, 1, 1))
    return draw(
        st.one_of(
            st.none(),
            st.dates(min_value=recent, max_value=high),
            st.dates(min_value=low, max_value=high),
        )
    )


@st.composite
def person_rows(draw: st.DrawFn, as_of: dt.date, seq: int) -> dict[str, Any]:
    birth = draw(st.dates(min_value=add_years(as_of, -105), max_value=add_years(as_of, -55)))
    hukou_since = event_date(draw, birth, as_of)
    hukou_out = event_date(draw, hukou_since or birth, as_of)
    death = event_date(draw, birth, as_of)
    return person(
        birth,
        seq=seq,
        district_code=draw(st.sampled_from(DISTRICT_CODES)),
        hukou_since=hukou_since,
        hukou_out_date=hukou_out,
        death_date=death,
        channel=draw(st.sampled_from(CHANNEL_CHOICES)),
    )


@dataclass(frozen=True)
class Drawn:
    rows: list[dict[str, Any]]
    as_of: dt.date
    opening: str

    @property
    def as_of_text(self) -> str:
        return self.as_of.isoformat()


@st.composite
def registries(draw: st.DrawFn, min_people: int = 1, max_people: int = 40) -> Drawn:
    as_of, opening = draw(st.sampled_from(RUN_SETTINGS))
    n = draw(st.integers(min_value=min_people, max_value=max_people))
    seqs = draw(st.lists(st.integers(0, 999), min_size=n, max_size=n, unique=True))
    rows = [draw(person_rows(as_of, s)) for s in seqs]
    return Drawn(rows, as_of, opening)


@contextmanager
def scenario(opening: str) -> Iterator[Scenario]:
    """A fresh ledger and output folder per hypothesis example (tmp_path is shared between them)."""
    with tempfile.TemporaryDirectory(prefix="allowance-prop-") as d:
        yield Scenario(Path(d), opening_month=opening)
