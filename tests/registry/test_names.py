"""Names match the rule whole: no trailing newline, CR, NUL or look-alike makes a second spelling."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from model_manager.errors import InvalidName, NotFound
from model_manager.registry import check_alias_name, check_model_name
from model_manager.registry.names import check_key_name
from model_manager.registry.records import ModelRecord

LOOK_ALIKES = ["iris\n", "iris\r", "iris\r\n", "ir\x00is", "iris\x00", "\u0456ris",  # Cyrillic i
               "\uff49ris",  # fullwidth i
               "iris\u200b", "IRIS", "\u2170ris"]  # a zero-width space; a small roman numeral one


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_names_with_a_stray_character_are_refused(name: str) -> None:
    for check in (check_model_name, check_alias_name, check_key_name):
        with pytest.raises(InvalidName):
            check(name)


def test_the_rule_itself_still_holds() -> None:
    assert check_model_name("iris-2.v_1") == "iris-2.v_1"
    assert check_alias_name("production") == "production"
    with pytest.raises(InvalidName, match="not only digits"):
        check_alias_name("12")


@pytest.mark.parametrize("ref", ["9" * 20, "9" * 4300, "9" * 4301, "9" * 100_000])
def test_a_version_number_that_cannot_exist_is_not_found_with_a_short_message(ref: str) -> None:
    model = ModelRecord("iris", datetime.now(UTC), (), {})
    with pytest.raises(NotFound) as raised:
        model.resolve(ref)
    assert "has no version 999" in raised.value.message and len(raised.value.message) < 120
