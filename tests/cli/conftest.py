"""Every CLI test runs in its own folder with no ALLOWANCE_* settings inherited."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("ALLOWANCE_LEDGER", "ALLOWANCE_OUT", "ALLOWANCE_RULES", "ALLOWANCE_LOG_LEVEL", "ALLOWANCE_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # default paths (var/ledger.duckdb, out/) land here, never in the repo
    return tmp_path
