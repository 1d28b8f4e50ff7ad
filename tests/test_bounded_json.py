"""JSON from callers: integers in 64 bits, nesting within limits, clear errors, no recursion."""

from __future__ import annotations

import pytest

from model_manager.bounded_json import MAX_DEPTH, check_depth, load_json, parse_json
from model_manager.errors import InvalidInput


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("literal", [str(2**64 - 1), str(-(2**63)), "0", "-0"])
def test_integers_in_64_bits_are_kept_exactly(literal: str) -> None:
    assert parse_json(f"[{literal}, NaN]")[0] == int(literal)  # NaN: the standard library's path


@pytest.mark.parametrize("literal", [str(2**64), str(-(2**63) - 1), "9" * 4300, "9" * 4301,
                                     "-" + "9" * 100_000])
def test_integers_past_64_bits_are_refused(literal: str) -> None:
    with pytest.raises(InvalidInput, match=r"metadata holds an integer of \d+ digits"):
        parse_json(f'{{"a": [NaN, {literal}]}}', "metadata")


def test_huge_integers_are_refused_whichever_parser_reads_them() -> None:
    with pytest.raises(InvalidInput, match="integer of 4301 digits"):
        parse_json("9" * 4301)
    assert parse_json("1" + "0" * 30) == 1e30  # orjson reads it as a double: never a big int


def test_nesting_up_to_the_limit_is_fine_and_past_it_refused() -> None:
    assert parse_json(nested(MAX_DEPTH)) is not None
    for depth in (MAX_DEPTH + 1, 1_000, 1_025, 100_000):
        with pytest.raises(InvalidInput, match=f"more than {MAX_DEPTH} levels deep"):
            parse_json(nested(depth))


def test_load_json_leaves_depth_to_its_reader_up_to_orjsons_limit() -> None:
    assert load_json(nested(1_000)) is not None
    with pytest.raises(InvalidInput, match="levels deep"):
        load_json(nested(100_000))
    with pytest.raises(InvalidInput, match="parameters nests"):
        check_depth({"a": [{"b": load_json(nested(40))}]}, "parameters")


@pytest.mark.parametrize("text", [b"{not json", b"\xff\xfe", b"[1,", b""])
def test_malformed_json_is_invalid_input(text: bytes) -> None:
    with pytest.raises(InvalidInput, match="is not valid JSON"):
        parse_json(text)
