"""The order of the extract's rows never changes what anyone is paid."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from registry_strategies import PROPERTY, QUARTER, Drawn, registries, scenario

from allowance.testing import Scenario

LINE_KEYS = [
    "person_id", "line_type", "name", "district_code", "channel", "card_no", "period_from", "period_to",
    "months", "amount_fen", "municipal_fen", "district_fen", "reason", "cause", "rules_version",
]


def outcome(sc: Scenario, batch_id: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Lines, month rows and no-card rows of a batch, without the batch-specific ids."""
    lines = sc.lines(batch_id).select(LINE_KEYS).sort("person_id", "line_type")
    months = sc.months(batch_id).select("person_id", "month_idx", "amount_fen").sort("person_id", "month_idx")
    no_card = sc.no_card(batch_id).drop("batch_id").sort("person_id")
    return lines, months, no_card


@settings(PROPERTY, max_examples=15)
@given(registries(min_people=2), st.randoms(use_true_random=False))
def test_shuffling_the_registry_gives_the_same_lines(drawn: Drawn, rnd: object) -> None:
    shuffled = list(drawn.rows)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    with scenario(drawn.opening) as a, scenario(drawn.opening) as b:
        ra = a.quarterly(QUARTER, drawn.rows, drawn.as_of_text)
        rb = b.quarterly(QUARTER, shuffled, drawn.as_of_text)
        assert (ra.lines, ra.amount_fen) == (rb.lines, rb.amount_fen)
        assert ra.summary["no_card"] == rb.summary["no_card"]
        for x, y in zip(outcome(a, ra.batch_id), outcome(b, rb.batch_id), strict=True):
            assert x.equals(y)
