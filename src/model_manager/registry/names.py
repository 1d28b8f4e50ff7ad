"""The naming rule for models and aliases: it keeps every name safe to use as a path segment."""

from __future__ import annotations

import re

from model_manager.errors import InvalidName

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def check_model_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InvalidName(f"invalid model name {name[:80]!r}: use 1-63 characters of a-z, 0-9, "
                          "'.', '_' or '-', starting with a letter or digit")
    return name


def check_alias_name(alias: str) -> str:
    if not NAME_PATTERN.match(alias) or alias.isdigit():
        raise InvalidName(f"invalid alias {alias[:80]!r}: use 1-63 characters of a-z, 0-9, "
                          "'.', '_' or '-', starting with a letter or digit, not only digits "
                          "(those are version numbers)")
    return alias
