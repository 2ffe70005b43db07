"""The README's first command: a real quarter on a generated Shanghai-like registry.

Generates 100 000 residents as the big-data center would extract them on 2025-07-01, opens a
fresh demo ledger (opening month 2025-07), drafts 2025Q3, publishes it, and prints the
per-district summary and where the files are. Rerunning it starts the demo afresh.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from pathlib import Path

import polars as pl

from allowance import log, rules
from allowance.cli.publish import district_table
from allowance.generator import generate_registry, write_registry
from allowance.ledger import Ledger
from allowance.money import yuan
from allowance.months import parse_month, parse_quarter
from allowance.runs import draft_run, publish_batch

ROOT = Path("var/demo")
AS_OF = dt.date(2025, 7, 1)


def main(people: int = 100_000) -> int:
    log.configure(default="WARNING")
    if ROOT.exists():
        shutil.rmtree(ROOT)
    ROOT.mkdir(parents=True)
    reg = ROOT / "registry.parquet"
    write_registry(generate_registry(people, seed=1, as_of=AS_OF), reg)
    print(f"registry: {people:,} residents as of {AS_OF} -> {reg}")
    ledger = ROOT / "ledger.duckdb"
    Ledger.create(ledger, parse_month("2025-07")).close()
    r = rules.load(rules.DEFAULT_RULES_DIR)
    draft = draft_run("quarterly", reg, ledger, r, AS_OF, parse_quarter("2025Q3"))
    s = draft.summary
    print(f"draft {draft.batch_id}: {draft.lines:,} payment lines, {yuan(draft.amount_fen)} yuan; "
          f"{s['registry']['quarantined']} rows quarantined {s['registry']['quarantine_by_reason']}; "
          f"{s['no_card']['people']} entitled people without a card listed for follow-up")
    # 五 资格审定: each district approves its list (after any holds and rejections), then the
    # municipal bureau publishes; the publication refuses while any district has not approved.
    with Ledger.use(ledger) as led:
        districts = led.districts_of(draft.batch_id)
        for code in districts:
            led.approve(draft.batch_id, [code], f"demo reviewer, district {code}", None)
    print(f"approved by its {len(districts)} districts (allowance review approve {draft.batch_id} --district CODE "
          "--by NAME)")
    pub = publish_batch(draft.batch_id, "demo reviewer, municipal bureau", ledger, ROOT / "out",
                        require_district_approvals=True)
    assert pub.out_dir is not None
    print(f"published {pub.batch_id} (2025Q3, due months 2025-07 … 2025-09):")
    for line in district_table(pl.read_parquet(pub.out_dir / "funding.parquet")):
        print("  " + line)
    print(f"outputs: {pub.out_dir.resolve()}")
    print(f"  bank files:  {pub.out_dir.resolve()}/payments/district_code=*/channel=*/part-0.parquet")
    print(f"  manifest:    {pub.out_dir.resolve()}/manifest.json")
    with Ledger.use(ledger, read_only=True) as led:
        check = led.check()
    print(f"ledger: {ledger.resolve()} (and {ledger.name}.batches/ beside it); "
          f"ledger check: {'ok' if check['ok'] else check['problems']}")
    return 0 if check["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
