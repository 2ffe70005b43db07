"""The compiled kernels work where numba can write no cache (a read-only install and home)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import numba.core.caching as caching
caching.CacheImpl._locator_classes = []  # as when no folder numba would cache in is writable
import polars as pl
from allowance import bytescan, idcard
ids = idcard.parse_ids(pl.Series(["11010519491231002X", "110105194912310021", None]))
print(ids["id_checksum_ok"].to_list(), bytescan.digits_only(pl.Series(["12", "1a"])).to_list())
"""


def test_kernels_compile_in_memory_when_no_cache_folder_is_writable() -> None:
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[True, False, False] [True, False]"
    assert "kernel_cache_unwritable" in run.stderr  # said once per kernel, as a warning
    assert "Traceback" not in run.stderr
