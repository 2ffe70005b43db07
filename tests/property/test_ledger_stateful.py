"""The ledger under any sequence of runs, publications, registry changes and bank returns.

A hypothesis state machine (`RuleBasedStateMachine`) drives one ledger (`allowance.testing.
Scenario` in a fresh temp folder) with a small population, the way staff and the nightly jobs
drive it month after month: the clock advances; quarterly and supplement runs are drafted on
the current extract and published or not; old drafts are published (stale ones are refused);
people die, move their hukou out, move in, get, change or lose a card, have their birth date
corrected; the bank fails payment lines; the last run is rerun. The breakers are open and the
quarantine threshold is 1.0: this machine is about what is paid, not about refusals.

A corrected birth date is modelled the way it reaches the engine: the resident ID encodes the
birth date (GB 11643-1999) and a row whose birth date differs from its ID is quarantined
(SPEC §3 BIRTH_MISMATCH), so the correction arrives as the same human under a re-issued ID
(same area and sequence, the corrected date): the old ID leaves the extract, the new one enters
it. All statements below are per ID — the only identity the engine knows.

Invariants, after every step (`@invariant`):
1. Ledger arithmetic: published payment lines + published recovery lines (negative) − the
   amounts the bank failed + recoveries cancelled because the payment they recovered failed
   (CANCEL entries: that money never reached the person) == the net the ledger holds
   (Σ `Scenario.net()`); no person-month is ever held below zero.
2. Never paid twice: per person-month, PAY − REVERSAL entries are ≥ 0 and at most one band
   amount of that ID's age in that month (0 below 65).
3. Reconciliation. Let P be the latest published batch, E the extract it was drafted on, W its
   window (retroactive start … end of the latest pre-disbursed quarter). For every ID with a
   clean row in E, and every month of W:
       net == max(entitlement on E (SPEC §1, `allowance.entitlement.person_months`)
                  − what the bank failed since P was published, 0)
   (≤ instead of == for an ID with no card in E: new months are not paid, recoveries are). An
   ID the ledger holds that has no row in E is entitled to nothing (SPEC §4). So right after a
   run is drafted on the current extract and published, net == entitlement exactly; in
   particular no month after a death or a move out is held. Nothing is held after the end of
   the latest published quarter.
4. Every payment line pays, for each of its months, at most that month's entitlement on the
   extract the draft was computed on (> 0 and ≤ the band: nothing after death, nothing twice).
5. A rerun changes nothing: rerun on an unchanged ledger, a draft is identical (same id, same
   lines); rerun after it was published, it has no lines.
6. `allowance ledger check` passes: holdings are the journal's net, batches match their entries.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from allowance.entitlement import person_months
from allowance.errors import LedgerError
from allowance.idcard import make_id
from allowance.ledger import Ledger
from allowance.months import month_end, month_index, month_start, quarter_label
from allowance.registry import read_extract, validate
from allowance.runs import Breakers, RunResult
from allowance.testing import Scenario, person

OPEN = Breakers(max_stop_share=1.0, max_shrink_share=1.0)
OPENING = "2025-07"
START = dt.date(2025, 7, 2)
AREA = "320102"


def add_months(d: dt.date, n: int, day: int) -> dt.date:
    mi = month_index(d) + n
    return dt.date(mi // 12, mi % 12 + 1, day)


def date_between(draw_int: int, low: dt.date, high: dt.date) -> dt.date:
    """A date in [low, high] chosen by an integer (so that hypothesis shrinks it)."""
    span = (high - low).days
    return low + dt.timedelta(days=draw_int % (span + 1))


def band_fen(rules: Any, birth: dt.date, mi: int) -> int:
    age = (mi - month_index(birth)) // 12
    band = rules.at(mi).band_for(age)
    return band.monthly_fen if band is not None else 0


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory(prefix="allowance-stateful-")
        self.sc = Scenario(Path(self._tmp.name), opening_month=OPENING)
        self.clock = START
        self.people: dict[int, dict[str, Any]] = {}  # seq (one human) → current registry row
        self.births: dict[str, dt.date] = {}  # every ID ever issued → its birth date
        self.drafts: list[tuple[str, Path, dt.date]] = []  # batch id, extract, as-of
        self.last_run: tuple[str, str | None, Path, dt.date, RunResult, int] | None = None
        self.published: dict[str, Any] | None = None  # what the latest publication was computed on
        # the machine's own account of the bank (SPEC §8): lines it takes as reversed (failed, not
        # paid on a retry since), as they were at that publication, every line it has news of, and
        # a clock of the bank's settlements (each notice later than the one before)
        self.reversed: set[str] = set()
        self.reversed_then: frozenset[str] = frozenset()
        self.noticed: set[str] = set()
        self.ticks = 0
        self.quarter_end: int | None = None
        self.extract_path: Path | None = None  # the current extract, written once per change
        self._ent_cache: dict[tuple[Path, int, int], Any] = {}

    def teardown(self) -> None:
        self._tmp.cleanup()

    # ---- the population -------------------------------------------------------------------
    @initialize(
        people=st.lists(
            st.tuples(
                st.integers(0, 999),  # seq
                st.dates(dt.date(1925, 1, 1), dt.date(1962, 12, 31)),
                st.sampled_from([None, "senior_card", "senior_card", "social_security_card"]),
                st.one_of(st.none(), st.dates(dt.date(2000, 1, 1), START)),  # hukou since
            ),
            min_size=5, max_size=12, unique_by=lambda t: t[0],
        )
    )
    def populate(self, people: list[tuple[int, dt.date, str | None, dt.date | None]]) -> None:
        for seq, birth, channel, since in people:
            self._set(seq, person(birth, seq=seq, area=AREA, channel=channel,
                                  hukou_since=since if since and since >= birth else None))

    def _set(self, seq: int, row: dict[str, Any]) -> None:
        self.people[seq] = row
        self.births[row["person_id"]] = row["birth_date"]
        self.extract_path = None

    def _extract(self) -> Path:
        if self.extract_path is None:
            self.extract_path = self.sc.registry(list(self.people.values()))
        return self.extract_path

    def _pick(self, i: int, alive: bool = True) -> int | None:
        seqs = sorted(s for s, r in self.people.items()
                      if not alive or (r["death_date"] is None and r["hukou_out_date"] is None))
        return seqs[i % len(seqs)] if seqs else None

    # ---- the clock ------------------------------------------------------------------------
    @rule(months=st.integers(1, 3), day=st.integers(1, 28))
    def advance(self, months: int, day: int) -> None:
        self.clock = add_months(self.clock, months, day)

    # ---- runs and publication -------------------------------------------------------------
    def _draft(self, kind: str, quarter: str | None, reg: Path, as_of: dt.date) -> RunResult:
        kw: dict[str, Any] = {"breakers": OPEN, "max_quarantine_share": 1.0}
        if kind == "quarterly":
            assert quarter is not None
            res = self.sc.quarterly(quarter, reg, as_of.isoformat(), **kw)
        else:
            res = self.sc.supplement(reg, as_of.isoformat(), **kw)
        with Ledger.use(self.sc.ledger, read_only=True) as led:
            state = led.ledger_state_seq()
        self.drafts.append((res.batch_id, reg, as_of))
        self.last_run = (kind, quarter, reg, as_of, res, state)
        self._check_draft(res.batch_id, reg, as_of)
        return res

    def _check_draft(self, batch_id: str, reg: Path, as_of: dt.date) -> None:
        """Invariant 4: a payment pays no month beyond its entitlement on the draft's extract."""
        with Ledger.use(self.sc.ledger, read_only=True) as led:
            b = led.batch(batch_id)
            pieces = led.df(
                "select p.person_id, p.from_mi, p.to_mi, p.fen from batch_pieces p join batch_lines l "
                "using (line_id) where p.batch_id = ? and l.line_type = 'PAYMENT'", [batch_id])
        if b["first_month"] is None:
            assert pieces.height == 0
            return
        ent, _, _ = self._entitled(reg, as_of, int(b["first_month"]), int(b["last_month"]))
        for pid, a, z, fen in pieces.iter_rows():
            for m in range(a, z + 1):
                assert 0 < fen <= ent.get((pid, m), 0), (
                    f"{batch_id} pays {pid} {fen} fen for month {m}, entitled to {ent.get((pid, m), 0)}")

    def _publish(self, batch_id: str, reg: Path, as_of: dt.date) -> None:
        with Ledger.use(self.sc.ledger, read_only=True) as led:
            was = led.batch(batch_id)["status"]
        self.sc.publish(batch_id)
        with Ledger.use(self.sc.ledger, read_only=True) as led:
            b = led.batch(batch_id)
        assert b["status"] == "published"
        if was == "published" or b["first_month"] is None:
            return
        if b["kind"] == "quarterly":
            self.quarter_end = max(self.quarter_end or 0, int(b["last_month"]))
        self.published = {"batch_id": batch_id, "registry": reg, "as_of": as_of,
                          "first": int(b["first_month"]), "last": int(b["last_month"])}
        self.reversed_then = frozenset(self.reversed)

    @rule(publish=st.booleans())
    def quarterly(self, publish: bool) -> None:
        q = quarter_label(month_index(self.clock))
        res = self._draft("quarterly", q, self._extract(), self.clock)
        if publish:
            self._publish(res.batch_id, self._extract(), self.clock)

    @rule(publish=st.booleans())
    def supplement(self, publish: bool) -> None:
        res = self._draft("supplement", None, self._extract(), self.clock)
        if publish:
            self._publish(res.batch_id, self._extract(), self.clock)

    @precondition(lambda self: self.drafts)
    @rule(i=st.integers(0, 10**6))
    def publish_an_existing_draft(self, i: int) -> None:
        batch_id, reg, as_of = self.drafts[i % len(self.drafts)]
        before = self._ledger_state()
        try:
            self._publish(batch_id, reg, as_of)
        except LedgerError as e:
            assert "drafted before the ledger last changed" in str(e)
            assert self._ledger_state() == before, "a refused publication changes nothing"

    @precondition(lambda self: self.last_run is not None)
    @rule()
    def rerun_the_last_run(self) -> None:
        assert self.last_run is not None
        kind, quarter, reg, as_of, prev, state = self.last_run
        with Ledger.use(self.sc.ledger, read_only=True) as led:
            now_state = led.ledger_state_seq()
            prev_status = led.batch(prev.batch_id)["status"]
            prev_lines = led.df("select * exclude (batch_id) from batch_lines where batch_id=? order by line_id",
                                [prev.batch_id])
        res = self._draft(kind, quarter, reg, as_of)
        lines = self.sc.lines(res.batch_id)
        if prev_status == "draft" and now_state == state:
            assert res.batch_id == prev.batch_id, "a rerun on an unchanged ledger is the same draft"
            got = lines.drop("batch_id").with_columns(pl.col("line_id").str.slice(len(res.batch_id)))
            want = prev_lines.with_columns(pl.col("line_id").str.slice(len(prev.batch_id)))
            assert got.equals(want), "a rerun on an unchanged ledger drafts the same lines"
        elif prev_status == "published" and now_state == self._state_after_publish(prev.batch_id):
            assert lines.height == 0, f"rerunning a published run pays or recovers again: {lines}"

    def _state_after_publish(self, batch_id: str) -> int:
        with Ledger.use(self.sc.ledger, read_only=True) as led:
            row = led.one("select max(seq) from events where action = 'publish' and batch_id = ?", [batch_id])
        return int(row[0]) if row and row[0] is not None else -1

    # ---- the registry changes -------------------------------------------------------------
    @rule(i=st.integers(0, 10**6), d=st.integers(0, 10**6))
    def death(self, i: int, d: int) -> None:
        self._date_fact(i, d, "death_date")

    @rule(i=st.integers(0, 10**6), d=st.integers(0, 10**6))
    def hukou_out(self, i: int, d: int) -> None:
        self._date_fact(i, d, "hukou_out_date")

    def _date_fact(self, i: int, d: int, field: str) -> None:
        """Someone dies or moves out on a day after their birth, their hukou and 2025-01-01."""
        seq = self._pick(i)
        if seq is None:
            return
        r = dict(self.people[seq])
        low = max(r["birth_date"], r["hukou_since"] or r["birth_date"], dt.date(2025, 1, 1))
        r[field] = date_between(d, low, self.clock)
        self._set(seq, r)

    @rule(seq=st.integers(0, 999), birth=st.dates(dt.date(1925, 1, 1), dt.date(1962, 12, 31)),
          d=st.integers(0, 10**6), channel=st.sampled_from([None, "senior_card", "social_security_card"]))
    def hukou_move_in(self, seq: int, birth: dt.date, d: int, channel: str | None) -> None:
        if seq in self.people:
            return
        since = date_between(d, max(birth, add_months(self.clock, -6, 1)), self.clock)
        self._set(seq, person(birth, seq=seq, area=AREA, hukou_since=since, channel=channel))

    @rule(i=st.integers(0, 10**6), what=st.sampled_from(["obtained_or_changed", "lost"]),
          channel=st.sampled_from(["senior_card", "social_security_card"]), card=st.integers(10**15, 10**16 - 1))
    def card(self, i: int, what: str, channel: str, card: int) -> None:
        seq = self._pick(i, alive=False)
        if seq is None:
            return
        r = dict(self.people[seq])
        r["channel"], r["card_no"] = (channel, str(card)) if what == "obtained_or_changed" else (None, None)
        self._set(seq, r)

    @rule(i=st.integers(0, 10**6), birth=st.dates(dt.date(1925, 1, 1), dt.date(1962, 12, 31)))
    def birth_date_corrected(self, i: int, birth: dt.date) -> None:
        """The same human under a re-issued ID (see the module docstring). Never back to an ID used
        before: its recovered months would then be paid again, which invariant 2 forbids."""
        seq = self._pick(i, alive=False)
        if seq is None:
            return
        r = dict(self.people[seq])
        if make_id(AREA, birth, seq) in self.births or any(
            x is not None and x < birth for x in (r["hukou_since"], r["hukou_out_date"], r["death_date"])
        ):
            return
        r["birth_date"], r["person_id"] = birth, make_id(AREA, birth, seq)
        self._set(seq, r)

    # ---- the bank -------------------------------------------------------------------------
    @precondition(lambda self: self.published is not None)  # a line to return: drawn only then
    @rule(i=st.integers(0, 10**6), status=st.sampled_from(["FAILED", "FAILED", "PAID"]), twice=st.booleans())
    def bank_return(self, i: int, status: str, twice: bool) -> None:
        self._notice(i, status, twice)

    @precondition(lambda self: bool(self.reversed))
    @rule(i=st.integers(0, 10**6))
    def bank_pays_a_failed_line_on_a_retry(self, i: int) -> None:
        self._notice(i, "PAID", False)

    def _notice(self, i: int, status: str, twice: bool) -> None:
        with Ledger.use(self.sc.ledger, read_only=True) as led:
            # Lines of people who also have a recovery come first (small `i` is drawn most), so that
            # a failure meeting a recovery — the delicate case — is tried often. Each notice is
            # settled after every one before it, and changes how its line ends: a FAILED of a line
            # paid (never heard of, a credit, or a retry's: a bounce, 退汇), a PAID of a line failed
            # (a retry the bank paid) or never heard of.
            lines = led.df(
                "select l.line_id from batch_lines l join batches b using (batch_id) "
                "where b.status = 'published' and l.line_type = 'PAYMENT' "
                "order by l.person_id not in (select person_id from recoveries), l.line_id"
            )["line_id"].to_list()
        if status == "FAILED":
            open_lines = [x for x in lines if x not in self.reversed]
        else:
            # lines failed first: a retry after a re-issue is the case to try
            open_lines = ([x for x in lines if x in self.reversed]
                          + [x for x in lines if x not in self.noticed and x not in self.reversed])
        if not open_lines:
            return
        line_id = open_lines[i % len(open_lines)]
        self.ticks += 1
        settled = f"{self.clock.isoformat()} {self.ticks // 3600:02d}:{self.ticks // 60 % 60:02d}:{self.ticks % 60:02d}"
        df = pl.DataFrame({"line_id": [line_id], "status": [status], "reason": ["stateful"], "settled_at": [settled]})
        retry = line_id in self.reversed
        with Ledger.use(self.sc.ledger) as led:
            counts = led.import_bank_returns(df, f"sha-{line_id}-{self.ticks}", today=self.clock)
        assert counts["new"] == 1
        assert counts["failed"] == (status == "FAILED"), counts
        assert counts["paid_on_retry"] == (status == "PAID" and retry), counts
        self.noticed.add(line_id)
        if status == "FAILED":
            self.reversed.add(line_id)
        else:
            self.reversed.discard(line_id)
        if twice:
            before = self._ledger_state()
            with Ledger.use(self.sc.ledger) as led:
                again = led.import_bank_returns(df, f"sha-{line_id}-{self.ticks}", today=self.clock)
            assert again["new"] == 0 and again["already_recorded"] == 1
            assert self._ledger_state() == before, "importing the same return twice changes nothing"

    # ---- helpers --------------------------------------------------------------------------
    def _ledger_state(self) -> tuple[int, list[tuple[Any, ...]]]:
        """What a publication or an import may change: the change sequence and the net held."""
        with Ledger.use(self.sc.ledger, read_only=True) as led:
            seq = led.ledger_state_seq()
        return seq, self.sc.net().rows()

    def _entitled(self, reg: Path, as_of: dt.date, first: int, last: int) -> tuple[
            dict[tuple[str, int], int], set[str], set[str]]:
        key = (reg, first, last)
        if key not in self._ent_cache:
            v = validate(read_extract(reg), as_of, self.sc.rules.channels())
            assert v.quarantine.height == 0, f"the machine builds valid rows only: {v.quarantine}"
            clean = v.clean.with_row_index("pkey")
            pm = person_months(clean.lazy(), self.sc.rules, first, last).collect().join(
                clean.select("pkey", "person_id"), on="pkey")
            ent = {(p, int(m)): int(f) for p, m, f in pm.select("person_id", "month_idx", "monthly_fen").iter_rows()}
            no_card = set(clean.filter(pl.col("channel").is_null())["person_id"].to_list())
            self._ent_cache[key] = (ent, set(clean["person_id"].to_list()), no_card)
        return self._ent_cache[key]

    # ---- invariants -----------------------------------------------------------------------
    @invariant()
    def ledger_arithmetic(self) -> None:
        net = self.sc.net()
        held = int((net["net_fen"]).sum()) if net.height else 0
        with Ledger.use(self.sc.ledger, read_only=True) as led:
            lines = led.one("select coalesce(sum(l.amount_fen), 0) from batch_lines l join batches b using (batch_id) "
                            "where b.status = 'published'")
            failed = led.one("select coalesce(sum(amount_fen), 0) from batch_lines where list_contains(?, line_id)",
                             [sorted(self.reversed)])
            cancelled = led.one("select coalesce(sum(fen * (to_mi - from_mi + 1)), 0) from entries "
                                "where kind = 'CANCEL'")
            per_month = led.df(
                "with m as (select person_id, unnest(generate_series(from_mi, to_mi)) as mi, fen, kind from entries "
                "where kind in ('PAY', 'REVERSAL', 'RETRY_PAID')) select person_id, mi::integer as mi, "
                "sum(fen)::bigint as paid, coalesce(sum(fen) filter (where kind = 'RETRY_PAID'), 0)::bigint as retried "
                "from m group by all"
            )
        assert lines is not None and failed is not None and cancelled is not None
        assert int(cancelled[0]) >= 0, "a cancelled recovery gives back, never takes"
        assert int(lines[0]) - int(failed[0]) + int(cancelled[0]) == held, (
            f"published lines {lines[0]} − failed {failed[0]} + cancelled recoveries {cancelled[0]} ≠ held {held}")
        for pid, mi, paid, retried in per_month.iter_rows():
            band = band_fen(self.sc.rules, self.births[pid], mi)
            # only the bank's paying a failed line on a retry, after its months were re-issued, puts a
            # month over its band (until the next run recovers it)
            assert 0 <= paid <= band + retried, (f"{pid} month {mi}: paid − reversed + paid on a retry = {paid}, "
                                                 f"one band is {band}, {retried} of it paid on a retry")

    @invariant()
    def ledger_check_passes(self) -> None:
        """Invariant 6: `allowance ledger check` finds nothing wrong in any state the engine makes."""
        with Ledger.use(self.sc.ledger, read_only=True) as led:
            res = led.check()
        assert res["ok"], res["problems"]

    @invariant()
    def reconciled_with_the_published_extract(self) -> None:
        net = self.sc.net()
        if self.quarter_end is None:
            assert net.height == 0, f"nothing is held before any quarter is published: {net}"
        else:
            beyond = net.filter(pl.col("month_idx") > self.quarter_end)
            assert beyond.height == 0, f"months after the latest published quarter are held: {beyond}"
        p = self.published
        if p is None:
            return
        ent, clean_ids, no_card = self._entitled(p["registry"], p["as_of"], p["first"], p["last"])
        failed: dict[tuple[str, int], int] = {}
        retried: dict[tuple[str, int], int] = {}  # failed before that publication, paid on a retry since
        failed_since, retried_since = self.reversed - self.reversed_then, self.reversed_then - self.reversed
        if failed_since or retried_since:
            with Ledger.use(self.sc.ledger, read_only=True) as led:
                pieces = led.df("select person_id, from_mi, to_mi, fen, list_contains(?, line_id) from batch_pieces "
                                "where list_contains(?, line_id)", [sorted(retried_since),
                                                                    sorted(failed_since | retried_since)])
            for pid, a, z, fen, was_retried in pieces.iter_rows():
                into = retried if was_retried else failed
                for m in range(a, z + 1):
                    into[(pid, m)] = into.get((pid, m), 0) + int(fen)
        held = {(pid, int(m)): int(f) for pid, m, f in net.iter_rows()}
        negative = {k: v for k, v in held.items() if v < 0}
        assert not negative, f"months held below zero: {negative}"
        ids = clean_ids | {pid for pid, _ in held}
        for pid in sorted(ids):
            for m in range(p["first"], p["last"] + 1):
                # a failure before that publication (which re-issued what was due) and its retry since:
                # as if it had never failed, so the months re-issued are held twice until the next run
                want = (max(ent.get((pid, m), 0) - failed.get((pid, m), 0), 0)
                        + min(retried.get((pid, m), 0), ent.get((pid, m), 0)))
                got = held.get((pid, m), 0)
                where = (f"{pid} {month_start(m):%Y-%m} after {p['batch_id']} (window {month_start(p['first'])} … "
                         f"{month_end(p['last'])})")
                if pid in no_card:
                    assert got <= want, f"{where} (no card): held {got} > due {want}"
                else:
                    assert got == want, f"{where}: held {got}, entitlement − failed since + retried since = {want}"


# Reproducible (derandomize, no example database in the tree) and bounded in time: a failing
# sequence is reported as generated (at most 12 steps), not shrunk — shrinking a machine that
# opens a DuckDB file per step can take minutes.
LedgerMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=12,
    deadline=None,
    database=None,
    derandomize=True,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestLedgerMachine = LedgerMachine.TestCase
