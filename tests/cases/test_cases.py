"""The one collector of the golden cases in this folder (STYLE habit 7).

Every `*.yaml` file here holds a `cases:` list; each case has a `name` (the test id), a
one-line `why` citing the rule, an `input` and an `expected`. The file name says how a case
is run:

- `entitlement_*.yaml` — one person and a window of months → fen for every month of the
  window (0 where not entitled), through `allowance.entitlement.person_months`;
- `registry_*.yaml` — raw extract rows, as text as they come from CSV → `clean` or the
  quarantine reason of every row, through `allowance.registry.validate`;
- `quarter_*.yaml` — several runs on one ledger (`allowance.testing.Scenario`) → the lines,
  no-card entries and quarantined rows of each run.

A case may name `rules: rules_raise` (a folder beside this file) to run on other rules than
the real `rules/` folder. The sub-folders are not scanned for cases.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from allowance import errors
from allowance import rules as rules_mod
from allowance.constants import QUARANTINE_REASONS, REGISTRY_COLUMNS
from allowance.entitlement import person_months
from allowance.idcard import CHECK_CHARS, make_id
from allowance.ledger import Ledger
from allowance.months import fmt, parse_month
from allowance.registry import validate
from allowance.runs import Breakers
from allowance.testing import Scenario, person, registry_frame

CASES_DIR = Path(__file__).resolve().parent
FAMILIES = ("entitlement", "registry", "quarter")


# ---- loading ------------------------------------------------------------------------------


def _load_cases() -> list[Any]:
    params = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        family = path.name.split("_", 1)[0]
        assert family in FAMILIES, f"{path.name}: a case file is named <family>_*.yaml, family in {FAMILIES}"
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for case in doc["cases"]:
            missing = [k for k in ("name", "why", "input", "expected") if k not in case]
            assert not missing, f"{path.name}: case {case.get('name')!r} lacks {missing}"
            params.append(
                pytest.param(family, case, doc.get("defaults") or {}, path.name, id=case["name"])
            )
    names = [p.id for p in params]
    dupes = sorted({n for n in names if names.count(n) > 1})
    assert not dupes, f"case names must be unique (they are the test ids): {dupes}"
    return params


CASES = _load_cases()


@cache
def _rules(name: str | None) -> rules_mod.Rules:
    return rules_mod.load(CASES_DIR / name if name else rules_mod.DEFAULT_RULES_DIR)


def _text(v: Any) -> str | None:
    """A YAML value as the text a CSV cell would hold (None/'' = empty cell)."""
    if v is None:
        return None
    if isinstance(v, bool):
        raise AssertionError(f"a boolean {v!r} in a registry cell: quote it")
    s = str(v)
    return None if s == "" else s


def _date(v: Any) -> dt.date | None:
    if v is None or v == "":
        return None
    return v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v))


def _error_class(name: str) -> type[Exception]:
    cls = getattr(errors, name, None)
    assert isinstance(cls, type) and issubclass(cls, Exception), f"unknown error class {name!r} in allowance.errors"
    return cls


# ---- the collector ------------------------------------------------------------------------


@pytest.mark.parametrize(("family", "case", "defaults", "source"), CASES)
def test_case(family: str, case: dict[str, Any], defaults: dict[str, Any], source: str, tmp_path: Path) -> None:
    if family == "entitlement":
        _run_entitlement(case)
    elif family == "registry":
        _run_registry(case, defaults)
    else:
        _run_quarter(case, tmp_path)


# ---- a) entitlement -----------------------------------------------------------------------


def _run_entitlement(case: dict[str, Any]) -> None:
    inp, expected = case["input"], case["expected"]
    rules = _rules(inp.get("rules"))
    p = inp["person"]
    row = person(
        _date(p["birth_date"]),
        hukou_since=_date(p.get("hukou_since")),
        hukou_out_date=_date(p.get("hukou_out_date")),
        death_date=_date(p.get("death_date")),
        channel=p.get("channel", "senior_card"),
    )
    clean = registry_frame([row]).with_row_index("pkey").lazy()
    first, last = parse_month(str(inp["window"]["first"])), parse_month(str(inp["window"]["last"]))

    if "error" in expected:
        with pytest.raises(_error_class(expected["error"])):
            person_months(clean, rules, first, last).collect()
        return

    window = [fmt(m) for m in range(first, last + 1)]
    want = {str(k): int(v) for k, v in expected.items()}
    assert sorted(want) == window, "the case must give the fen of every month of the window, and no other"

    got_df = person_months(clean, rules, first, last).collect()
    assert got_df["month_idx"].is_unique().all(), f"a month appears twice: {got_df}"
    got_fen = {fmt(m): fen for m, fen in zip(got_df["month_idx"], got_df["monthly_fen"], strict=True)}
    got = {m: got_fen.get(m, 0) for m in window}
    assert got == want

    versions = case.get("expected_versions")
    if versions:
        got_v = {fmt(m): v for m, v in zip(got_df["month_idx"], got_df["version_id"], strict=True)}
        assert {m: got_v.get(m) for m in map(str, versions)} == {str(k): v for k, v in versions.items()}


# ---- b) registry --------------------------------------------------------------------------


def _person_id(spec: Any) -> str | None:
    """A literal ID, or {area, birth, seq} made into a valid one; `legacy: true` gives the
    15-digit form, `wrong_check: true` the 18-digit form with a wrong check character."""
    if not isinstance(spec, dict):
        return _text(spec)
    birth = _date(spec["birth"])
    assert birth is not None
    if spec.get("legacy"):
        return f"{spec['area']}{birth:%y%m%d}{int(spec['seq']) % 1000:03d}"
    pid = make_id(str(spec["area"]), birth, int(spec["seq"]))
    if spec.get("wrong_check"):
        right = pid[-1]
        pid = pid[:-1] + next(c for c in CHECK_CHARS if c != right)
    return pid


def _registry_rows(rows: list[dict[str, Any]], defaults: dict[str, Any]) -> dict[str, list[str | None]]:
    cols: dict[str, list[str | None]] = {c: [] for c in REGISTRY_COLUMNS}
    for r in rows:
        unknown = set(r) - set(REGISTRY_COLUMNS)
        assert not unknown, f"unknown registry column(s) {unknown}"
        full = {**defaults, **r}
        for c in REGISTRY_COLUMNS:
            cols[c].append(_person_id(full.get(c)) if c == "person_id" else _text(full.get(c)))
    return cols


def _run_registry(case: dict[str, Any], defaults: dict[str, Any]) -> None:
    inp, expected = case["input"], case["expected"]
    rows = inp["rows"]
    assert len(expected) == len(rows), "one expectation per input row"
    frame = pl.DataFrame(_registry_rows(rows, defaults), schema={c: pl.String for c in REGISTRY_COLUMNS})
    v = validate(frame.lazy(), _date(inp["as_of"]), _rules(inp.get("rules")).channels())

    assert v.rows_in == len(rows)
    assert v.clean.height + v.quarantine.height == v.rows_in, "rows in = clean + quarantined"

    quarantined = {int(r["row_no"]): r for r in v.quarantine.iter_rows(named=True)}
    clean_rows = iter(v.clean.iter_rows(named=True))  # clean rows keep the extract's order
    want_clean = 0
    for row_no, want in enumerate(expected, start=1):
        if want == "clean" or (isinstance(want, dict) and "clean" in want):
            want_clean += 1
            assert row_no not in quarantined, f"row {row_no} should be clean, got {quarantined.get(row_no)}"
            got = next(clean_rows)
            fields = want["clean"] if isinstance(want, dict) else None
            for col, val in (fields or {}).items():
                shown = None if got[col] is None else str(got[col])
                assert shown == _text(val), f"row {row_no}: clean {col} is {shown!r}, expected {val!r}"
            continue
        assert row_no in quarantined, f"row {row_no} should be quarantined with {want['reason']}, but it is clean"
        got = quarantined[row_no]
        got_reasons = got["reasons"].split(";")
        assert want["reason"] in QUARANTINE_REASONS
        assert got["reason"] == want["reason"], f"row {row_no}: reason {got['reason']} (all: {got_reasons})"
        missing = [r for r in want.get("reasons", []) if r not in got_reasons]
        assert not missing, f"row {row_no}: reasons {got_reasons} lack {missing}"
        if "only" in want:  # `only: true` — no other reason than `reason`
            assert got_reasons == [want["reason"]]
    assert v.clean.height == want_clean

    for key, val in (case.get("expected_counts") or {}).items():
        assert getattr(v, key) == val, f"{key}: {getattr(v, key)} != {val}"


# ---- c) quarters on a ledger --------------------------------------------------------------


def _make_people(specs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One registry row per named person, with a fixed ID (seq = position) across steps."""
    out = {}
    for seq, (key, spec) in enumerate(specs.items(), start=1):
        s = dict(spec or {})
        kw: dict[str, Any] = {
            "hukou_since": _date(s.pop("hukou_since", None)),
            "hukou_out_date": _date(s.pop("hukou_out_date", None)),
            "death_date": _date(s.pop("death_date", None)),
        }
        for k in ("district_code", "channel", "card_no", "area"):
            if k in s:
                kw[k] = s.pop(k)
        birth = _date(s.pop("birth_date"))
        assert not s, f"person {key}: unknown field(s) {sorted(s)}"
        out[key] = person(birth, seq=seq, name=key, **kw)
    return out


def _step_rows(people: dict[str, dict[str, Any]], registry: dict[str, Any]) -> list[dict[str, Any]]:
    """The extract of one step: named people, each with the step's changes to their row."""
    rows = []
    for key, changes in registry.items():
        row = dict(people[key])
        for col, val in (changes or {}).items():
            assert col in REGISTRY_COLUMNS and col not in ("person_id", "birth_date"), f"{key}: cannot change {col}"
            row[col] = _date(val) if col in ("hukou_since", "hukou_out_date", "death_date") else val
        rows.append(row)
    return rows


def _line_view(line: dict[str, Any], keys: list[str], by_month: dict[str, int]) -> dict[str, Any]:
    view: dict[str, Any] = {}
    for k in keys:
        if k in ("person", "by_month"):
            continue
        val = line[k]
        view[k] = fmt(val) if isinstance(val, dt.date) else val
    if "by_month" in keys:
        view["by_month"] = by_month
    return view


def _check_lines(sc: Scenario, batch_id: str, want: list[dict[str, Any]], who: dict[str, str]) -> None:
    lines = sc.lines(batch_id)
    months = sc.months(batch_id)
    got: dict[tuple[str, str], dict[str, Any]] = {}
    for line in lines.iter_rows(named=True):
        key = (who.get(line["person_id"], line["person_id"]), line["line_type"])
        assert key not in got, f"two {key[1]} lines for {key[0]}"
        got[key] = line
    want_keys = []
    for w in want:
        line_type = w.get("line_type") or ("RECOVERY" if w.get("reason") == "RECOVERY" else "PAYMENT")
        key = (w["person"], line_type)
        want_keys.append(key)
        assert key in got, f"no {line_type} line for {w['person']}; lines: {sorted(got)}"
        line = got[key]
        per_month = months.filter(pl.col("line_id") == line["line_id"])
        by_month = {fmt(m): int(f) for m, f in zip(per_month["month_idx"], per_month["amount_fen"], strict=True)}
        expect = {k: v for k, v in w.items() if k not in ("person", "line_type")}
        if "by_month" in expect:
            expect["by_month"] = {str(k): int(v) for k, v in expect["by_month"].items()}
        for k in ("period_from", "period_to"):
            if k in expect:
                expect[k] = str(expect[k])
        assert _line_view(line, list(expect), by_month) == expect, f"line of {w['person']}"
    assert sorted(got) == sorted(want_keys), "every line of the batch is expected, and only those"


# A golden case has a handful of people, so one death is a large share of the recipients: the
# circuit breakers (issue 4, tested in tests/cases/scenario_*.yaml) would refuse most steps. These
# cases test the rules of SPEC §1 and §4, so they run with the breakers open unless a case says.
OPEN_BREAKERS = Breakers(max_stop_share=1.0, max_shrink_share=1.0)


def _draft(sc: Scenario, kind: str, quarter: str, rows: list[dict[str, Any]], as_of: str,
           kw: dict[str, Any]) -> Any:
    kw = {"breakers": OPEN_BREAKERS, **kw}
    if kind == "quarterly":
        return sc.quarterly(quarter, rows, as_of, **kw)
    return sc.supplement(rows, as_of, **kw)


def _run_quarter(case: dict[str, Any], tmp_path: Path) -> None:
    inp, expected = case["input"], case["expected"]
    steps = inp["steps"]
    assert len(expected) == len(steps), "one expectation per step"
    rules_name = inp.get("rules")
    sc = Scenario(
        tmp_path, opening_month=str(inp["opening_month"]),
        rules_path=CASES_DIR / rules_name if rules_name else None,
    )
    people = _make_people(inp["people"])
    who = {row["person_id"]: key for key, row in people.items()}

    for step, want in zip(steps, expected, strict=True):
        assert want["after"] == step["run"], f"expectation {want['after']!r} is not for step {step['run']!r}"
        if "rules" in step:  # a rules change between runs (e.g. a raise announced late)
            sc.rules = rules_mod.load(CASES_DIR / step["rules"])
        rows = _step_rows(people, step["registry"])
        kw: dict[str, Any] = {}
        if "max_quarantine_share" in step:
            kw["max_quarantine_share"] = float(step["max_quarantine_share"])
        kind, _, quarter = step["run"].partition(" ")
        assert kind in ("quarterly", "supplement"), f"unknown run {step['run']!r}"
        as_of = str(step["as_of"])
        if "error" in want:
            with pytest.raises(_error_class(want["error"])):
                _draft(sc, kind, quarter, rows, as_of, kw)
            continue
        res = _draft(sc, kind, quarter, rows, as_of, kw)
        assert "lines" in want, f"step {step['run']!r}: list every line (`lines: []` for none)"
        _check_lines(sc, res.batch_id, want["lines"], who)
        if "no_card" in want:
            nc = sc.no_card(res.batch_id)
            got_nc = {who[r["person_id"]]: r for r in nc.iter_rows(named=True)}
            want_nc = [w if isinstance(w, dict) else {"person": w} for w in want["no_card"]]
            assert sorted(got_nc) == sorted(w["person"] for w in want_nc), "no-card list"
            for w in want_nc:
                for k, val in w.items():
                    if k != "person":
                        assert got_nc[w["person"]][k] == val, f"no_card {w['person']}.{k}"
        if "quarantine" in want:
            with Ledger.use(sc.ledger, read_only=True) as led:
                q = led.df("select * from batch_quarantine where batch_id=?", [res.batch_id])
            got_q = {who.get(r["person_id"], r["person_id"]): r["reason"] for r in q.iter_rows(named=True)}
            assert got_q == want["quarantine"]
        if step.get("publish"):
            sc.publish(res)
