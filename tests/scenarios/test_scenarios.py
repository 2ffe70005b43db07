"""The one collector of the scenario tests in this folder (issue 4: nightly supplements).

Every `*.yaml` file here holds a `scenarios:` list. A scenario is a story told over several
months on one ledger (`allowance.testing.Scenario`): the people of the registry, then steps in
order. Each step does one thing and says what must follow from it (`expect`).

People: `people` maps a short name to the facts of their registry row (birth_date,
hukou_since, hukou_out_date, death_date, channel, card_no, district_code); everyone has a valid
ID and, unless said otherwise, a senior card. `in_extract: false` keeps a person out of the
extract until a `change` step brings them in (a hukou moving in). `crowd` adds many identical
people named <prefix>1 … <prefix>N. A name range `c1..c10` stands for c1, c2, …, c10 wherever a
person is named.

A corrected birth date: the resident ID encodes the birth date (GB 11643-1999) and the engine
quarantines a row whose birth date differs from its ID (SPEC §3 BIRTH_MISMATCH), so a
correction reaches the engine the way the public-security record delivers it: the same person
under a re-issued ID (same area and sequence, the corrected date, a new check digit). The new
ID is named `<name>#2` in the expectations; the old one keeps the plain name.

`rules: {retro_months: 3}` runs a scenario on a copy of rules/*.yaml with that value changed.

Steps (one action each):
- `quarterly: 2025Q3` / `supplement: <as-of date>` — a run on the current extract (`as_of`
  for a quarterly); options `publish: true`, `out: true` (write the change report), `breakers`
  (`default`, or max_stop_share / max_shrink_share / force / reason; open unless said),
  `max_quarantine_share`, `name` (to refer to the batch later).
- `publish: <name>|latest` — publish a draft.
- `change: {name: {field: value}}` — new facts in the registry from now on.
- `bank_returns: {name: PAID|FAILED}` (or `STATUS@SETTLED_AT`, or a list of them for one person: a
  bounce in one file; settled_at is 2025-08-15, or the batch's as-of if later, unless given; `@none`
  for none) — a return file for each person's latest published payment line (`batch: <name>` to
  pick the batch; `via_file: true` to go through a CSV file and `allowance.returns.read_bank_returns`);
  `bank_returns: again` re-imports the last file;
  `bank_returns: {unknown: LINE_ID}` a file naming a line id the ledger never issued.
- `recoveries: {confirm|write_off: [names], by, note}` — the district closes the recovery
  lines of those people (`confirm_lines: [LINE_ID]` names line ids as written).
- `review: {person, action: HOLD|REJECT|RELEASE, reason, by, batch, from}` — on a draft (default:
  the latest one).

Expectations: `lines` (every line of the batch, as in tests/cases), `no_card`, `window`,
`expired`, `stops`, `changes` (all of summary["changes"]), `summary` (named summary values),
`forced` (the reason, or false),
`report` (the change report files; `{districts: [...]}` also names their partitions), `error` +
`message` (and the ledger must be left as it was), `imported` (counts of a bank-return import),
`recovery_states`, `result` (of a recoveries step), `net` (fen held per person-month; `{}` =
nothing at all).

Besides, after EVERY step the invariants of `_check_invariants` are asserted; every draft is
checked to pay no month beyond its entitlement (`_check_draft_pays_only_what_is_due`); and every
reason and cause code must be one declared in `allowance.constants`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from allowance import errors
from allowance import rules as rules_mod
from allowance.constants import LINE_REASONS, RECOVERY_CAUSES
from allowance.entitlement import person_months
from allowance.idcard import make_id
from allowance.ledger import Ledger
from allowance.months import fmt, month_index, month_index_expr, month_start, parse_month
from allowance.registry import read_extract, validate
from allowance.returns import read_bank_returns
from allowance.runs import Breakers, RunResult
from allowance.testing import Scenario, person

HERE = Path(__file__).resolve().parent
# A scenario has a handful of people, so one death is a large share of the recipients: the
# circuit breakers are open unless a step tests them (`breakers: default` or explicit values).
OPEN = Breakers(max_stop_share=1.0, max_shrink_share=1.0)
FACT_FIELDS = ("birth_date", "hukou_since", "hukou_out_date", "death_date", "channel", "card_no", "district_code")
DATE_FIELDS = ("birth_date", "hukou_since", "hukou_out_date", "death_date")
LINE_KEYS = ("reason", "cause", "months", "amount_fen", "period_from", "period_to", "periods", "channel", "card_no",
             "municipal_fen", "district_fen", "rules_version", "by_month")


# ---- loading ------------------------------------------------------------------------------


def _load() -> list[Any]:
    params = []
    for path in sorted(HERE.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for sc in doc["scenarios"]:
            missing = [k for k in ("name", "why", "opening_month", "steps") if k not in sc]
            assert not missing, f"{path.name}: scenario {sc.get('name')!r} lacks {missing}"
            params.append(pytest.param(sc, id=sc["name"]))
    names = [p.id for p in params]
    assert len(names) == len(set(names)), f"scenario names must be unique: {names}"
    return params


SCENARIOS = _load()


def _date(v: Any) -> dt.date | None:
    if v is None or v == "":
        return None
    return v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v))


def _month(v: Any) -> str:
    """A YAML month (`2025-07`, or a date YAML read from `2025-07-01`) as `YYYY-MM`."""
    return fmt(v) if isinstance(v, dt.date) else fmt(parse_month(str(v)))


def _expand(names: str | list[str]) -> list[str]:
    """`c1..c10` → c1, c2, …, c10; a list is expanded item by item."""
    if isinstance(names, list):
        return [n for x in names for n in _expand(x)]
    m = re.fullmatch(r"([A-Za-z_]+)(\d+)\.\.(?:\1)?(\d+)", str(names))
    if not m:
        return [str(names)]
    return [f"{m.group(1)}{i}" for i in range(int(m.group(2)), int(m.group(3)) + 1)]


def _error_class(name: str) -> type[Exception]:
    cls = getattr(errors, name, None)
    assert isinstance(cls, type) and issubclass(cls, Exception), f"unknown error class {name!r}"
    return cls


def _custom_rules(tmp: Path, overrides: dict[str, Any]) -> Path:
    """rules/*.yaml copied into tmp with some engine-rule values changed (e.g. retro_months)."""
    folder = tmp / "rules"
    folder.mkdir()
    for f in sorted(rules_mod.DEFAULT_RULES_DIR.glob("*.yaml")):
        text = f.read_text(encoding="utf-8")
        for key, value in overrides.items():
            text, n = re.subn(rf"^({key}: \{{value: )[^,]+,", rf"\g<1>{value},", text, flags=re.M)
            assert n == 1, f"{f.name}: cannot set {key}"
        (folder / f.name).write_text(text, encoding="utf-8")
    return folder


# ---- the state of one scenario ------------------------------------------------------------


@dataclass
class Published:
    """What the latest publication was computed on: the invariants are stated against it."""

    batch_id: str
    registry: Path
    as_of: dt.date
    first: int
    last: int
    blocked: set[str]
    kind: str = "quarterly"
    reversed_then: frozenset[str] = frozenset()  # lines the bank had failed, and not paid since, then


@dataclass
class Story:
    sc: Scenario
    facts: dict[str, dict[str, Any]]
    seq: dict[str, int]
    area: dict[str, str]
    in_extract: dict[str, bool]
    pid: dict[str, str]  # current ID of each person
    who: dict[str, str] = field(default_factory=dict)  # every ID ever issued → its label
    reissued: dict[str, int] = field(default_factory=dict)
    drafts: dict[str, str] = field(default_factory=dict)
    draft_inputs: dict[str, tuple[Path, dt.date]] = field(default_factory=dict)
    latest_draft: str | None = None
    quarter_end: int | None = None  # the last month of the latest published quarterly batch
    ent_cache: dict[tuple[Path, dt.date, int, int], Due] = field(default_factory=dict)
    undeclared: list[str] = field(default_factory=list)  # reason / cause codes not in allowance.constants
    published: Published | None = None
    last_returns: tuple[pl.DataFrame, str] | None = None
    # the harness's own account of the bank's notices (SPEC §8): every row imported, by line, and
    # the lines it takes as reversed (failed, and not paid on a retry since)
    notices: dict[str, set[tuple[str, str | None]]] = field(default_factory=dict)
    reversed: set[str] = field(default_factory=set)

    # -- registry
    def rows(self) -> list[dict[str, Any]]:
        out = []
        for name, f in self.facts.items():
            if not self.in_extract[name]:
                continue
            row = person(f["birth_date"], seq=self.seq[name], name=name, area=self.area[name],
                         district_code=f.get("district_code", "310115"), hukou_since=f.get("hukou_since"),
                         hukou_out_date=f.get("hukou_out_date"), death_date=f.get("death_date"),
                         channel=f.get("channel", "senior_card"), card_no=f.get("card_no", "auto"))
            assert row["person_id"] == self.pid[name]
            out.append(row)
        return out

    def label(self, pid: str) -> str:
        return self.who.get(pid, pid)

    def id_of(self, label: str) -> str:
        inv = {v: k for k, v in self.who.items()}
        assert label in inv, f"unknown person {label!r}"
        return inv[label]


def _new_story(spec: dict[str, Any], tmp: Path) -> Story:
    rules_path = _custom_rules(tmp, spec["rules"]) if spec.get("rules") else None
    sc = Scenario(tmp / "run", opening_month=_month(spec["opening_month"]), rules_path=rules_path)
    people: dict[str, dict[str, Any]] = dict(spec.get("people") or {})
    crowd = spec.get("crowd")
    if crowd:
        for i in range(1, int(crowd["count"]) + 1):
            people[f"{crowd['prefix']}{i}"] = {k: v for k, v in crowd.items() if k not in ("prefix", "count")}
    st = Story(sc, {}, {}, {}, {}, {})
    for n, (name, raw) in enumerate(people.items(), start=1):
        f = dict(raw or {})
        st.in_extract[name] = bool(f.pop("in_extract", True))
        st.area[name] = str(f.pop("area", "320102"))
        unknown = set(f) - set(FACT_FIELDS)
        assert not unknown, f"{name}: unknown field(s) {sorted(unknown)}"
        st.facts[name] = {k: (_date(v) if k in DATE_FIELDS else v) for k, v in f.items()}
        st.seq[name] = n
        st.pid[name] = make_id(st.area[name], st.facts[name]["birth_date"], n)
        st.who[st.pid[name]] = name
    return st


# ---- steps --------------------------------------------------------------------------------


def _breakers(spec: Any) -> Breakers:
    if spec is None:
        return OPEN
    if spec == "default":
        return Breakers()
    return Breakers(**spec)


def _run(st: Story, step: dict[str, Any], want: dict[str, Any]) -> RunResult | None:
    kw: dict[str, Any] = {}
    if "max_quarantine_share" in step:
        kw["max_quarantine_share"] = float(step["max_quarantine_share"])
    if step.get("out"):
        kw["out"] = st.sc.out
    reg = st.sc.registry(st.rows())
    if "quarterly" in step:
        as_of = _date(step["as_of"])
        assert as_of is not None
        call = lambda: st.sc.quarterly(str(step["quarterly"]), reg, as_of.isoformat(),  # noqa: E731
                                       breakers=_breakers(step.get("breakers")), **kw)
    else:
        as_of = _date(step["supplement"])
        assert as_of is not None
        call = lambda: st.sc.supplement(reg, as_of.isoformat(),  # noqa: E731
                                        breakers=_breakers(step.get("breakers")), **kw)
    if "error" in want:
        with Ledger.use(st.sc.ledger, read_only=True) as led:
            before = led.seq
        with pytest.raises(_error_class(want["error"])) as exc:
            call()
        for text in want.get("message", []):
            assert text in str(exc.value), f"message {str(exc.value)!r} lacks {text!r}"
        with Ledger.use(st.sc.ledger, read_only=True) as led:
            assert led.seq == before, "a refused run must leave the ledger as it was (not even a draft)"
        return None
    res = call()
    st.latest_draft = res.batch_id
    st.draft_inputs[res.batch_id] = (reg, as_of)
    if "name" in step:
        st.drafts[str(step["name"])] = res.batch_id
    return res


def _publish(st: Story, batch_id: str, view: DraftView | None = None) -> None:
    """Publish a draft; remember what it was computed on (`view`: the draft just read)."""
    view = view or _view(st, batch_id)
    b = view.batch
    st.sc.publish(batch_id)
    if b["status"] == "published":  # publishing twice is a no-op
        return
    if b["first_month"] is None:  # an empty window (a supplement before any quarter): nothing held changes
        return
    if b["kind"] == "quarterly":
        st.quarter_end = max(st.quarter_end or 0, int(b["last_month"]))
    reg, as_of = st.draft_inputs[batch_id]
    st.published = Published(batch_id, reg, as_of, int(b["first_month"]), int(b["last_month"]), view.blocked,
                             str(b["kind"]), frozenset(st.reversed))


def _batch_ref(st: Story, ref: Any) -> str:
    if ref in (None, "latest"):
        assert st.latest_draft, "no draft yet"
        return st.latest_draft
    return st.drafts[str(ref)]


def _payment_line(st: Story, label: str, batch: str | None) -> str:
    with Ledger.use(st.sc.ledger, read_only=True) as led:
        where = "and l.batch_id = ?" if batch else ""
        params = [st.id_of(label), *([batch] if batch else [])]
        df = led.df(
            "select l.line_id from batch_lines l join batches b using (batch_id) where l.person_id = ? "
            f"and l.line_type = 'PAYMENT' and b.status = 'published' {where} order by b.published_at, l.line_id",
            params,
        )
    assert df.height, f"no published payment line for {label}"
    return str(df["line_id"][-1])


def _bank_returns(st: Story, step: dict[str, Any], want: dict[str, Any], tmp: Path) -> dict[str, int] | None:
    spec = step["bank_returns"]
    if spec == "again":
        assert st.last_returns is not None, "no earlier bank return file"
        df, sha = st.last_returns
    else:
        batch = st.drafts[str(step["batch"])] if "batch" in step else None
        rows = []
        for label, status in spec.items():
            if label == "unknown":
                rows.append({"line_id": str(status), "status": "PAID"})
                continue
            for name in _expand(label):
                # STATUS, or STATUS@SETTLED_AT, or a list of them (a bounce's credit and return in one file)
                for said in status if isinstance(status, list) else [status]:
                    code, _, settled = str(said).partition("@")
                    line = _payment_line(st, name, batch)
                    # undated in the story: 2025-08-15, or its batch's as-of if later (a line is never
                    # settled before its batch was drafted: the import refuses that)
                    drafted = st.draft_inputs[line.rsplit("-", 1)[0]][1]
                    rows.append({"line_id": line, "status": code,
                                 "settled_at": None if settled == "none"
                                 else settled or max(dt.date(2025, 8, 15), drafted).isoformat()})
        df = pl.DataFrame(rows, schema={"line_id": pl.String, "status": pl.String, "settled_at": pl.String}).select(
            "line_id", "status",
            reason=pl.when(pl.col("status") == "FAILED").then(pl.lit("account closed")).otherwise(pl.lit(None)),
            settled_at="settled_at",
        )
        # the file's content, as the CLI hashes the file (audit 25E: by its line ids alone, two files
        # of one line shared a hash, and a return was traced to the older import)
        sha = "returns-" + hashlib.sha256(df.write_csv().encode()).hexdigest()
        if step.get("via_file"):
            path = tmp / f"returns-{sha[-12:]}.csv"
            df.write_csv(path)
            df = read_bank_returns(path)
    net_before = st.sc.net()
    with Ledger.use(st.sc.ledger) as led:
        before = (led.seq, net_before)
        if "error" in want:
            with pytest.raises(_error_class(want["error"])) as exc:
                led.import_bank_returns(df, sha)
            for text in want.get("message", []):
                assert text in str(exc.value), f"message {str(exc.value)!r} lacks {text!r}"
            assert led.seq == before[0], "a refused import changes nothing"
            return None
        counts = led.import_bank_returns(df, sha)
    st.last_returns = (df, sha)
    _take_notices(st, df.select("line_id", "status", "settled_at").rows())
    if counts["new"] == 0:
        with Ledger.use(st.sc.ledger, read_only=True) as led:
            assert led.seq == before[0], "an import with nothing new must not change the ledger"
        assert st.sc.net().equals(before[1]), "an import with nothing new must not change what is held"
    return counts


_SETTLED = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})"
                      r"(?:[ T]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?)?$")


def _when(settled: str | None) -> tuple[dt.date, tuple[int, int, int, int] | None] | None:
    """The harness's own reading of settled_at (README, bank returns): a local date, with a time of
    day or not; anything else, or no such date or time, gives no order."""
    m = _SETTLED.match(settled or "")
    if not m:
        return None
    y, mo, d, h, mi, sec, frac = m.groups()
    try:
        day = dt.date(int(y), int(mo), int(d))
    except ValueError:
        return None
    if h is None:
        return day, None
    if int(h) > 23 or int(mi) > 59 or int(sec or 0) > 59:
        return None
    return day, (int(h), int(mi), int(sec or 0), int((frac or "").ljust(9, "0")[:9]))


def _known_before(a: str | None, b: str | None) -> bool:
    wa, wb = _when(a), _when(b)
    if wa is None or wb is None:
        return False
    if wa[0] != wb[0]:
        return wa[0] < wb[0]
    return wa[1] is not None and wb[1] is not None and wa[1] < wb[1]


def _take_notices(st: Story, rows: list[tuple[str, str, str | None]]) -> None:
    """An import's rows into the harness's own account: a line ends as its latest notice says
    (PAID then FAILED a bounce, FAILED then PAID a retry the bank paid); where its latest notices
    disagree, a new FAILED of a line never failed before is a bounce, and no new notice among
    them leaves the line as it was (the engine refuses the rest, so it is not reached here)."""
    fresh: dict[str, set[tuple[str, str | None]]] = {}
    for line, status, settled in rows:
        if (status, settled) not in st.notices.get(line, set()):
            fresh.setdefault(line, set()).add((status, settled))
    for line, new in fresh.items():
        old = st.notices.setdefault(line, set())
        every = [(s, t, (s, t) in new) for s, t in old | new]
        latest = [e for e in every if not any(_known_before(e[1], o[1]) for o in every)]
        if len({s for s, _, _ in latest}) == 1:
            fate = latest[0][0]
        elif not any(n for _, _, n in latest):
            fate = "FAILED" if line in st.reversed else "PAID"
        else:
            assert any(s == "FAILED" and n for s, _, n in latest) and not any(s == "FAILED" for s, _ in old), (
                f"line {line}: imported although its notices have no known order: {sorted(every, key=str)}")
            fate = "FAILED"
        old |= new
        if fate == "FAILED":
            st.reversed.add(line)
        else:
            st.reversed.discard(line)


def _recovery_lines(st: Story, names: list[str]) -> list[str]:
    ids = [st.id_of(n) for n in names]
    with Ledger.use(st.sc.ledger, read_only=True) as led:
        df = led.df("select line_id from recoveries where list_contains(?, person_id) order by line_id", [ids])
    assert df.height, f"no recovery lines for {names}"
    return df["line_id"].to_list()


def _recoveries(st: Story, step: dict[str, Any], want: dict[str, Any]) -> dict[str, int] | None:
    spec = dict(step["recoveries"])
    by, note = str(spec.pop("by", "区民政 李")), spec.pop("note", None)
    ((action, names),) = spec.items()
    literal = action.endswith("_lines")  # `confirm_lines: [ID]`: line ids as written, not people
    state = {"confirm": "recovered", "write_off": "written_off"}[action.removesuffix("_lines")]
    line_ids = [str(x) for x in names] if literal else _recovery_lines(st, _expand(names))
    net_before = st.sc.net()
    with Ledger.use(st.sc.ledger) as led:
        if "error" in want:
            before = led.seq
            with pytest.raises(_error_class(want["error"])) as exc:
                led.set_recovery_state(line_ids, state, by, note)
            for text in want.get("message", []):
                assert text in str(exc.value), f"message {str(exc.value)!r} lacks {text!r}"
            assert led.seq == before
            return None
        result = led.set_recovery_state(line_ids, state, by, note)
    assert st.sc.net().equals(net_before), "closing a recovery does not change what the ledger holds"
    return result


def _review(st: Story, step: dict[str, Any], want: dict[str, Any]) -> None:
    r = step["review"]
    bid = _batch_ref(st, r.get("batch"))
    with Ledger.use(st.sc.ledger) as led:
        args = (bid, st.id_of(r["person"]), r["action"], r.get("reason", "资格审定"), r.get("by", "区民政 王"),
                month_index(dt.date.fromisoformat(_month(r["from"]) + "-01")) if "from" in r else None,
                st.sc.rules)
        if "error" in want:
            with pytest.raises(_error_class(want["error"])):
                led.review(*args)
            return
        led.review(*args)


# ---- expectations -------------------------------------------------------------------------


def _line_view(line: dict[str, Any], by_month: dict[str, int], keys: list[str]) -> dict[str, Any]:
    view: dict[str, Any] = {}
    for k in keys:
        if k == "by_month":
            view[k] = by_month
        else:
            v = line[k]
            view[k] = fmt(v) if isinstance(v, dt.date) else v
    return view


@dataclass
class DraftView:
    """A batch as the ledger holds it, read in one go (the same queries as `Scenario.lines`,
    `Scenario.months` and `Scenario.no_card`)."""

    batch: dict[str, Any]
    lines: pl.DataFrame
    months: pl.DataFrame
    no_card: pl.DataFrame
    blocked: set[str]


def _view(st: Story, batch_id: str) -> DraftView:
    with Ledger.use(st.sc.ledger, read_only=True) as led:
        return DraftView(
            led.batch(batch_id),
            led.df("select * from batch_lines where batch_id=? order by line_id", [batch_id]),
            led.df(
                "select batch_id, line_id, person_id, unnest(generate_series(from_mi, to_mi)) as month_idx, "
                "fen as amount_fen from batch_pieces where batch_id=? order by line_id, month_idx",
                [batch_id],
            ).cast({"month_idx": pl.Int32}),
            led.df("select * from batch_no_card where batch_id=? order by district_code, person_id", [batch_id]),
            set(led.blocked()["person_id"].to_list()),
        )


def _check_lines(st: Story, view: DraftView, want: list[dict[str, Any]]) -> None:
    lines, months = view.lines, view.months
    got: dict[tuple[str, str], dict[str, Any]] = {}
    for line in lines.iter_rows(named=True):
        key = (st.label(line["person_id"]), line["line_type"])
        assert key not in got, f"two {key[1]} lines for {key[0]}"
        got[key] = line
        # Every line: `periods` names its months exactly when they are not every month of its
        # period (audits 20A, 20C), as its pieces give them.
        mine = sorted(int(m) for m in months.filter(pl.col("line_id") == line["line_id"])["month_idx"].unique())
        runs: list[list[int]] = []
        for m in mine:
            if runs and m == runs[-1][1] + 1:
                runs[-1][1] = m
            else:
                runs.append([m, m])
        said = ",".join(fmt(a) if a == b else f"{fmt(a)}..{fmt(b)}" for a, b in runs)
        whole = len(runs) == 1 and (fmt(runs[0][0]), fmt(runs[0][1])) == (fmt(line["period_from"]),
                                                                             fmt(line["period_to"]))
        assert line["periods"] == (None if whole else said), f"periods of {key}: {line['periods']!r}, pieces {said}"
    want_keys = []
    for w in want:
        for name in _expand(w["person"]):
            line_type = "RECOVERY" if w.get("reason") == "RECOVERY" else "PAYMENT"
            key = (name, line_type)
            want_keys.append(key)
            assert key in got, f"no {line_type} line for {name}; lines: {sorted(got)}"
            line = got[key]
            unknown = set(w) - {"person", *LINE_KEYS}
            assert not unknown, f"unknown line field(s) {unknown}"
            expect = {k: v for k, v in w.items() if k != "person"}
            for k in ("period_from", "period_to"):
                if k in expect:
                    expect[k] = _month(expect[k])
            if "by_month" in expect:
                expect["by_month"] = {_month(m): int(f) for m, f in expect["by_month"].items()}
            per = months.filter(pl.col("line_id") == line["line_id"])
            by_month = {fmt(int(m)): int(f) for m, f in zip(per["month_idx"], per["amount_fen"], strict=True)}
            assert _line_view(line, by_month, list(expect)) == expect, f"line of {name}"
    assert sorted(got) == sorted(want_keys), "every line of the batch is expected, and only those"


def _check_run(st: Story, res: RunResult, view: DraftView, want: dict[str, Any]) -> None:
    s = res.summary
    if "lines" in want:
        _check_lines(st, view, want["lines"])
    if "no_card" in want:
        nc = view.no_card
        got = {st.label(r["person_id"]): r for r in nc.iter_rows(named=True)}
        items = [w if isinstance(w, dict) else {"person": w} for w in want["no_card"]]
        names = [n for w in items for n in _expand(w["person"])]
        assert sorted(got) == sorted(names), "no-card list"
        for w in items:
            for name in _expand(w["person"]):
                for k, v in w.items():
                    if k == "person":
                        continue
                    g = got[name][k]
                    assert (_month(g) if isinstance(g, dt.date) else g) == (
                        _month(v) if k.startswith("period") else v), f"no_card {name}.{k}"
    if "window" in want:
        w = want["window"]
        assert s["window"] == (None if w is None else {"first": _month(w["first"]), "last": _month(w["last"])})
    for key in ("expired", "stops"):
        if key in want:
            assert s[key] == want[key], f"summary[{key!r}]"
    if "changes" in want:
        assert s["changes"] == (want["changes"] or {}), "summary['changes']"
    for key, value in (want.get("summary") or {}).items():
        assert s[key] == value, f"summary[{key!r}]"
    if "forced" in want:
        if want["forced"]:
            assert s.get("forced", {}).get("reason") == want["forced"], "the forced run records why"
            assert s["forced"]["tripped"], "and which check it overrode"
        else:
            assert "forced" not in s
    if want.get("report"):
        folder = st.sc.out / "reports" / res.batch_id
        assert s.get("change_report") == str(folder)
        assert (folder / "summary.txt").is_file()
        files = sorted(folder.glob("changes/district_code=*/part-0.parquet"))
        rep = pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame(
            schema={"change": pl.String, "person_id": pl.String, "fen": pl.Int64})
        # a person is counted once per change, though listed in each district of their rows
        per_change = {c: {"people": int(n), "fen": int(f)} for c, n, f in
                      rep.unique(["change", "person_id"]).group_by("change").agg(pl.len(), pl.col("fen").sum())
                      .iter_rows()}
        assert per_change == s["changes"], "the report files say what the summary says"
        text = (folder / "summary.txt").read_text(encoding="utf-8")
        for change in s["changes"]:
            assert change in text
        if isinstance(want["report"], dict):  # `report: {districts: [...]}`: one part per district
            got = sorted(f.parent.name.removeprefix("district_code=") for f in files)
            assert got == sorted(str(d) for d in want["report"]["districts"]), f"report partitions {got}"


def _check_net(st: Story, want: dict[str, dict[Any, int]]) -> None:
    net = st.sc.net()
    for label, months in want.items():
        pid = st.id_of(label)
        mine = {fmt(int(m)): int(f) for p, m, f in net.iter_rows() if p == pid}
        if not months:
            assert mine == {}, f"{label}: the ledger should hold nothing, holds {mine}"
        for m, fen in months.items():
            assert mine.get(_month(m), 0) == int(fen), f"{label} {_month(m)}: held {mine.get(_month(m), 0)}"


def _check_recovery_states(st: Story, want: dict[str, str]) -> None:
    with Ledger.use(st.sc.ledger, read_only=True) as led:
        reg = led.df("select person_id, state from recoveries")
    for label, state in want.items():
        states = set(reg.filter(pl.col("person_id") == st.id_of(label))["state"].to_list())
        assert states == {state}, f"{label}: recoveries {states}"


# ---- invariants ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    """SPEC §1 on one extract over a window: fen per (person_id, month) — from `person_months`,
    the month-level reference — and who is in the extract: clean, clean without a card,
    quarantined."""

    fen: dict[tuple[str, int], int]
    clean: set[str]
    no_card: set[str]
    quarantined: set[str]


def _entitled(st: Story, registry: Path, as_of: dt.date, first: int, last: int, kind: str) -> Due:
    key = (registry, as_of, first, last, kind)
    if key not in st.ent_cache:
        # The age judged in the month the batch pays in: a quarter's first month when drafted before
        # it (audit 19G), a night's as-of date (runs.age_judged_on); and no month is due after the
        # quarter whose first month found the person at 120, whatever run pays it (audit 20C: a night
        # reaching into a quarter published early). Written from the README's rule, not the code's.
        age_on = as_of if kind == "supplement" else max(as_of, month_start(last - 2))
        v = validate(read_extract(registry), as_of, st.sc.rules.channels(), age_on=age_on)
        clean = v.clean.with_row_index("pkey")
        last_at_120 = month_index_expr("birth_date") + 121 * 12 - 1
        pm = (person_months(clean.lazy(), st.sc.rules, first, last).collect()
              .join(clean.select("pkey", "person_id", quarter_at_120=last_at_120 - last_at_120 % 3 + 2), on="pkey")
              .filter(pl.col("month_idx") <= pl.col("quarter_at_120")))
        st.ent_cache[key] = Due(
            {(p, int(m)): int(f) for p, m, f in pm.select("person_id", "month_idx", "monthly_fen").iter_rows()},
            set(clean["person_id"].to_list()),
            set(clean.filter(pl.col("channel").is_null())["person_id"].to_list()),
            {str(x).upper() for x in v.quarantine["person_id"].to_list() if x},
        )
    return st.ent_cache[key]


def _check_invariants(st: Story) -> None:
    """What must hold after every step, whatever the step was.

    Let P be the latest published batch, E the extract it was drafted on and W its window (its
    first … last month: from the retroactive start to the end of the latest pre-disbursed
    quarter). For every person whose row in E is clean, who was not under a review hold when P
    was published, and every month of W:
        held (paid − reversed − recovered + cancelled)
            == max(entitlement on E (SPEC §1, via `person_months`)
                   − what the bank failed since P was published, 0).
    A person without a card in E is paid nothing new but still recovered: held ≤ that amount.
    A person the ledger holds who has no row at all in E is entitled to nothing (SPEC §4: the
    entitlement is computed from the extract). People whose row in E is quarantined (no facts:
    neither paid nor recovered, SPEC §3) and months before W (expired) are not stated here.
    Beyond the latest published quarter nothing is ever held, and nothing is ever negative: where
    the bank failed a payment of months already recovered, the recovery is cancelled (CANCEL
    entries), so such a month holds max(due − failed, 0).
    """
    net = st.sc.net()
    p = st.published
    q_end = st.quarter_end
    pieces = None
    failed_since = sorted(st.reversed - p.reversed_then) if p is not None else []
    retried_since = sorted(p.reversed_then - st.reversed) if p is not None else []
    if failed_since or retried_since:
        with Ledger.use(st.sc.ledger, read_only=True) as led:
            pieces = led.df("select person_id, from_mi, to_mi, fen, list_contains(?, line_id) as retried "
                            "from batch_pieces where list_contains(?, line_id)",
                            [retried_since, failed_since + retried_since])
    kept_cuts = None
    if p is not None:
        # A failure since P that cut a recovery since confirmed (the district collected the cut
        # amount), then paid on a retry: the cut stays, and those months are held over what is due
        # until the next run recovers them (README, bank returns).
        with Ledger.use(st.sc.ledger, read_only=True) as led:
            kept_cuts = led.df(
                "select e.person_id, e.from_mi, e.to_mi, e.fen from bank_entries e join recoveries r using (line_id) "
                "where e.kind = 'CANCEL' and e.fen > 0 and r.state = 'recovered' "
                "and e.recorded_at >= (select published_at from batches where batch_id = ?) "
                "and e.recorded_at in (select recorded_at from bank_entries v where v.kind = 'REVERSAL' "
                "and not coalesce(list_contains(?::varchar[], v.line_id), false))", [p.batch_id, sorted(st.reversed)])
    if q_end is None:
        assert net.height == 0, f"nothing is held before any quarter is published: {net}"
    else:
        beyond = net.filter(pl.col("month_idx") > q_end)
        assert beyond.height == 0, f"months after the latest published quarter are held: {beyond}"
    if p is None:
        return
    due = _entitled(st, p.registry, p.as_of, p.first, p.last, p.kind)
    failed: dict[tuple[str, int], int] = {}
    retried: dict[tuple[str, int], int] = {}
    if pieces is not None:
        for pid, a, b, fen, was_retried in pieces.iter_rows():
            into = retried if was_retried else failed
            for m in range(a, b + 1):
                into[(pid, m)] = into.get((pid, m), 0) + int(fen)
    kept: dict[tuple[str, int], int] = {}
    for pid, a, b, fen in (kept_cuts.iter_rows() if kept_cuts is not None else []):
        for m in range(a, b + 1):
            kept[(pid, m)] = kept.get((pid, m), 0) + int(fen)
    held = {(pid, int(m)): int(f) for pid, m, f in net.iter_rows()}
    for (pid, m), fen in held.items():
        assert fen >= 0, f"{st.label(pid)} {fmt(m)}: the ledger holds {fen} (< 0)"
    absent = {pid for pid, _ in held} - due.clean - due.quarantined
    for pid in sorted((due.clean | absent) - p.blocked):
        for m in range(p.first, p.last + 1):
            # a failure before P (P re-issued what was due) and its retry since: as if it had never
            # failed, so the months P re-issued are held twice until the next run
            want = (max(due.fen.get((pid, m), 0) - failed.get((pid, m), 0), 0)
                    + min(retried.get((pid, m), 0), due.fen.get((pid, m), 0)) + kept.get((pid, m), 0))
            got = held.get((pid, m), 0)
            if pid in due.no_card:
                assert got <= want, f"{st.label(pid)} {fmt(m)} (no card): held {got} > due {want}"
            else:
                assert got == want, (f"{st.label(pid)} {fmt(m)}: the ledger holds {got}, the entitlement on the "
                                     f"published extract less bank failures since is {want} (after {p.batch_id})")


def _note_undeclared_codes(st: Story, view: DraftView) -> None:
    """Every line's reason is one of constants.LINE_REASONS and every recovery's cause one of
    constants.RECOVERY_CAUSES (STYLE: codes defined once). Noted here, asserted at the end of the
    scenario, so that the rest of the story is still checked."""
    bid = view.batch["batch_id"]
    for r in view.lines.iter_rows(named=True):
        if r["reason"] not in LINE_REASONS:
            st.undeclared.append(f"{bid}: reason {r['reason']} ({st.label(r['person_id'])})")
        if r["line_type"] == "RECOVERY" and r["cause"] not in RECOVERY_CAUSES:
            st.undeclared.append(f"{bid}: cause {r['cause']} ({st.label(r['person_id'])})")
        if r["line_type"] == "PAYMENT" and r["cause"] is not None:
            st.undeclared.append(f"{bid}: a payment line with a cause ({st.label(r['person_id'])})")


def _check_draft_pays_only_what_is_due(st: Story, view: DraftView) -> None:
    """No payment line pays, for any month, more than the month's entitlement on the extract the
    draft was computed on (SPEC §1: nothing after death or moving out, never above the band)."""
    b = view.batch
    reg, as_of = st.draft_inputs[b["batch_id"]]
    pay = view.lines.filter(pl.col("line_type") == "PAYMENT").select("line_id")
    months = view.months.join(pay, on="line_id")
    if b["first_month"] is None:
        assert months.height == 0
        return
    # from the draft's first month, or an earlier one its lines pay (someone a released review
    # decision kept waiting: their window reaches back by the months it stood)
    first = min(int(b["first_month"]), int(months["month_idx"].min()) if months.height else int(b["first_month"]))
    ent = _entitled(st, reg, as_of, first, int(b["last_month"]), str(b["kind"])).fen
    for pid, m, fen in months.select("person_id", "month_idx", "amount_fen").iter_rows():
        assert 0 < fen <= ent.get((pid, m), 0), (
            f"{b['batch_id']} pays {st.label(pid)} {fen} fen for {fmt(m)}, entitled to {ent.get((pid, m), 0)}")


# ---- the collector ------------------------------------------------------------------------


ACTIONS = ("quarterly", "supplement", "publish", "change", "bank_returns", "recoveries", "review")


def _apply_change(st: Story, changes: dict[str, dict[str, Any]]) -> None:
    for label, facts in changes.items():
        for name in _expand(label):
            f = dict(facts or {})
            if "in_extract" in f:
                st.in_extract[name] = bool(f.pop("in_extract"))
            unknown = set(f) - set(FACT_FIELDS)
            assert not unknown, f"{name}: cannot change {sorted(unknown)}"
            for k, v in f.items():
                st.facts[name][k] = _date(v) if k in DATE_FIELDS else v
            if "channel" in f and "card_no" not in f:
                st.facts[name]["card_no"] = "auto" if f["channel"] else None
            if "birth_date" in f:  # a corrected birth date comes with a re-issued ID (see the module doc)
                st.reissued[name] = st.reissued.get(name, 1) + 1
                st.pid[name] = make_id(st.area[name], st.facts[name]["birth_date"], st.seq[name])
                st.who[st.pid[name]] = f"{name}#{st.reissued[name]}"


@pytest.mark.parametrize("spec", SCENARIOS)
def test_scenario(spec: dict[str, Any], tmp_path: Path) -> None:
    st = _new_story(spec, tmp_path)
    try:
        for i, step in enumerate(spec["steps"], start=1):
            acts = [a for a in ACTIONS if a in step]
            if acts[:1] in (["quarterly"], ["supplement"]):  # `publish: true` is then an option of the run
                acts = [a for a in acts if a != "publish"]
            assert len(acts) == 1, f"step {i}: exactly one action of {ACTIONS}, got {acts}"
            act = acts[0]
            want = dict(step.get("expect") or {})
            where = f"step {i} ({act}: {step[act]!r})"
            try:
                _step(st, act, step, want, tmp_path)
                _check_invariants(st)
            except AssertionError as e:
                raise AssertionError(f"{spec['name']}, {where}: {e}") from e
        assert not st.undeclared, f"codes not declared in allowance.constants: {st.undeclared}"
        # and the ledger agrees with itself at the end of every story (journal, holdings, payees, files)
        with Ledger.use(st.sc.ledger, read_only=True) as led:
            assert led.check()["problems"] == [], f"{spec['name']}: ledger check"
    finally:
        shutil.rmtree(tmp_path / "run", ignore_errors=True)


def _step(st: Story, act: str, step: dict[str, Any], want: dict[str, Any], tmp: Path) -> None:
    if act in ("quarterly", "supplement"):
        res = _run(st, step, want)
        if res is None:
            return
        view = _view(st, res.batch_id)
        _check_run(st, res, view, want)
        _note_undeclared_codes(st, view)
        _check_draft_pays_only_what_is_due(st, view)
        if step.get("publish"):
            _publish(st, res.batch_id, view)
    elif act == "publish":
        bid = _batch_ref(st, step["publish"])
        if "error" in want:
            with Ledger.use(st.sc.ledger, read_only=True) as led:
                before = led.seq
            with pytest.raises(_error_class(want["error"])) as exc:
                st.sc.publish(bid)
            for text in want.get("message", []):
                assert text in str(exc.value), f"message {str(exc.value)!r} lacks {text!r}"
            with Ledger.use(st.sc.ledger, read_only=True) as led:
                assert led.seq == before, "a refused publication changes nothing"
        else:
            _publish(st, bid)
    elif act == "change":
        _apply_change(st, step["change"])
    elif act == "bank_returns":
        counts = _bank_returns(st, step, want, tmp)
        if counts is not None and "imported" in want:
            assert {k: counts[k] for k in want["imported"]} == want["imported"], f"import counts {counts}"
    elif act == "recoveries":
        result = _recoveries(st, step, want)
        if result is not None and "result" in want:  # the counts named (and less_than_listed where named)
            assert {k: result.get(k) for k in want["result"]} == want["result"], f"result {result}"
    elif act == "review":
        _review(st, step, want)
        if "lines" in want:
            _check_lines(st, _view(st, _batch_ref(st, step["review"].get("batch"))), want["lines"])
    if "net" in want:
        _check_net(st, want["net"])
    if "recovery_states" in want:
        _check_recovery_states(st, want["recovery_states"])
    extra = set(want) - {"lines", "no_card", "window", "expired", "stops", "changes", "summary", "forced", "report",
                         "error", "message", "imported", "result", "net", "recovery_states"}
    assert not extra, f"unknown expectation(s) {sorted(extra)}"


def test_month_helpers_agree() -> None:
    """The YAML months are read the way the engine writes them."""
    assert _month("2025-07") == "2025-07" == _month(dt.date(2025, 7, 1)) == fmt(month_index(dt.date(2025, 7, 9)))
    assert _expand("c1..c3") == ["c1", "c2", "c3"] and _expand(["a", "c9..c10"]) == ["a", "c9", "c10"]
