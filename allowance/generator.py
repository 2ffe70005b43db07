"""Synthetic registry extracts (SPEC §3) shaped like Shanghai's hukou population.

Used for scale runs and tests: the engine must be exercised on a population with the real age
structure (SPEC §9), IDs that carry a birthplace rather than the paying district, the events
of the last year (deaths, moves in and out) and a small spread of broken rows for quarantine.
Everything is vectorised in numpy with one `default_rng(seed)`, so a (people, seed, as_of)
triple always gives the same frame, and 15 million rows take seconds, not minutes.
"""

from __future__ import annotations

import datetime as dt
import pathlib

import numpy as np
import polars as pl

from allowance.constants import CHANNELS, DISTRICTS
from allowance.idcard import CHECK_CHARS, WEIGHTS

REFERENCE_PEOPLE = 15_350_000  # 户籍人口 1535万, the size the band targets below are quoted for

# People per age band at the reference size (上海市老年人口监测统计, 2024). The brief quotes
# 60+ 576.9万, 65+ 452万, 80+ 86.0万, 65–69 161.2万, 70–79 180.0万, but the last two and 80+
# do not add up to 65+ (427.2万); the 65+ total is what the engine pays, so it is kept and
# 70–79 takes the remainder (204.8万).
BAND_TARGETS: dict[tuple[int, int], int] = {
    (0, 59): 9_581_000,
    (60, 64): 1_249_000,
    (65, 69): 1_612_000,
    (70, 79): 2_048_000,
    (80, 89): 746_500,
    (90, 99): 110_000,
    (100, 110): 3_500,
}
MAX_AGE = 110

# Relative hukou population by district (浦东 largest; the outer districts smaller).
DISTRICT_WEIGHTS: dict[str, float] = {
    "310101": 5.0, "310104": 7.0, "310105": 4.8, "310106": 6.8, "310107": 6.5, "310109": 5.2,
    "310110": 7.2, "310112": 8.5, "310113": 8.0, "310114": 4.2, "310115": 20.5, "310116": 3.5,
    "310117": 4.2, "310118": 3.2, "310120": 3.6, "310151": 3.8,
}  # fmt: skip

# Area codes of first registration. Shanghai's include retired ones (南市, 卢湾, 闸北, 吴淞,
# 南汇 and the former counties), which never pay: the hukou district does.
SHANGHAI_AREAS: tuple[str, ...] = (
    *DISTRICTS, "310102", "310103", "310108", "310111", "310119", "310221", "310222", "310223",
    "310224", "310225", "310226", "310227", "310228", "310229", "310230",
)  # fmt: skip
# Code a district's natives got before the district existed under its current code.
FORMER_CODE: dict[str, tuple[int, str]] = {
    "310112": (1992, "310221"), "310113": (1988, "310223"), "310114": (1993, "310222"),
    "310115": (1993, "310224"), "310116": (1997, "310228"), "310117": (1998, "310227"),
    "310118": (1999, "310229"), "310120": (2001, "310226"), "310151": (2016, "310230"),
}  # fmt: skip
OTHER_AREAS: dict[str, float] = {
    "320102": 8, "320502": 6, "320602": 4, "330102": 7, "330203": 4, "330402": 3, "340102": 6,
    "340202": 3, "370102": 3, "410102": 3, "420102": 3, "430102": 2, "510104": 2, "110101": 2,
    "120101": 1, "350102": 2, "360102": 2, "130102": 1, "140105": 1, "210102": 2, "220102": 1,
    "230102": 2, "440103": 2, "450102": 1, "500101": 1, "610102": 1, "620102": 1,
}  # fmt: skip
SHANGHAI_BORN_SHARE = 0.60
HOME_AREA_SHARE = 0.45  # Shanghai natives registered first in the district they still live in

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁"
    "任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴"
)
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国文玉兰珍凤红梅琴云海林波宁根宝德福荣金妹龙生祥"

# Deaths per year by age (upper bound exclusive), roughly Shanghai's life table.
DEATH_RATES: tuple[tuple[int, float], ...] = (
    (65, 0.001), (70, 0.01), (80, 0.025), (90, 0.07), (100, 0.18), (MAX_AGE + 1, 0.35),
)  # fmt: skip
MOVE_OUT_RATE = 0.003
MOVE_IN_RATE = 0.005
OLD_MOVE_IN_SHARE = 0.10
NO_CARD_60 = 0.01
SENIOR_CARD_60 = 0.45
NO_CARD_YOUNG = 0.04
LEGACY_15_SHARE = 0.003
LOWER_X_SHARE = 0.003

# Broken-row kinds (SPEC §3 reason codes), equally frequent; DUPLICATE_ID counts pairs, each
# pair being two quarantined rows.
BAD_KINDS: tuple[str, ...] = (
    "ID_FORMAT", "ID_CHECKSUM", "BIRTH_MISMATCH", "BIRTH_IN_FUTURE", "DEATH_BEFORE_BIRTH",
    "HUKOU_DATES", "DUPLICATE_ID", "UNKNOWN_DISTRICT", "BAD_CHANNEL", "CARD_MISSING",
    "MISSING_FIELD",
)  # fmt: skip
BAD_DISTRICTS = ("310103", "320102", "310108", "310225")
BAD_CHANNEL = "bank_card"
CARD_BINS = {"senior_card": 623066, "social_security_card": 621799}
AREAS: list[str] = [*SHANGHAI_AREAS, *OTHER_AREAS]
ID_SUFFIXES: list[str] = [*CHECK_CHARS, "x", "", "A"]  # check characters, lower-case x, none, bad

_DAY0 = dt.date(1970, 1, 1)


def _allocate(n: int, weights: np.ndarray) -> np.ndarray:
    """Split n into integer counts proportional to weights (largest remainder)."""
    raw = weights / weights.sum() * n
    counts = np.floor(raw).astype(np.int64)
    short = n - int(counts.sum())
    counts[np.argsort(-(raw - counts), kind="stable")[:short]] += 1
    return counts


def age_weights() -> np.ndarray:
    """Mass per single year of age 0..MAX_AGE, calibrated so each band hits BAND_TARGETS."""
    ages = np.arange(MAX_AGE + 1)
    shape = np.ones(MAX_AGE + 1)
    young = ages < 60  # low fertility below 30, the 1962–75 boom at 50–59
    shape[young] = np.interp(ages[young], [0, 20, 30, 45, 50, 59], [0.7, 0.8, 0.9, 1.0, 1.3, 1.4])
    shape[(ages >= 70) & (ages <= 79)] = np.linspace(1.6, 0.6, 10)
    shape[(ages >= 80) & (ages <= 89)] = 0.88 ** np.arange(10)
    shape[(ages >= 90) & (ages <= 99)] = 0.78 ** np.arange(10)
    shape[ages >= 100] = 0.55 ** np.arange(MAX_AGE - 99)
    out = np.zeros(MAX_AGE + 1)
    for (lo, hi), target in BAND_TARGETS.items():
        band = (ages >= lo) & (ages <= hi)
        out[band] = shape[band] / shape[band].sum() * target
    return out / out.sum()


def _death_rates() -> np.ndarray:
    """DEATH_RATES as a rate per single year of age 0..MAX_AGE."""
    rate = np.zeros(MAX_AGE + 1, dtype=np.float32)
    lo = 0
    for hi, r in DEATH_RATES:
        rate[lo:hi] = r
        lo = hi
    return rate


def _age_counts(n: int, rng: np.random.Generator) -> np.ndarray:
    """Rows per single year of age: exact band totals at any n (so a small test registry has the
    same bands as the full one), single years drawn within each band.

    The brief's figures count the living, and the extract also keeps the year's dead and moved
    out; each age is drawn that much more often (1 / (1 - its death rate - the move-out rate)),
    so that the living hit BAND_TARGETS. Drawn as the targets, the living were 9 % short at 80+
    and 35 % short at 100+, where a third die in a year. The living are then about 1.3 % fewer
    than the rows, in every band alike.
    """
    w = age_weights() / (1.0 - _death_rates().astype(np.float64) - MOVE_OUT_RATE)
    bands = [w[lo : hi + 1] for lo, hi in BAND_TARGETS]
    per_band = _allocate(n, np.array([b.sum() for b in bands]))
    return np.concatenate([rng.multinomial(c, b / b.sum()) for c, b in zip(per_band, bands, strict=True)])


def _days(d: dt.date) -> int:
    return (d - _DAY0).days


def _anniversaries(as_of: dt.date) -> np.ndarray:
    """Day number of the as_of birthday for each age (29 Feb falls back to 28 Feb)."""
    out = []
    for age in range(MAX_AGE + 1):
        y = as_of.year - age
        try:
            out.append(_days(as_of.replace(year=y)))
        except ValueError:
            out.append(_days(dt.date(y, 2, 28)))
    return np.array(out, dtype=np.int32)


def _ymd_table(lo: int, hi: int) -> np.ndarray:
    """YYYYMMDD as an integer for each day number lo..hi."""
    d = np.arange(lo, hi + 1).astype("datetime64[D]")
    months = d.astype("datetime64[M]")
    years = months.astype("datetime64[Y]").astype(np.int64) + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (d - months).astype(np.int64) + 1
    return years * 10000 + month * 100 + day


def _digit_table(values: list[int], width: int, weights: tuple[int, ...]) -> np.ndarray:
    """Weighted digit sums of fixed-width numbers: the check digit of a whole ID column is then
    three table look-ups (area, date, sequence) instead of 17 passes over the people."""
    digits = np.array([[int(c) for c in f"{v:0{width}d}"] for v in values], dtype=np.int64)
    return digits @ np.array(weights, dtype=np.int64)


def _first_area(district: np.ndarray, birth_year: np.ndarray, bucket: np.ndarray) -> np.ndarray:
    """Index into AREAS of the place of first registration: Shanghai natives mostly in their own
    district (under the code it had the year they were born), else anywhere in Shanghai or in
    another province. The ID never tells the paying district (SPEC §3). `bucket` is a uniform
    uint16; a 65 536-entry look-up table is much faster than a search per person."""
    codes = list(DISTRICTS)
    y0, years = int(birth_year.min()), int(birth_year.max()) - int(birth_year.min()) + 1
    home = np.array([[AREAS.index(c)] * years for c in codes], dtype=np.int16)
    for code, (since, former) in FORMER_CODE.items():
        home[codes.index(code), : max(0, since - y0)] = AREAS.index(former)
    home_share = SHANGHAI_BORN_SHARE * HOME_AREA_SHARE
    other = np.array(list(OTHER_AREAS.values()))
    mass = np.r_[  # slot 0: the home district's code; slot j: AREAS[j - 1]
        home_share,
        np.full(len(SHANGHAI_AREAS), (SHANGHAI_BORN_SHARE - home_share) / len(SHANGHAI_AREAS)),
        other / other.sum() * (1 - SHANGHAI_BORN_SHARE),
    ]
    centers = (np.arange(1 << 16) + 0.5) / (1 << 16)
    slot = np.searchsorted(np.cumsum(mass), centers).astype(np.int16)[bucket]
    at_home = home.ravel()[district.astype(np.int32) * years + (birth_year - y0)]
    return np.where(slot == 0, at_home, slot - 1)


def _unique_seq(area: np.ndarray, day: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sequence numbers making (area, birth date, seq) unique: within each (area, date) group the
    k-th person gets (random base + 337·k) mod 1000, distinct for k < 1000. A group larger than
    1000 (never seen at Shanghai's size) spills into another area code and is redone."""
    span = int(day.max()) + 1
    while True:
        key = area.astype(np.int32) * np.int32(span) + day
        if span <= 1 << 16:  # two stable radix passes (uint16 keys) beat one comparison sort
            by_day = np.argsort(day.astype(np.uint16), kind="stable")
            order = by_day[np.argsort(area[by_day].astype(np.uint16), kind="stable")]
        else:
            order = np.argsort(key)
        k = key[order]
        pos = np.arange(len(k), dtype=np.int32)
        start = np.maximum.accumulate(np.where(np.r_[True, k[1:] != k[:-1]], pos, 0))
        del k, key
        rank = pos - start
        base = rng.integers(0, 1000, len(pos), dtype=np.int32)
        seq = np.empty(len(pos), dtype=np.int16)
        seq[order] = (base[start] + rank * 337) % 1000
        if rank.max() < 1000:
            return seq
        over = np.zeros(len(pos), dtype=bool)
        over[order] = rank >= 1000
        area[over] = (area[over] + 1 + rng.integers(0, len(AREAS) - 1, int(over.sum()))) % len(AREAS)


def _bad_counts(people: int, bad_share: float) -> dict[str, int]:
    """Rows per broken kind (pairs for DUPLICATE_ID): round(people × bad_share) rows in all, never
    more, so a default extract passes the engine's 0.5 % threshold at any size. The rows are
    spread over the kinds in order; every kind appears once there is room for one of each
    (from about 6 000 people at the default share)."""
    slots = round(people * bad_share)
    per, rem = divmod(slots, len(BAD_KINDS) + 1)  # a duplicate pair takes two rows: one slot more
    return {k: per + (1 if i < rem else 0) for i, k in enumerate(BAD_KINDS)}


def _pick(table: list[str | None], idx: np.ndarray) -> pl.Series:
    """Strings by table look-up: far cheaper than formatting millions of numbers."""
    return pl.Series(table, dtype=pl.String).gather(pl.Series(idx, dtype=pl.UInt32))


def _concat(*parts: pl.Series) -> pl.Series:
    """Concatenate string columns; a null part makes the whole value null."""
    return pl.select(pl.concat_str([pl.lit(p) for p in parts])).to_series()


def _date(name: str, days: np.ndarray, valid: np.ndarray | None = None) -> pl.Series:
    """A Date column from day numbers since 1970, null where not valid."""
    out = pl.Series(name, days, dtype=pl.Int32).cast(pl.Date)
    if valid is None:
        return out
    return pl.select(pl.when(pl.lit(pl.Series(valid))).then(pl.lit(out))).to_series().alias(name)


def _redraw_shared_cards(head: np.ndarray, mid: np.ndarray, tail: np.ndarray, seed: int) -> None:
    """A card is one person's (a bank account is): where the draws gave two people the same card
    number (15.35M people drew about 350 000 of them into 10^8 short numbers), every holder but the
    first gets new middle and last digits, from a stream of its own, until no number is shared. A
    number drawn again that lands on an untouched row's card is drawn again itself: the untouched
    row keeps its card (audit 19B), so the rest of the registry is what the same seed always gave.
    In place."""
    rng = np.random.default_rng([seed, 0xCA2D])
    has_card = head < len(CHANNELS) * 10_000  # the last head is no card
    redrawn = np.zeros(len(head), dtype=bool)
    while True:
        # one number per card text: its head (channel and first digits), middle, and last digits
        # (0-99 two of them, 100 on five: a five-digit tail never reads as a two-digit one)
        key = (head.astype(np.int64) * 10_000 + mid) * 100_100 + tail
        # untouched rows first, so of a number shared they keep it and a redrawn row gives way
        order = np.concatenate([np.flatnonzero(~redrawn), np.flatnonzero(redrawn)])
        later = np.zeros(len(head), dtype=bool)
        later[order] = ~pl.Series(key[order]).is_first_distinct().to_numpy()
        again = np.flatnonzero(has_card & later)
        if not len(again):
            return
        redrawn[again] = True
        mid[again] = rng.integers(0, 10_000, len(again), dtype=np.int16)
        long_tail = tail[again] >= 100
        tail[again] = np.where(long_tail, 100 + rng.integers(0, 100_000, len(again), dtype=np.int32),
                               rng.integers(0, 100, len(again), dtype=np.int32))


def generate_registry(people: int, seed: int, as_of: dt.date, bad_share: float = 0.002) -> pl.DataFrame:
    """A registry extract (SPEC §3) of `people` rows as the big-data center would cut it on as_of.

    Same (people, seed, as_of, bad_share) → identical frame. About `bad_share` of the rows are
    broken in one of BAD_KINDS (every kind once there is room, about 6 000 people), all of them people
    aged 60+ so that quarantine matters.
    """
    if people < 1:
        raise ValueError(f"people must be at least 1, got {people}")
    if not 0 <= bad_share <= 0.05:
        raise ValueError(f"bad_share must be between 0 and 0.05, got {bad_share}")
    rng = np.random.default_rng(seed)
    n = people
    today = _days(as_of)
    lo_day = today - 366 * (MAX_AGE + 1)
    ymd_table = _ymd_table(lo_day, today + 366)  # every birth date, the future ones included

    # Ages: exact counts per single year, then shuffled; birth uniform within the year of age.
    age = rng.permutation(np.repeat(np.arange(MAX_AGE + 1, dtype=np.int8), _age_counts(n, rng)))
    birth = _anniversaries(as_of)[age] - rng.integers(0, 365, n, dtype=np.int32)
    weights = np.array([DISTRICT_WEIGHTS[c] for c in DISTRICTS])
    district = rng.permutation(np.repeat(np.arange(len(DISTRICTS), dtype=np.int8), _allocate(n, weights)))
    birth_year = (ymd_table // 10000).astype(np.int16)[birth - lo_day]
    area = _first_area(district, birth_year, rng.integers(0, 1 << 16, n, dtype=np.uint16))
    del birth_year

    # Events of the last year, dated in (as_of − 365, as_of]; the dead stay in the extract.
    u = rng.random(n, dtype=np.float32)
    r = _death_rates()[age]
    dead = u < r
    moved_out = ~dead & (u < r + MOVE_OUT_RATE)
    del r
    last_year = today - rng.integers(0, 365, n, dtype=np.int32)
    death = np.where(dead, np.maximum(last_year, birth), 0)
    u = rng.random(n, dtype=np.float32)  # moves in: within the year, or long ago (since birth)
    moved_in = u < MOVE_IN_RATE
    older = ~moved_in & (u < MOVE_IN_RATE + OLD_MOVE_IN_SHARE) & (birth <= today - 365)
    since = np.zeros(n, dtype=np.int32)
    i = np.flatnonzero(moved_in)
    since[i] = np.maximum(today - (u[i] / MOVE_IN_RATE * 365).astype(np.int32), birth[i])
    i = np.flatnonzero(older)
    frac = (u[i] - MOVE_IN_RATE) / OLD_MOVE_IN_SHARE
    since[i] = birth[i] + (frac * (today - 365 - birth[i])).astype(np.int32)
    has_since = moved_in | older
    out = np.where(moved_out, np.maximum(last_year, np.where(has_since, since, birth)), 0)
    del u, last_year, moved_in, older, i, frac

    # Channel: 1 % of people 60+ have no card yet; the rest 55 % 社保卡, 45 % 敬老卡.
    null_channel = len(CHANNELS) + 1  # after BAD_CHANNEL in the channel table
    senior = age >= 60
    u = rng.random(n, dtype=np.float32)
    channel = np.where(u < NO_CARD_60 + SENIOR_CARD_60, 0, 1).astype(np.int8)
    channel[np.where(senior, u < NO_CARD_60, u < NO_CARD_YOUNG)] = null_channel
    channel[~senior & (channel == 0)] = 1
    # card_no = (BIN + 4 digits) + 4 digits + 2 or 5 digits: 16 or 19 digits, 敬老卡 always 19.
    card_head = (channel.astype(np.int32) * 10_000 + rng.integers(0, 10_000, n, dtype=np.int32)).clip(
        max=len(CHANNELS) * 10_000
    )
    card_mid = rng.integers(0, 10_000, n, dtype=np.int16)
    long_card = (channel == 0) | (rng.random(n, dtype=np.float32) < 0.5)
    card_tail = np.where(long_card, 100 + rng.integers(0, 100_000, n, dtype=np.int32), card_mid % 100)
    del u, long_card
    _redraw_shared_cards(card_head, card_mid, card_tail, seed)

    given = len(GIVEN) + 1  # the last "given character" is none: a one-character given name
    name = rng.integers(0, len(SURNAMES) * len(GIVEN), n, dtype=np.int32) * given + np.where(
        rng.random(n, dtype=np.float32) < 0.7, rng.integers(0, len(GIVEN), n, dtype=np.int32), len(GIVEN)
    )
    null_name = len(SURNAMES) * len(GIVEN) * given
    has_birth = np.ones(n, dtype=bool)

    # Broken rows: a random sample of people 60+ with a card, each broken in one way only.
    counts = _bad_counts(n, bad_share)
    needed = sum(counts.values()) + counts["DUPLICATE_ID"]
    pool = np.flatnonzero(senior & (channel != null_channel) & ~dead & ~moved_out)
    del senior
    if len(pool) < needed:
        pool = np.arange(n)
    pool = pool[rng.choice(len(pool), min(needed, len(pool)), replace=False)]
    victims: dict[str, np.ndarray] = {}
    at = 0
    for kind in BAD_KINDS:
        victims[kind] = pool[at : at + counts[kind]]
        at += counts[kind]
    dup_source = pool[at : at + counts["DUPLICATE_ID"]]
    clean = np.ones(n, dtype=bool)
    clean[pool] = False

    v = victims["BIRTH_IN_FUTURE"]  # the ID carries the future date too (made unique below)
    birth[v] = today + 1 + np.arange(len(v)) % 300
    for m in (dead, moved_out, has_since):
        m[v] = False

    # person_id = area + YYYYMMDD + seq + check, unique over the clean rows.
    id_day = birth - lo_day
    seq = _unique_seq(area, id_day, rng)
    v = victims["DUPLICATE_ID"]  # the same person a second time, maybe in another district
    src = dup_source[: len(v)]
    v = v[: len(src)]
    for arr in (area, id_day, birth, seq, name):
        arr[v] = arr[src]
    check = (
        _digit_table([int(a) for a in AREAS], 6, WEIGHTS[:6])[area]
        + _digit_table(ymd_table.tolist(), 8, WEIGHTS[6:14])[id_day]
        + _digit_table(list(range(1000)), 3, WEIGHTS[14:])[seq]
    ) % 11
    suffix = check.astype(np.int16)  # index into ID_SUFFIXES

    # Valid variants the engine must normalise: legacy 15-digit IDs (born 19xx), lower-case x.
    u = rng.random(n, dtype=np.float32)
    ymd = ymd_table[id_day]
    legacy_ok = clean & (ymd >= 19000101) & (ymd < 20000101)
    legacy = legacy_ok & (u < LEGACY_15_SHARE * n / max(int(legacy_ok.sum()), 1))
    date_piece = id_day + np.where(legacy, len(ymd_table), 0)  # second half of the table: YYMMDD
    suffix[legacy] = ID_SUFFIXES.index("")
    is_x = clean & ~legacy & (check == CHECK_CHARS.index("X"))
    suffix[is_x & (u < LOWER_X_SHARE * n / max(int(is_x.sum()), 1))] = ID_SUFFIXES.index("x")
    del u, ymd, legacy_ok, legacy, is_x, check, clean

    v = victims["ID_FORMAT"]  # 17 digits, or a letter where the check character belongs
    suffix[v] = np.where(np.arange(len(v)) % 2 == 0, ID_SUFFIXES.index(""), ID_SUFFIXES.index("A"))
    v = victims["ID_CHECKSUM"]  # first sequence digit changed, check character kept
    seq[v] = (seq[v] + 100) % 1000
    v = victims["BIRTH_MISMATCH"]
    birth[v] -= 1 + np.arange(len(v), dtype=np.int32) % 30
    v = victims["DEATH_BEFORE_BIRTH"]
    dead[v] = True
    death[v] = birth[v] - 1 - np.arange(len(v), dtype=np.int32) % 3650
    v = victims["HUKOU_DATES"]
    has_since[v] = moved_out[v] = True
    since[v] = today - 1 - np.arange(len(v), dtype=np.int32) % 200
    out[v] = since[v] - 1 - np.arange(len(v), dtype=np.int32) % 365
    v = victims["UNKNOWN_DISTRICT"]
    district[v] = len(DISTRICTS) + np.arange(len(v)) % len(BAD_DISTRICTS)
    v = victims["BAD_CHANNEL"]
    channel[v] = len(CHANNELS)
    v = victims["CARD_MISSING"]
    card_head[v] = len(CHANNELS) * 10_000
    v = victims["MISSING_FIELD"]
    name[v[0::2]] = null_name
    has_birth[v[1::2]] = False

    ymd_strings = [str(d) for d in ymd_table.tolist()]
    digits4 = [f"{i:04d}" for i in range(10_000)]
    person_id = _concat(
        _pick(AREAS, area),
        _pick(ymd_strings + [d[2:] for d in ymd_strings], date_piece),
        _pick([f"{i:03d}{c}" for i in range(1000) for c in ID_SUFFIXES], seq * np.int32(len(ID_SUFFIXES)) + suffix),
    )
    del area, date_piece, seq, suffix
    names = [s + g1 + g2 for s in SURNAMES for g1 in GIVEN for g2 in (*GIVEN, "")]
    card_heads = [f"{CARD_BINS[c]}{d}" for c in CHANNELS for d in digits4]
    tails = [f"{i:02d}" for i in range(100)] + [f"{i:05d}" for i in range(100_000)]
    return pl.DataFrame(
        [
            person_id.alias("person_id"),
            _pick([*names, None], name).alias("name"),
            _date("birth_date", birth, has_birth),
            _pick([*DISTRICTS, *BAD_DISTRICTS], district).alias("district_code"),
            _date("hukou_since", since, has_since),
            _date("hukou_out_date", out, moved_out),
            _date("death_date", death, dead),
            _pick([*CHANNELS, BAD_CHANNEL, None], channel).alias("channel"),
            _concat(_pick([*card_heads, None], card_head), _pick(digits4, card_mid), _pick(tails, card_tail)).alias(
                "card_no"
            ),
        ]
    )


def write_registry(df: pl.DataFrame, path: pathlib.Path) -> None:
    """Write an extract as the big-data center delivers it: Parquet (zstd) or CSV, by suffix."""
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        df.write_parquet(path, compression="zstd")
    elif suffix == ".csv":
        df.write_csv(path)
    else:
        raise ValueError(f"cannot write a registry to {path}: use a .parquet or .csv file name")
