"""`allowance rules check|show`: the tier tables validate, and the one in force is shown."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli_helpers import cli, ok, user_error

from allowance.rules import DEFAULT_RULES_DIR


def broken_rules(tmp: Path, old: str, new: str) -> Path:
    folder = tmp / "rules"
    shutil.copytree(DEFAULT_RULES_DIR, folder)
    f = folder / "2024-hufugui-1.yaml"
    text = f.read_text(encoding="utf-8")
    assert old in text
    f.write_text(text.replace(old, new, 1), encoding="utf-8")
    return f


def test_check_default_folder() -> None:
    out = ok(cli("rules", "check")).stdout
    assert "ok  hufa-2016-24" in out
    assert "ok  hufugui-2024-1" in out
    assert "2024-05-01 … 2029-04-30" in out


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ("min_age: 70, max_age: 79", "min_age: 71, max_age: 79", "gap"),  # ages 70–70 in no band
        ("monthly_fen: 7500", "monthly_fen: 75.5", "monthly_fen"),  # fen are integers
        ('cite: "沪府规〔2024〕1号 二(一) 65－69周岁 每人每月75元"', 'cite: ""', "cite"),  # uncited value
        ("bands:\n", "bands: [\n", "not valid YAML"),
        # a fifth audit: a key given twice was accepted, the later value in force
        ("retro_months: {", 'retro_months: {value: 3, cite: "pasted"}\nretro_months: {',
         "'retro_months' appears twice"),
        ("monthly_fen: 7500", "monthly_fen: 7500, monthly_fen: 750", "'monthly_fen' appears twice"),
        # and an amount no int64 total of fen can hold
        ("monthly_fen: 7500", "monthly_fen: 9223372036854775807", "less than or equal to 10000000"),
    ],
)
def test_check_names_the_broken_file(isolated: Path, old: str, new: str, says: str) -> None:
    f = broken_rules(isolated, old, new)
    user_error(cli("rules", "check", f.parent), str(f), says)
    user_error(cli("rules", "check", f), str(f), says)
    user_error(cli("rules", "check", env={"ALLOWANCE_RULES": str(f.parent)}), str(f), says)


def test_check_missing_path(isolated: Path) -> None:
    user_error(cli("rules", "check", isolated / "nowhere"), "nowhere", "does not exist")


def test_show_month_in_force() -> None:
    out = ok(cli("rules", "show", "--month", "2025-07")).stdout
    assert out.startswith("2025-07: hufugui-2024-1")
    for fen, yuan in [(7500, "75.00"), (15000, "150.00"), (18000, "180.00"), (35000, "350.00"), (60000, "600.00")]:
        assert any(str(fen) in line and yuan in line for line in out.splitlines()), (fen, out)
    assert "65–69" in out and "100+" in out
    assert "municipal:district = 1:1" in out


def test_show_month_of_the_2016_scheme() -> None:
    out = ok(cli("rules", "show", "--month", "2024-04")).stdout
    assert out.startswith("2024-04: hufa-2016-24")
    assert "60000" in out


def test_show_month_no_version_in_force() -> None:
    user_error(cli("rules", "show", "--month", "2015-01"), "no rules version is in force in 2015-01")


@pytest.mark.parametrize("month", ["2025-13", "2025-00", "2025-7", "July", "2025/07"])
def test_show_malformed_month(month: str) -> None:
    user_error(cli("rules", "show", "--month", month), repr(month), "YYYY-MM")


def test_a_rules_file_that_is_not_utf8_is_one_line(isolated: Path) -> None:
    f = broken_rules(isolated, "monthly_fen: 7500", "monthly_fen: 7500")
    f.write_bytes(f.read_text(encoding="utf-8").encode("gb18030"))
    user_error(cli("rules", "check", f), str(f), "not UTF-8")


def test_check_names_a_month_no_version_covers_and_the_tables_digest(isolated: Path) -> None:
    """Audit 26A: a gap between versions (most often a typed date) passed unremarked until a run
    reached it; and a version corrected in place, under the same id, left no trace of what the
    tables said. A gap is allowed (SPEC §1.4: an error when asked for) but named; the digest,
    which each batch's manifest carries, changes with any value."""
    from allowance import rules as rules_mod

    plain = ok(cli("rules", "check")).stdout
    assert "note:" not in plain
    assert f"tables sha256 {rules_mod.load(DEFAULT_RULES_DIR).sha256()}" in plain
    f = broken_rules(isolated, "effective_from: 2024-05-01", "effective_from: 2024-07-01")
    gap = ok(cli("rules", "check", f.parent)).stdout
    assert "no version covers 2024-05 … 2024-06" in gap
    f.write_text(f.read_text(encoding="utf-8").replace("effective_from: 2024-07-01", "effective_from: 2024-05-01")
                 .replace("monthly_fen: 7500", "monthly_fen: 8000", 1), encoding="utf-8")
    corrected = ok(cli("rules", "check", f.parent)).stdout
    assert "note:" not in corrected and "ok  hufugui-2024-1" in corrected
    digest = corrected.split("tables sha256 ")[1].split()[0]
    assert digest == rules_mod.load(f.parent).sha256() != rules_mod.load(DEFAULT_RULES_DIR).sha256()
