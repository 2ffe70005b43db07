"""The rules loader (SPEC §2, STYLE habits 1–2): versioned, dated, cited, validated at load.

A broken rules file must be refused with a message a civil servant can act on: it names the
file, the version id and the field (SPEC §2). Each bad file here is the real YAML with one
thing changed, written to tmp_path beside an untouched copy of the other real file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from allowance import rules as rules_mod
from allowance.errors import RulesError
from allowance.months import parse_month

RULES_DIR = rules_mod.DEFAULT_RULES_DIR
FILE_2016 = "2016-hufa-24.yaml"
FILE_2024 = "2024-hufugui-1.yaml"
ID_2016 = "hufa-2016-24"
ID_2024 = "hufugui-2024-1"


def _real(name: str) -> dict[str, Any]:
    return yaml.safe_load((RULES_DIR / name).read_text(encoding="utf-8"))


def _write(folder: Path, name: str, doc: dict[str, Any]) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _load_error(folder: Path) -> str:
    with pytest.raises(RulesError) as exc:
        rules_mod.load(folder)
    return str(exc.value)


def assert_names(message: str, *parts: str) -> None:
    """The message names every one of `parts` (file, version id, field)."""
    missing = [p for p in parts if p not in message]
    assert not missing, f"message lacks {missing}: {message!r}"


# ---- the real rules -----------------------------------------------------------------------


def test_real_rules_folder_loads() -> None:
    r = rules_mod.load(RULES_DIR)
    assert [v.id for v in r.versions] == [ID_2016, ID_2024]
    assert r.channels() == ("senior_card", "social_security_card")
    for v in r.versions:
        assert [(b.min_age, b.max_age, b.monthly_fen) for b in v.sorted_bands] == [
            (65, 69, 7500), (70, 79, 15000), (80, 89, 18000), (90, 99, 35000), (100, None, 60000),
        ], "SPEC §1 table / 通知 二"


@pytest.mark.parametrize(
    ("month", "version_id"),
    [
        ("2016-05", ID_2016),
        ("2024-04", ID_2016),
        ("2024-05", ID_2024),
        ("2029-04", ID_2024),
    ],
)
def test_at_returns_the_version_in_force(month: str, version_id: str) -> None:
    r = rules_mod.load(RULES_DIR)
    assert r.at(parse_month(month)).id == version_id
    assert r.at(dt.date.fromisoformat(f"{month}-01")).id == version_id


@pytest.mark.parametrize("month", ["2029-05", "2030-01", "2016-04", "2000-01"])
def test_at_a_month_no_version_covers_is_an_error(month: str) -> None:
    """SPEC §1.4: a month no version covers is an error, never a silent zero."""
    r = rules_mod.load(RULES_DIR)
    with pytest.raises(RulesError) as exc:
        r.at(parse_month(month))
    assert month in str(exc.value)


@pytest.mark.parametrize("amount", [7500, 7501, 1, 0, -1, -7500, -7501, -15001, 39500, 60001])
def test_split_shares_sum_to_the_amount(amount: int) -> None:
    """七(二) 1 : 1; an odd fen goes to one side, and the two shares always sum to the amount."""
    v = rules_mod.load(RULES_DIR).at(parse_month("2025-07"))
    municipal, district = v.split(amount)
    assert isinstance(municipal, int) and isinstance(district, int)
    assert municipal + district == amount
    assert abs(municipal - district) <= 1
    assert (municipal >= 0 and district >= 0) if amount >= 0 else (municipal <= 0 and district <= 0)


# ---- bad files: each refused naming file, version and field -------------------------------


def _set_band(i: int, **changes: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        doc["bands"][i].update(changes)
    return mutate


def _del_band_key(i: int, key: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        del doc["bands"][i][key]
    return mutate


def _del(key: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        del doc[key]
    return mutate


def _set_channels(doc: dict[str, Any]) -> None:
    doc["channels"]["value"] = ["senior_card", "wechat_pay"]


def _empty_cite(key: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        doc[key]["cite"] = ""
    return mutate


def _set_value(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        doc[key]["value"] = value
    return mutate


BAD_FILES = [
    # (test id, change to the real 2024 file, the field the message must name)
    ("gap_between_bands", _set_band(1, min_age=71), "bands"),
    ("overlapping_bands", _set_band(1, min_age=69), "bands"),
    ("last_band_not_open_ended", _set_band(4, max_age=120), "bands"),
    ("band_without_cite", _del_band_key(2, "cite"), "cite"),
    ("band_with_empty_cite", _set_band(2, cite=""), "cite"),
    ("band_with_blank_cite", _set_band(2, cite="   "), "cite"),  # spaces cite nothing (STYLE habit 1)
    ("fen_with_half_a_fen", _set_band(0, monthly_fen=7500.5), "monthly_fen"),
    ("fen_as_text", _set_band(0, monthly_fen="7500"), "monthly_fen"),
    ("fen_as_float", _set_band(0, monthly_fen=7500.0), "monthly_fen"),
    ("unknown_channel", _set_channels, "channels"),
    ("missing_payment_day", _del("payment_day"), "payment_day"),
    # an audit: [1, 7] was accepted and ignored (the runs are calendar quarters, SPEC §4)
    ("half_yearly_disbursement", _set_value("disbursement_months", [1, 7]), "disbursement_months"),
    ("no_channel", _set_value("channels", []), "channels"),  # nobody could be paid (audit 17D)
    ("missing_effective_from", _del("effective_from"), "effective_from"),
    ("missing_funding", _del("funding"), "funding"),
    ("missing_bands", _del("bands"), "bands"),
    ("uncited_funding_share", _empty_cite("funding"), "funding"),
    ("uncited_retro_window", _empty_cite("retro_months"), "retro_months"),
]


@pytest.mark.parametrize(("mutate", "field"), [pytest.param(m, f, id=i) for i, m, f in BAD_FILES])
def test_bad_file_refused_naming_file_version_and_field(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], None], field: str
) -> None:
    doc = _real(FILE_2024)
    mutate(doc)
    _write(tmp_path, FILE_2016, _real(FILE_2016))
    _write(tmp_path, FILE_2024, doc)
    msg = _load_error(tmp_path)
    assert_names(msg, FILE_2024, ID_2024, field)
    assert FILE_2016 not in msg, "the good file is not blamed"


def test_single_bad_file_loaded_by_path(tmp_path: Path) -> None:
    """Loading one file (not a folder) names that file just the same."""
    doc = _real(FILE_2024)
    doc["bands"][0]["monthly_fen"] = 7500.5
    path = _write(tmp_path, FILE_2024, doc)
    with pytest.raises(RulesError) as exc:
        rules_mod.load(path)
    assert_names(str(exc.value), FILE_2024, ID_2024, "monthly_fen")


def test_mutated_copy_of_real_files_loads(tmp_path: Path) -> None:
    """Control for the tests above: the dump/load round trip alone breaks nothing."""
    _write(tmp_path, FILE_2016, _real(FILE_2016))
    _write(tmp_path, FILE_2024, _real(FILE_2024))
    assert [v.id for v in rules_mod.load(tmp_path).versions] == [ID_2016, ID_2024]


def test_overlapping_versions_across_two_files(tmp_path: Path) -> None:
    """SPEC §2 'Versions must not overlap': the 2016 version made to run to 2024-05-31 overlaps
    the 2024 version's first month. The error names both files, both versions and the date field."""
    old = _real(FILE_2016)
    old["effective_to"] = dt.date(2024, 5, 31)
    _write(tmp_path, FILE_2016, old)
    _write(tmp_path, FILE_2024, _real(FILE_2024))
    msg = _load_error(tmp_path)
    assert_names(msg, ID_2016, ID_2024, FILE_2016, FILE_2024)
    assert "effective_to" in msg or "effective_from" in msg, f"message names no date field: {msg!r}"


def test_open_ended_version_followed_by_another_overlaps(tmp_path: Path) -> None:
    """An earlier version left open-ended (effective_to: null) overlaps every later one."""
    old = _real(FILE_2016)
    old["effective_to"] = None
    _write(tmp_path, FILE_2016, old)
    _write(tmp_path, FILE_2024, _real(FILE_2024))
    msg = _load_error(tmp_path)
    assert_names(msg, ID_2016, ID_2024)


def test_raise_fixture_loads_and_straddles_2025q3() -> None:
    """The test fixture tests/cases/rules_raise/ (hypothetical raise) is itself valid rules."""
    r = rules_mod.load(Path(__file__).resolve().parent.parent / "cases" / "rules_raise")
    assert [r.at(parse_month(m)).id for m in ("2025-07", "2025-08", "2025-09")] == [
        ID_2024, "test-raise-2025-08", "test-raise-2025-08",
    ]
    assert [b.monthly_fen for b in r.at(parse_month("2025-08")).sorted_bands] == [8000, 16000, 19000, 36000, 61000]


def test_the_rules_loader_refuses_a_key_twice_but_keeps_yaml_merges() -> None:
    """A key given twice used to let the later value win silently; a merge (`<<: *anchor`) and a
    key that overrides what it merged are ordinary YAML and stay allowed."""
    import pytest
    import yaml

    from allowance.rules import _UniqueKeyLoader

    merged = yaml.load("base: &b {cite: x, value: 1}\nover:\n  <<: *b\n  value: 2\n", Loader=_UniqueKeyLoader)
    assert merged["over"] == {"cite": "x", "value": 2}
    for text, says in [("a: 1\nb: 2\na: 3\n", "'a' appears twice"), ("? [1, 2]\n: 3\n", "plain value")]:
        with pytest.raises(yaml.constructor.ConstructorError, match=says):
            yaml.load(text, Loader=_UniqueKeyLoader)


@pytest.mark.parametrize(("written", "yaml_reads"), [
    ("monthly_fen: 07500", 3904),  # octal
    ("monthly_fen: 0x1D4C", 7500),
    ("monthly_fen: 7_500", 7500),
    ("monthly_fen: 125:00", 7500),  # sexagesimal
])
def test_a_number_yaml_would_read_otherwise_is_refused_naming_file_and_line(
    tmp_path: Path, written: str, yaml_reads: int
) -> None:
    """Audit 26A: `07500` passed `rules check` and paid 39.04 yuan a month (YAML 1.1 octal);
    only plain decimal digits are a whole number in a rules file."""
    assert yaml.safe_load(written)["monthly_fen"] == yaml_reads  # what a plain YAML loader makes of it
    text = (RULES_DIR / FILE_2024).read_text(encoding="utf-8")
    assert text.count("monthly_fen: 7500,") == 1
    (tmp_path / FILE_2024).write_text(text.replace("monthly_fen: 7500,", written + ","), encoding="utf-8")
    (tmp_path / FILE_2016).write_text((RULES_DIR / FILE_2016).read_text(encoding="utf-8"), encoding="utf-8")
    line = 1 + text[:text.index("monthly_fen: 7500,")].count("\n")
    msg = _load_error(tmp_path)
    assert_names(msg, FILE_2024, f"line {line}", written.split(": ")[1], "plain decimal")


@pytest.mark.parametrize("vid", ["raise+2026", "raise 2026", "-raise", "raise\t1"])
def test_a_version_id_is_plain_letters_digits_and_dashes(tmp_path: Path, vid: str) -> None:
    """Audit 26A: `raise+2026` passed, and a line spanning it and the version before named
    `hufugui-2024-1+raise+2026`, which the manifest split into three versions."""
    doc = _real(FILE_2024)
    doc["id"] = vid
    _write(tmp_path, FILE_2016, _real(FILE_2016))
    _write(tmp_path, FILE_2024, doc)
    assert_names(_load_error(tmp_path), FILE_2024, vid, "field id", "'+'")
