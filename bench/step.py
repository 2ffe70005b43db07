"""One benchmark step in its own process, so its peak RSS is its own. Prints one JSON line.

    python -m bench.step STEP REGISTRY WORKDIR
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

T0 = time.perf_counter()

from allowance import registry, rules  # noqa: E402
from allowance.ledger import Ledger  # noqa: E402
from allowance.months import parse_month, parse_quarter  # noqa: E402
from allowance.runs import draft_run, publish_batch  # noqa: E402

QUARTERS = [("2025Q3", "2025-07-01"), ("2025Q4", "2025-10-01"), ("2026Q1", "2026-01-01"), ("2026Q2", "2026-04-01")]


def main(step: str, reg: Path, work: Path) -> dict[str, object]:
    r = rules.load(rules.DEFAULT_RULES_DIR)
    ledger, out = work / "ledger.duckdb", work / "out"
    state = work / "state.json"
    st = json.loads(state.read_text()) if state.exists() else {}
    t_import = time.perf_counter() - T0
    t = time.perf_counter()
    res: dict[str, object] = {}
    if step == "validate":
        v = registry.load_and_validate(reg, dt.date(2025, 7, 1), r.channels())
        res = {"rows": v.rows_in, "clean": v.clean.height, "quarantined": v.quarantine.height}
    elif step == "open":
        Ledger.create(ledger, parse_month("2025-07")).close()
    elif step.startswith("draft:") or step.startswith("publish:"):
        kind, q = step.split(":")
        as_of = dict(QUARTERS)[q]
        if kind == "draft":
            # with its change report, as `allowance run` and the scheduled jobs write it
            d = draft_run("quarterly", reg, ledger, r, dt.date.fromisoformat(as_of), parse_quarter(q), out=out)
            st[q] = d.batch_id
            res = {"batch_id": d.batch_id, "lines": d.lines, "amount_fen": d.amount_fen}
        else:
            p = publish_batch(st[q], "bench", ledger, out)
            res = {"batch_id": p.batch_id, "lines": p.lines, "amount_fen": p.amount_fen}
    elif step == "supplement":
        d = draft_run("supplement", reg, ledger, r, dt.date(2026, 5, 15), out=out)
        res = {"batch_id": d.batch_id, "lines": d.lines, "amount_fen": d.amount_fen}
    else:
        raise SystemExit(f"unknown step {step}")
    seconds = time.perf_counter() - t
    if step == "supplement":  # for the report, after the clock stopped: how much the ledger held
        with Ledger.use(ledger, read_only=True) as led:
            res["ledger_person_months"] = int(
                led.one("select sum(to_mi - from_mi + 1) from entries where kind='PAY'")[0]  # type: ignore[index]
            )
    state.write_text(json.dumps(st))
    res.update(step=step, seconds=round(seconds, 3), import_seconds=round(t_import, 3))
    return res


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))))
