"""`allowance fixtures registry`: a Shanghai-like extract for trials and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from allowance.cli.common import echo, errors_as_messages
from allowance.errors import InputError, UserError, os_reason
from allowance.months import as_of_or_today

app = typer.Typer(help="Generated registries.", no_args_is_help=True)


@app.command("registry")
@errors_as_messages
def registry(
    people: Annotated[int, typer.Option(min=1, help="Rows (hukou residents of every age).")],
    out: Annotated[Path, typer.Option("--out", help="Extract to write (.parquet or .csv).")],
    seed: Annotated[int, typer.Option(help="Same seed, same file.")] = 1,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Extract date YYYY-MM-DD.")] = None,
    bad_share: Annotated[float, typer.Option(min=0.0, max=0.05, help="Share of broken rows.")] = 0.002,
) -> None:
    """Write a registry as the big-data center would extract it on --as-of."""
    from allowance.generator import generate_registry, write_registry

    day = as_of_or_today(as_of)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise UserError(f"{out}: --out must end in .parquet or .csv")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        df = generate_registry(people, seed, day, bad_share=bad_share)
        write_registry(df, out)
    except OSError as e:
        raise InputError(f"{out}: cannot write the registry ({os_reason(e)})") from None
    echo(f"wrote {df.height:,} rows to {out} (seed {seed}, as of {day})")
