"""segments.net_segments, the ledger's netting, against a month-by-month sum.

Keys whose segments do not overlap take a short path (sorted and merged) and the others the
sweep; both must give the canonical net: per month the sum of the segments covering it, as
maximal runs of one amount, no zero runs, no overlaps.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from allowance.segments import net_segments

SEGMENT = st.tuples(
    st.integers(0, 4),  # key
    st.integers(0, 12),  # first month
    st.integers(0, 4),  # months after the first
    st.sampled_from([-150_00, -75_00, 0, 75_00, 150_00, 600_00]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(SEGMENT, max_size=25))
def test_net_is_the_monthly_sum_as_maximal_runs(segs: list[tuple[int, int, int, int]]) -> None:
    frame = pl.DataFrame(
        {"_k": [k * 10**17 + 7 for k, *_ in segs], "from_mi": [f for _, f, _, _ in segs],
         "to_mi": [f + n for _, f, n, _ in segs], "fen": [v for *_, v in segs]},
        schema={"_k": pl.Int64, "from_mi": pl.Int32, "to_mi": pl.Int32, "fen": pl.Int64},
    )
    net = net_segments(frame.lazy(), key="_k").collect()
    assert net.schema == {"_k": pl.Int64, "from_mi": pl.Int32, "to_mi": pl.Int32, "fen": pl.Int64}
    monthly: dict[tuple[int, int], int] = defaultdict(int)
    for k, f, t, v in frame.iter_rows():
        for m in range(f, t + 1):
            monthly[(k, m)] += v
    expected = {km: v for km, v in monthly.items() if v}
    got: dict[tuple[int, int], int] = {}
    for k, f, t, v in net.iter_rows():
        assert f <= t and v != 0
        for m in range(f, t + 1):
            assert (k, m) not in got, "runs overlap"
            got[(k, m)] = v
    assert got == expected
    # maximal: no two runs of one key touch with the same amount
    runs = sorted(net.iter_rows())
    for (k1, _, t1, v1), (k2, f2, _, v2) in pairwise(runs):
        assert not (k1 == k2 and f2 == t1 + 1 and v1 == v2)
