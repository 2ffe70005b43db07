"""Resident IDs in free text: what a console or a log may show of them."""

from __future__ import annotations


def test_ids_in_free_text_are_masked_and_nothing_else() -> None:
    from allowance.idcard import mask_ids_in

    text = ('row "110101195001010019,x" and 11010119500101001X; legacy 110101500101001 (card 6222020200112233445); '
            "batch S20250111-1a2b3c4d line S20250111-1a2b3c4d-00000001 sha 0123456789012345678abc")
    assert mask_ids_in(text) == (
        'row "110101********0019,x" and 110101********001X; legacy 110101*****1001 (card 6222020200112233445); '
        "batch S20250111-1a2b3c4d line S20250111-1a2b3c4d-00000001 sha 0123456789012345678abc")


def test_a_result_is_masked_value_by_value_before_it_is_serialised() -> None:
    """After json.dumps a newline before an ID is `\\n`, and the ID no longer stands alone: values
    are masked first, nested ones and paths too; numbers and other values stay as they are."""
    import json
    from pathlib import Path

    from allowance.idcard import mask_ids_deep, mask_ids_in

    pid = "11010119500101001X"
    value = {"reason": f"moved\n{pid}", "forced": {"tripped": [f"\t{pid}"]}, "file": Path(f"/in/{pid}.csv"),
             "lines": 3, "ok": True, "none": None}
    assert pid in mask_ids_in(json.dumps(value, default=str))  # why: masking the JSON text misses them
    masked = mask_ids_deep(value)
    assert pid not in json.dumps(masked, default=str)
    assert masked["reason"] == "moved\n110101********001X" and masked["file"] == "/in/110101********001X.csv"
    assert (masked["lines"], masked["ok"], masked["none"]) == (3, True, None)
