"""Ledger rows are matched on the exact int64 ID key; a row without one is a damaged ledger."""

from __future__ import annotations

import polars as pl
import pytest

from allowance.errors import LedgerError
from allowance.ledger import keyed

GOOD = "11010519491231002X"


def test_a_well_formed_id_gets_its_key() -> None:
    out = keyed(pl.DataFrame({"person_id": [GOOD]}), "holdings")
    assert out["_k"].to_list() == [11010519491231002 * 11 + 10]


def test_a_ledger_row_without_a_key_stops_the_run_with_one_line() -> None:
    with pytest.raises(LedgerError) as e:
        keyed(pl.DataFrame({"person_id": [GOOD, "1101051949123100"]}), "holdings")
    assert str(e.value).splitlines() == [
        "1 holdings row(s) whose person id is not an 18-character ID; run `allowance ledger check`"
    ]


def test_a_review_decision_with_a_malformed_id_matches_nobody() -> None:
    out = keyed(pl.DataFrame({"person_id": [GOOD, "x"]}), "decisions", strict=False)
    assert out["person_id"].to_list() == [GOOD]
