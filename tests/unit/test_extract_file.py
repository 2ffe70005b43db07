"""The extract as a file: read as it was when the run began, or not at all (an audit swapped
`latest.parquet` while runs read it: one draft mixed two extracts' columns, others panicked)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from allowance import registry, rules
from allowance.errors import InputError
from allowance.registry import file_sha256
from allowance.testing import person, write_registry

AS_OF = dt.date(2025, 7, 1)


def _two_extracts(tmp_path: Path) -> tuple[Path, Path]:
    a = write_registry([person("1950-01-01", seq=1), person("1950-01-02", seq=2)], tmp_path / "a.parquet")
    b = write_registry([person("1950-01-01", seq=1, death_date="2025-06-15"), person("1950-01-02", seq=2),
                        person("1950-01-03", seq=3)], tmp_path / "b.parquet")
    return a, b


def _validate(path: Path) -> registry.Validated:
    return registry.load_and_validate(path, AS_OF, rules.load(rules.DEFAULT_RULES_DIR).channels())


def test_a_link_swapped_while_the_extract_is_read_changes_nothing(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _two_extracts(tmp_path)
    latest = tmp_path / "latest.parquet"
    latest.symlink_to(a)
    validate = registry.validate

    def swapped_midway(*args: object, **kwargs: object) -> registry.Validated:
        (tmp_path / "next").symlink_to(b)
        (tmp_path / "next").replace(latest)  # the scheduler's atomic swap, once the read began
        return validate(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(registry, "validate", swapped_midway)
    v = _validate(latest)
    assert (v.rows_in, v.sha256) == (2, file_sha256(a))  # all of a, and a's hash
    assert latest.resolve() == b


def test_the_file_rewritten_while_it_is_read_refuses_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _two_extracts(tmp_path)
    validate = registry.validate

    def rewritten_midway(*args: object, **kwargs: object) -> registry.Validated:
        a.write_bytes(b.read_bytes())  # a copy into place still under way, say
        return validate(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(registry, "validate", rewritten_midway)
    with pytest.raises(InputError, match="the extract changed while it was read"):
        _validate(a)
