"""Integer fen shown as yuan, and a month's district share, without a float anywhere."""

from __future__ import annotations

import polars as pl


def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    a = abs(int(fen))
    return f"{sign}{a // 100:,}.{a % 100:02d}"



def district_moved(ent: pl.Expr, held: pl.Expr) -> pl.Expr:
    """七(二): the district's part of a month moved from what is held (`held`, fen a month) to
    what is due (`ent`), with `num` and `den` the month's funding (municipal, municipal + district)
    as columns. The district's share of a month's amount is floored (toward zero when negative),
    the city taking any odd fen; a move is the difference of the floored shares, not the share of
    the difference, so whatever the steps the shares paid for a month add up to those of its
    amount (a top-up of 3 fen, 7 501 -> 7 502 a month, floored as 3 // 2 = 1, had given the
    district 3 750 + 1, not 3 751: an audit)."""

    def share(fen: pl.Expr) -> pl.Expr:
        return fen.sign() * (fen.abs() * (pl.col("den") - pl.col("num")) // pl.col("den"))

    return share(ent) - share(held)
