"""Resident IDs in free text: what a console or a log may show of them."""

from __future__ import annotations


def test_ids_in_free_text_are_masked_and_nothing_else() -> None:
    from allowance.idcard import mask_ids_in

    text = ('row "110101195001010019,x" and 11010119500101001X; legacy 110101500101001 (card 6222020200112233445); '
            "batch S20250111-1a2b3c4d line S20250111-1a2b3c4d-00000001 file lines-01234567890123ab.parquet; "
            "batch S20250111-12345678 line S20250111-12345678-00000001; 2025-07-01 2025-09-30; 178335355000 fen")
    assert mask_ids_in(text) == (
        'row "110101********0019,x" and 110101********001X; legacy 110101*****1001 (card 622202*********3445); '
        "batch S20250111-1a2b3c4d line S20250111-1a2b3c4d-00000001 file lines-01234567890123ab.parquet; "
        "batch S20250111-12345678 line S20250111-12345678-00000001; 2025-07-01 2025-09-30; 178335355000 fen")


def test_card_numbers_and_ids_typed_in_groups_or_cut_short_are_masked() -> None:
    """An audit: a bank return keyed on card numbers was refused quoting them whole, and IDs typed
    into a reason in groups (`310101 19370408 5304`, `310101-19370408-5304`) or without their
    check character were shown whole. Any 14 digits or more, in one run or in groups of 3 to 8,
    keep their first 6 and last 4."""
    from allowance.idcard import mask_ids_in

    assert mask_ids_in("unknown line id(s): 6230663607502396614, 6217000012345678") == (
        "unknown line id(s): 623066*********6614, 621700******5678")
    assert mask_ids_in("same as 310101 19370408 5304, 310101-19370408-530X and 31010119370408530?") == (
        "same as 310101********5304, 310101********530X and 310101*******8530?")
    assert mask_ids_in("card ６２１７ ００００ １２３４ ５６７８") == "card ６２１７００******５６７８"


def test_what_a_second_audit_found_printed_whole_or_mangled() -> None:
    """Printed whole: IDs typed with ideographic spaces (a Chinese input method's), full-width
    hyphens, dots, two spaces, a letter touching them, the last group split; a legacy ID after a
    hex letter. Mangled: a 14-digit time stamp in a folder or file name (`publish --json` gave an
    `out_dir` that does not exist), a district list, a store file all of whose 16 hex are digits."""
    from allowance.idcard import mask_ids_in

    for typed in ("３１０１０１\u3000１９３７０４０８\u3000５３０４", "310101－19370408－5304",
                  "310101  19370408  5304", "310101.19370408.5304", "ID310101 19370408 5304", "310101 19370408 53 04"):
        masked = mask_ids_in(f"same as {typed}?")
        assert "********" in masked and "1937" not in masked and "１９３７" not in masked, (typed, masked)
    assert mask_ids_in("card6217 0000 1234 5678") == "card621700******5678"
    assert mask_ids_in("old a310101370408530") == "old a310101*****8530"
    for exact in ("/srv/out-20250701023000/Q2025Q3-1a2b3c4d", "PAYRET_20250701235959.csv",
                  "districts 310101 310104 310105", "store/Q2025Q3-1a2b3c4d/lines-1234567890123456.parquet",
                  "batch S20260515-95712345 line S20260515-95712345-0000123", "2025-07-01 2025-09-30 12:37:19.883226"):
        assert mask_ids_in(exact) == exact


def test_ids_touching_letters_or_typed_full_width_are_masked_and_hashes_are_not() -> None:
    """An audit found IDs printed whole in reasons staff typed: `ID3101…`, `op3101…` (the pattern
    asked for a boundary at letters) and full-width digits. A hex SHA-256 holding 18 digits in a
    row is a hash; a 19-digit card number is masked too (a later audit)."""
    from allowance.idcard import mask_ids_in

    pid = "310101195001011017"
    assert mask_ids_in(f"ID{pid} same household; by op{pid}; x{pid}y") == (
        "ID310101********1017 same household; by op310101********1017; x310101********1017y")
    assert mask_ids_in("同户 ３１０１０１１９５００１０１１０１７ 已核 ３１０１０１１９５００１０１１０１Ｘ") == (
        "同户 ３１０１０１********１０１７ 已核 ３１０１０１********１０１Ｘ")
    sha = "ef900aed" + pid + "16f8a8059a95dbc70d94631be30992fba59385"
    assert len(sha) == 64 and mask_ids_in(f"extract {sha}") == f"extract {sha}"
    assert mask_ids_in(f"card 6{pid}") == "card 631010*********1017"  # a card number, masked as an ID is
    assert pid not in mask_ids_in(f"z{pid}{'b' * 45}")  # 64 characters, but no hash: not all hex


def test_a_result_is_masked_value_by_value_before_it_is_serialised() -> None:
    """After json.dumps a newline before an ID is `\\n`, and the ID no longer stands alone: values
    are masked first, nested ones and paths too; numbers and other values stay as they are."""
    import json
    from pathlib import Path

    from allowance.idcard import mask_ids_deep, mask_ids_in

    pid = "11010119500101001X"
    wide = "３１０１０１１９５００１０１１０１７"  # typed with a Chinese input method
    value = {"reason": f"moved\n{pid}", "forced": {"tripped": [f"\t{pid}", wide]}, "file": Path(f"/in/{pid}.csv"),
             "lines": 3, "ok": True, "none": None}
    assert json.dumps(wide)[1:-1] in mask_ids_in(json.dumps(value, default=str))  # why: JSON writes \uff13…
    masked = mask_ids_deep(value)
    assert pid not in json.dumps(masked, default=str)
    assert masked["reason"] == "moved\n110101********001X" and masked["file"] == "/in/110101********001X.csv"
    assert masked["forced"]["tripped"][1] == "３１０１０１********１０１７"
    assert (masked["lines"], masked["ok"], masked["none"]) == (3, True, None)


def test_ids_typed_in_groups_of_other_lengths_or_with_underscores_and_slashes_are_masked() -> None:
    """Audit 31B: `review list` printed whole an ID typed as 6 + 12 digits, 14 + 4, or with `_` or
    `/` between its groups. Time-stamped names split by `_` stay as they are."""
    from allowance.idcard import mask_ids_in

    for typed in ("310101-194910281896", "310101 194910281896", "31010119491028 1896", "310101_19491028_1896",
                  "310101/19491028/1896", "3101011949 10281896"):
        assert mask_ids_in(f"dup of {typed}.") == "dup of 310101********1896.", typed
    for exact in ("PAYRET_20250701_235959.csv", "out/2025/07/01/12/30", "31010119491028 1897 (no ID: its check fails)"):
        assert mask_ids_in(exact) == exact
