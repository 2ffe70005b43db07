"""Resident IDs in free text: what a console or a log may show of them."""

from __future__ import annotations


def test_ids_in_free_text_are_masked_and_nothing_else() -> None:
    from allowance.idcard import mask_ids_in

    text = ('row "110101195001010019,x" and 11010119500101001X; legacy 110101500101001 (card 6222020200112233445); '
            "batch S20250111-1a2b3c4d line S20250111-1a2b3c4d-00000001 sha 0123456789012345678abc")
    assert mask_ids_in(text) == (
        'row "110101********0019,x" and 110101********001X; legacy 110101*****1001 (card 6222020200112233445); '
        "batch S20250111-1a2b3c4d line S20250111-1a2b3c4d-00000001 sha 0123456789012345678abc")
