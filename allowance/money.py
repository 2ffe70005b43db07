"""Integer fen shown as yuan, without a float anywhere."""

from __future__ import annotations


def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    a = abs(int(fen))
    return f"{sign}{a // 100:,}.{a % 100:02d}"
