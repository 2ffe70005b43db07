"""A year, month by month, on a generated registry: the events of issue 4 and what the engine did.

    python -m pipelines.simulate [--people 50000] [--seed 1] [--months 12] [--root var/sim]

Each month the registry moves on (deaths rising with age, hukou moved out and in, cards obtained
and changed, birth dates corrected — a corrected birth date comes with a new ID), the bank fails
a few payments (FAILED returns) and districts confirm or write off recoveries. The quarterly run
is drafted and published on each quarter's first day; a supplement on the 10th of every month.
At the end the ledger is checked against a month-level recomputation: person-months paid twice
(net above entitlement) and unpaid (net below) must both be 0.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Annotated

import numpy as np
import polars as pl
import typer

from allowance import idcard, log, rules
from allowance.entitlement import person_months
from allowance.generator import generate_registry
from allowance.ledger import Ledger
from allowance.money import yuan
from allowance.months import month_index, parse_month, quarter_label
from allowance.registry import read_extract, validate
from allowance.returns import read_bank_returns
from allowance.runs import Breakers, draft_run, publish_batch

START = dt.date(2025, 7, 1)


def _add_months(d: dt.date, n: int) -> dt.date:
    mi = month_index(d) + n
    return dt.date(mi // 12, mi % 12 + 1, 1)


def evolve(reg: pl.DataFrame, since: dt.date, until: dt.date, rng: np.random.Generator) -> pl.DataFrame:
    """The registry one step later: every change is a vectorised draw over the whole frame."""
    n = reg.height
    days = (until - since).days
    if days <= 0:
        return reg
    frac = days / 365.0
    age = ((pl.lit(until) - pl.col("birth_date")).dt.total_days() // 365).alias("age")
    a = reg.select(age.fill_null(0)).to_series().to_numpy()
    alive = reg["death_date"].is_null().to_numpy() & reg["hukou_out_date"].is_null().to_numpy()
    rate = np.select([a < 65, a < 70, a < 80, a < 90, a < 100], [0.001, 0.01, 0.025, 0.07, 0.18], 0.35)
    dies = alive & (rng.random(n) < rate * frac)
    moves_out = alive & ~dies & (rng.random(n) < 0.003 * frac)
    offs = rng.integers(1, days + 1, n)
    dates = pl.Series(np.datetime64(since, "D") + offs.astype("timedelta64[D]")).cast(pl.Date)
    no_card = reg["channel"].is_null().to_numpy()
    gets_card = alive & no_card & (rng.random(n) < min(1.0, 3.6 * frac))
    changes_card = alive & ~no_card & (rng.random(n) < 0.02 * frac)
    corrected = alive & (a >= 60) & (rng.random(n) < 0.0005 * frac)
    out = reg.with_columns(
        death_date=pl.when(pl.Series(dies)).then(dates).otherwise(pl.col("death_date")),
        hukou_out_date=pl.when(pl.Series(moves_out)).then(dates).otherwise(pl.col("hukou_out_date")),
        channel=pl.when(pl.Series(gets_card)).then(pl.lit("senior_card"))
        .when(pl.Series(changes_card))
        .then(pl.when(pl.col("channel") == "senior_card").then(pl.lit("social_security_card"))
              .otherwise(pl.lit("senior_card")))
        .otherwise(pl.col("channel")),
        card_no=pl.when(pl.Series(gets_card | changes_card))
        .then(pl.lit("88") + pl.Series(rng.integers(10**13, 10**14, n)).cast(pl.String))
        .otherwise(pl.col("card_no")),
    )
    if corrected.any():
        # A corrected birth date: the ID encodes it, so the person gets a new ID.
        shift = rng.integers(-6 * 365, 6 * 365, n)
        new_birth = (reg["birth_date"].to_numpy().astype("datetime64[D]") + shift.astype("timedelta64[D]"))
        nb = pl.Series(new_birth).cast(pl.Date)
        new_ids = pl.DataFrame({"b": nb, "p": reg["person_id"]}).select(
            (pl.col("p").str.slice(0, 6) + pl.col("b").dt.strftime("%Y%m%d") + pl.col("p").str.slice(14, 3))
            .alias("body")
        )["body"]
        ok = corrected & (new_birth < np.datetime64(until)) & (reg["person_id"].str.len_bytes() == 18).to_numpy()
        check = pl.DataFrame({"body": new_ids}).select(idcard.check_char_expr(pl.col("body")))[:, 0]
        out = out.with_columns(
            person_id=pl.when(pl.Series(ok)).then(new_ids + check).otherwise(pl.col("person_id")),
            birth_date=pl.when(pl.Series(ok)).then(nb).otherwise(pl.col("birth_date")),
        )
    # Moves in: new residents (any age), hukou from a day in the step.
    k = int(rng.binomial(n, 0.005 * frac))
    if k:
        newcomers = generate_registry(max(k, 1), seed=int(rng.integers(1 << 30)), as_of=until, bad_share=0.0)
        newcomers = newcomers.head(k).with_columns(
            hukou_since=pl.Series(dates[:k]), death_date=pl.lit(None, pl.Date), hukou_out_date=pl.lit(None, pl.Date)
        )
        out = pl.concat([out, newcomers.select(out.columns)])
        out = out.unique(subset="person_id", keep="first", maintain_order=True)
    return out


def main(
    people: Annotated[int, typer.Option(min=1000)] = 50_000,
    seed: Annotated[int, typer.Option()] = 1,
    months: Annotated[int, typer.Option(min=1, max=24)] = 12,
    root: Annotated[Path, typer.Option()] = Path("var/sim"),
) -> None:
    """Simulate `months` months and print per-quarter lines, fen, recoveries and re-issues."""
    log.configure(default="WARNING")
    rng = np.random.default_rng(seed)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    r = rules.load(rules.DEFAULT_RULES_DIR)
    ledger, out = root / "ledger.duckdb", root / "out"
    Ledger.create(ledger, parse_month("2025-07")).close()
    reg = generate_registry(people, seed, START, bad_share=0.0)
    open_br = Breakers()
    stats: dict[str, dict[str, int]] = {}
    clock = START
    for step in range(months * 2):
        month_first = _add_months(START, step // 2)
        day = month_first if step % 2 == 0 else month_first.replace(day=10)
        if step % 2 == 0 and month_first.month not in (1, 4, 7, 10):
            continue
        reg = evolve(reg, clock, day, rng)
        clock = day
        path = root / f"registry-{day:%Y%m%d}.parquet"
        reg.write_parquet(path)
        q = quarter_label(month_index(day))
        s = stats.setdefault(q, {"batches": 0, "lines": 0, "fen": 0, "recovery_lines": 0, "recovery_fen": 0,
                                 "reissue_lines": 0, "reissue_fen": 0, "new_lines": 0, "failed": 0,
                                 "expired_fen": 0})
        if step % 2 == 0:
            res = draft_run("quarterly", path, ledger, r, day, (month_index(day), month_index(day) + 2),
                            breakers=open_br, out=out)
        else:
            res = draft_run("supplement", path, ledger, r, day, None, breakers=open_br, out=out)
        publish_batch(res.batch_id, "simulation", ledger, out)
        with Ledger.use(ledger) as led:
            # Ordered: the simulated bank fails lines by position.
            lines = led.df("select * from batch_lines where batch_id = ? order by line_id", [res.batch_id])
        pay = lines.filter(pl.col("line_type") == "PAYMENT")
        rec = lines.filter(pl.col("line_type") == "RECOVERY")
        s["batches"] += 1
        s["lines"] += pay.height
        s["fen"] += int(pay["amount_fen"].sum())
        s["recovery_lines"] += rec.height
        s["recovery_fen"] += -int(rec["amount_fen"].sum())
        s["reissue_lines"] += pay.filter(pl.col("reason") == "REISSUE").height
        s["reissue_fen"] += int(pay.filter(pl.col("reason") == "REISSUE")["amount_fen"].sum())
        s["new_lines"] += pay.filter(pl.col("reason") == "NEW").height
        s["expired_fen"] += res.summary["expired"]["fen"]
        # The bank: 0.2 % of lines fail; the rest are paid. Imported twice: the second changes nothing.
        if pay.height:
            failed = rng.random(pay.height) < 0.002
            ret = pay.select("line_id").with_columns(
                status=pl.when(pl.Series(failed)).then(pl.lit("FAILED")).otherwise(pl.lit("PAID")),
                reason=pl.when(pl.Series(failed)).then(pl.lit("account closed")).otherwise(None),
                settled_at=pl.lit(f"{day:%Y-%m-%d}"),  # settled on the day it was published, not before it
            )
            rpath = root / f"returns-{res.batch_id}.csv"
            ret.write_csv(rpath)
            with Ledger.use(ledger) as led:
                # the simulation's day is its today (a settlement after the real today is refused)
                first = led.import_bank_returns(read_bank_returns(rpath), rpath.name, today=day)
                again = led.import_bank_returns(read_bank_returns(rpath), rpath.name, today=day)
            assert again["new"] == 0, "a return file imported twice changed the ledger"
            s["failed"] += first["failed"]
        # Districts: most open recoveries are confirmed, a few written off.
        with Ledger.use(ledger) as led:
            # Ordered: the random picks below go by position, and the ledger keeps no row order.
            open_ids = led.df("select line_id from recoveries where state = 'open' order by line_id")[
                "line_id"].to_list()
            if open_ids:
                ids, pick = pl.Series(open_ids), pl.Series(rng.random(len(open_ids)))
                conf = ids.filter(pick < 0.8).to_list()
                off = ids.filter(pick > 0.97).to_list()
                if conf:
                    led.set_recovery_state(conf, "recovered", "district", "simulated")
                if off:
                    led.set_recovery_state(off, "written_off", "district", "simulated: untraceable")
        print(f"{day}  {res.batch_id:<22} {pay.height:>7} lines {yuan(int(pay['amount_fen'].sum())):>16} yuan  "
              f"{rec.height:>4} recoveries {yuan(-int(rec['amount_fen'].sum())):>12} yuan  "
              f"reasons {res.summary['by_reason']}", flush=True)

    # The ledger against a month-level recomputation on the final extract.
    final = validate(read_extract(path), clock, r.channels())
    with Ledger.use(ledger, read_only=True) as led:
        last = led.latest_published_quarter_end()
        first = max(led.opening_month, month_index(clock) - r.at(last).retro_months.value)
        net = led.df(
            "with m as (select person_id, unnest(generate_series(from_mi, to_mi)) as month_idx, fen from entries) "
            "select person_id, month_idx::integer as month_idx, sum(fen)::bigint as net from m "
            "where month_idx between ? and ? group by all having sum(fen) <> 0",
            [first, last],
        )
    clean = final.clean.with_row_index("pkey")
    ent = person_months(clean.lazy(), r, first, last).collect().join(clean.select("pkey", "person_id"), on="pkey")
    quarantined = final.quarantine.select(idcard.normalized_id_expr("person_id").alias("person_id"))
    cmp = (
        ent.select("person_id", pl.col("month_idx").cast(pl.Int32), "monthly_fen")
        .join(net.cast({"month_idx": pl.Int32}), on=["person_id", "month_idx"], how="full", coalesce=True)
        .join(quarantined, on="person_id", how="anti")
        .with_columns(pl.col("monthly_fen", "net").fill_null(0))
    )
    twice = cmp.filter(pl.col("net") > pl.col("monthly_fen"))
    unpaid = cmp.filter(pl.col("net") < pl.col("monthly_fen"))
    with Ledger.use(ledger, read_only=True) as led:
        rec_states = dict(led.run("select state, count(*) from recoveries group by 1 order by 1"))
        ledger_check = led.check()
    summary = {
        "people_start": people,
        "people_end": reg.height,
        "quarters": stats,
        "recoveries_by_state": {k: int(v) for k, v in rec_states.items()},
        "checked_person_months": cmp.height,
        "person_months_paid_twice_or_over": twice.height,
        "person_months_underpaid": unpaid.filter(pl.col("person_id").is_in(
            final.clean.filter(pl.col("channel").is_not_null())["person_id"].implode())).height,
        "ledger_check_problems": ledger_check["problems"],
    }
    (root / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    if twice.height or not ledger_check["ok"]:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
