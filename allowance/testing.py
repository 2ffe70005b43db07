"""Builders for tests and golden cases: people, registries, and a scenario on a temp ledger.

Kept in the package (like polars.testing) so that golden cases, properties, scenario tests
and the benchmark all build registries the same way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from allowance import rules as rules_mod
from allowance.idcard import make_id
from allowance.ledger import Ledger
from allowance.registry import CLEAN_SCHEMA
from allowance.runs import RunResult, draft_run, publish_batch

_seq = itertools.count(1)


def person(
    birth: dt.date | str,
    *,
    district_code: str = "310115",
    hukou_since: dt.date | str | None = None,
    hukou_out_date: dt.date | str | None = None,
    death_date: dt.date | str | None = None,
    channel: str | None = "senior_card",
    card_no: str | None = "auto",
    area: str = "320102",
    seq: int | None = None,
    name: str = "测试",
) -> dict[str, Any]:
    """One registry row with a valid ID whose birth date matches."""
    b = dt.date.fromisoformat(birth) if isinstance(birth, str) else birth
    n = next(_seq) if seq is None else seq
    pid = make_id(area, b, n)
    if card_no == "auto":
        card_no = None if channel is None else f"62170{n:011d}"

    def d(x: dt.date | str | None) -> dt.date | None:
        return dt.date.fromisoformat(x) if isinstance(x, str) else x

    return {
        "person_id": pid,
        "name": name,
        "birth_date": b,
        "district_code": district_code,
        "hukou_since": d(hukou_since),
        "hukou_out_date": d(hukou_out_date),
        "death_date": d(death_date),
        "channel": channel,
        "card_no": card_no,
    }


def registry_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=CLEAN_SCHEMA)


def write_registry(rows: list[dict[str, Any]] | pl.DataFrame, path: Path) -> Path:
    df = rows if isinstance(rows, pl.DataFrame) else registry_frame(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        df.write_csv(path)
    else:
        df.write_parquet(path)
    return path


class Scenario:
    """A ledger and an output folder in `root`, driven the way staff drive the CLI."""

    def __init__(self, root: Path, opening_month: str = "2025-07", rules_path: Path | None = None) -> None:
        from allowance.months import parse_month

        self.root = root
        self.ledger = root / "ledger.duckdb"
        self.out = root / "out"
        self.rules = rules_mod.load(rules_path or rules_mod.DEFAULT_RULES_DIR)
        self._n = 0
        Ledger.create(self.ledger, parse_month(opening_month)).close()

    @classmethod
    def at(cls, root: Path, rules_path: Path | None = None) -> Scenario:
        """The scenario whose ledger is already in `root` (a copy of another's, say)."""
        sc = cls.__new__(cls)
        sc.root, sc.ledger, sc.out = root, root / "ledger.duckdb", root / "out"
        sc.rules = rules_mod.load(rules_path or rules_mod.DEFAULT_RULES_DIR)
        sc._n = len(list(root.glob("registry-*.parquet")))
        return sc

    def registry(self, rows: list[dict[str, Any]] | pl.DataFrame) -> Path:
        self._n += 1
        return write_registry(rows, self.root / f"registry-{self._n}.parquet")

    def quarterly(self, quarter: str, rows: list[dict[str, Any]] | pl.DataFrame | Path, as_of: str,
                  **kw: Any) -> RunResult:
        from allowance.months import parse_quarter

        reg = rows if isinstance(rows, Path) else self.registry(rows)
        return draft_run("quarterly", reg, self.ledger, self.rules, dt.date.fromisoformat(as_of),
                         parse_quarter(quarter), **kw)

    def supplement(self, rows: list[dict[str, Any]] | pl.DataFrame | Path, as_of: str, **kw: Any) -> RunResult:
        reg = rows if isinstance(rows, Path) else self.registry(rows)
        return draft_run("supplement", reg, self.ledger, self.rules, dt.date.fromisoformat(as_of), None, **kw)

    def publish(self, res: RunResult | str, approved_by: str = "tester") -> RunResult:
        bid = res if isinstance(res, str) else res.batch_id
        return publish_batch(bid, approved_by, self.ledger, self.out)

    def lines(self, batch_id: str) -> pl.DataFrame:
        with Ledger.use(self.ledger, read_only=True) as led:
            return led.df("select * from batch_lines where batch_id=? order by line_id", [batch_id])

    def months(self, batch_id: str) -> pl.DataFrame:
        with Ledger.use(self.ledger, read_only=True) as led:
            return led.df(
                "select batch_id, line_id, person_id, unnest(generate_series(from_mi, to_mi)) as month_idx, "
                "fen as amount_fen from batch_pieces where batch_id=? order by line_id, month_idx",
                [batch_id],
            ).cast({"month_idx": pl.Int32})

    def no_card(self, batch_id: str) -> pl.DataFrame:
        with Ledger.use(self.ledger, read_only=True) as led:
            return led.df("select * from batch_no_card where batch_id=? order by district_code, person_id",
                          [batch_id])

    def net(self) -> pl.DataFrame:
        """Net fen per person-month held by the ledger."""
        with Ledger.use(self.ledger, read_only=True) as led:
            return led.df(
                "with m as (select person_id, unnest(generate_series(from_mi, to_mi)) as month_idx, fen "
                "from entries) select person_id, month_idx::integer as month_idx, sum(fen)::bigint as net_fen "
                "from m group by all having sum(fen) <> 0 order by all"
            )


def rewrite_batch_file(ledger: Path, batch_id: str, part: str,
                       change: Callable[[pl.DataFrame], pl.DataFrame]) -> None:
    """Replace one file of a batch by `change` of its rows, recorded under its new SHA-256 (the
    ledger closed): a file as an earlier engine wrote it, or damage only `ledger check` can find."""
    con = duckdb.connect(str(ledger))
    try:
        name, rows = con.execute("select file, rows from batch_files where batch_id = ? and part = ?",
                                 [batch_id, part]).fetchone()  # type: ignore[misc]
        folder = ledger.parent / (ledger.name + ".batches")
        frame = change(pl.read_parquet(folder / name))
        assert frame.height == rows, "a rewritten batch file keeps its rows"
        data = io.BytesIO()
        frame.write_parquet(data)
        sha = hashlib.sha256(data.getvalue()).hexdigest()
        new = f"{batch_id}/{part}-{sha[:16]}.parquet"
        (folder / new).write_bytes(data.getvalue())
        if new != name:
            (folder / name).unlink()
        con.execute("update batch_files set file = ?, sha256 = ? where batch_id = ? and part = ?",
                    [new, sha, batch_id, part])
    finally:
        con.close()
