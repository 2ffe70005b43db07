"""Properties of a published batch: totals reconcile everywhere, and reruns pay nothing new.

SPEC §6 (files, funding, manifest), §4 ("rerunning any run changes nothing"), 七(二) (1 : 1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
from hypothesis import given, settings
from registry_strategies import OPEN, PROPERTY, QUARTER, Drawn, registries, scenario

from allowance.constants import DISTRICT_CODES
from allowance.outputs import verify_batch


def read_parts(folder: Path, prefix: str) -> pl.DataFrame | None:
    files = sorted(folder.glob(f"{prefix}/**/part-0.parquet"))
    if not files:
        return None
    return pl.concat([pl.read_parquet(f, hive_partitioning=False) for f in files], how="vertical_relaxed")


def manifest_of(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


@PROPERTY
@given(registries())
def test_line_funding_and_manifest_totals_agree(drawn: Drawn) -> None:
    with scenario(drawn.opening) as sc:
        draft = sc.quarterly(QUARTER, drawn.rows, drawn.as_of_text)
        pub = sc.publish(draft)
        folder = sc.out / draft.batch_id
        assert pub.out_dir == folder

        # What a bank checks: every listed file exists with its hash …
        assert verify_batch(folder) == []
        manifest = manifest_of(folder)
        files: dict[str, dict[str, Any]] = manifest["files"]
        # … and its row count and amount; and nothing parquet in the folder is unlisted.
        on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*.parquet")}
        assert on_disk == set(files)
        for rel, meta in files.items():
            df = pl.read_parquet(folder / rel, hive_partitioning=False)
            assert df.height == meta["rows"], rel
            if "amount_fen" in df.columns:
                assert int(df["amount_fen"].sum()) == meta["amount_fen"], rel

        lines = read_parts(folder, "payments")
        funding = pl.read_parquet(folder / "funding.parquet")
        totals = manifest["control_totals"]["payments"]
        line_fen = 0 if lines is None else int(lines["amount_fen"].sum())
        line_count = 0 if lines is None else lines.height
        manifest_files_fen = sum(m["amount_fen"] for rel, m in files.items() if rel.startswith("payments/"))

        assert line_fen == int(funding["amount_fen"].sum()) == totals["amount_fen"] == manifest_files_fen
        assert line_fen == pub.amount_fen == draft.amount_fen
        assert line_count == int(funding["lines"].sum()) == totals["lines"] == pub.lines
        assert sorted(funding["district_code"].to_list()) == sorted(DISTRICT_CODES)

        # Shares add up on every funding row and every line; 七(二) 1 : 1 and every band amount
        # is an even number of fen, so the halves are equal.
        assert funding.filter(pl.col("municipal_fen") + pl.col("district_fen") != pl.col("amount_fen")).height == 0
        assert funding.filter(pl.col("municipal_fen") != pl.col("district_fen")).height == 0
        assert int(funding["municipal_fen"].sum()) == totals["municipal_fen"]
        assert int(funding["district_fen"].sum()) == totals["district_fen"]

        if lines is None:
            assert int(funding["amount_fen"].sum()) == 0
            return
        assert lines.filter(pl.col("municipal_fen") + pl.col("district_fen") != pl.col("amount_fen")).height == 0
        assert lines.filter(pl.col("municipal_fen") != pl.col("district_fen")).height == 0
        assert lines["line_id"].n_unique() == lines.height
        assert lines["person_id"].n_unique() == lines.height

        # Per district, funding = the sum of that district's lines (zero where it has none).
        per_district = lines.group_by("district_code").agg(
            pl.len().alias("n"), pl.col("amount_fen").sum().alias("fen"),
            pl.col("municipal_fen").sum().alias("mun"), pl.col("district_fen").sum().alias("dis"),
        )
        joined = funding.join(per_district, on="district_code", how="left").with_columns(
            pl.col("n", "fen", "mun", "dis").fill_null(0)
        )
        assert joined.filter(
            (pl.col("lines") != pl.col("n")) | (pl.col("amount_fen") != pl.col("fen"))
            | (pl.col("municipal_fen") != pl.col("mun")) | (pl.col("district_fen") != pl.col("dis"))
        ).height == 0

        # Per (district, channel): the partition folder, the rows in it and the manifest agree.
        by_dc = {(r["district_code"], r["channel"]): (r["lines"], r["amount_fen"])
                 for r in manifest["control_totals"]["by_district_channel"]}
        for rel, meta in files.items():
            if not rel.startswith("payments/"):
                continue
            _, d_part, c_part, _ = rel.split("/")
            df = pl.read_parquet(folder / rel, hive_partitioning=False)
            assert set(df["district_code"]) == {d_part.removeprefix("district_code=")}
            assert set(df["channel"]) == {c_part.removeprefix("channel=")}
            key = (d_part.removeprefix("district_code="), c_part.removeprefix("channel="))
            assert by_dc.pop(key) == (meta["rows"], meta["amount_fen"])
        assert by_dc == {}


@settings(PROPERTY, max_examples=15)
@given(registries())
def test_rerun_after_publish_pays_nothing_and_republishing_changes_nothing(drawn: Drawn) -> None:
    with scenario(drawn.opening) as sc:
        first = sc.quarterly(QUARTER, drawn.rows, drawn.as_of_text)
        sc.publish(first)
        net = sc.net()

        again = sc.quarterly(QUARTER, drawn.rows, drawn.as_of_text, breakers=OPEN)
        assert (again.lines, again.amount_fen) == (0, 0)
        assert again.summary["recoveries"] == {"lines": 0, "amount_fen": 0}
        assert sc.lines(again.batch_id).height == 0
        assert sc.months(again.batch_id).height == 0

        sc.publish(again)  # publishing the empty draft
        assert sc.net().equals(net)
        sc.publish(first)  # publishing the first batch a second time
        assert sc.net().equals(net)

        # Nor does a supplement on the same facts, nor a third quarterly run.
        supp = sc.supplement(drawn.rows, drawn.as_of_text, breakers=OPEN)
        assert (supp.lines, supp.amount_fen) == (0, 0)
        assert supp.summary["recoveries"]["lines"] == 0
        third = sc.quarterly(QUARTER, drawn.rows, drawn.as_of_text, breakers=OPEN)
        assert (third.lines, third.amount_fen) == (0, 0)
        assert sc.net().equals(net)

        # The ledger holds each person-month once: its net is exactly what the first batch paid.
        paid = sc.months(first.batch_id).select("person_id", "month_idx", pl.col("amount_fen").alias("net_fen"))
        assert net.height == paid.height
        assert net.sort("person_id", "month_idx").equals(
            paid.sort("person_id", "month_idx").cast({"month_idx": net["month_idx"].dtype, "net_fen": pl.Int64})
        )
