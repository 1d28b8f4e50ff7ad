"""The naming rule for models, aliases and API keys: it keeps every name safe to use as a path
segment. A name matches the rule whole (``fullmatch``): a trailing newline, a carriage return, a
NUL or a look-alike from outside ASCII makes it invalid, never a second spelling of a valid one."""

from __future__ import annotations

import re

from model_manager.errors import InvalidName

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
"""Matched with ``fullmatch``."""
_RULE = "use 1-63 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"


def is_valid_name(name: str) -> bool:
    """Whether ``name`` follows the naming rule, all of it."""
    return NAME_PATTERN.fullmatch(name) is not None


def check_model_name(name: str) -> str:
    if not is_valid_name(name):
        raise InvalidName(f"invalid model name {name[:80]!r}: {_RULE}")
    return name


def check_alias_name(alias: str) -> str:
    if not is_valid_name(alias) or alias.isdigit():
        raise InvalidName(f"invalid alias {alias[:80]!r}: {_RULE}, not only digits (those are "
                          "version numbers)")
    return alias


def check_key_name(name: str) -> str:
    if not is_valid_name(name):
        raise InvalidName(f"invalid key name {name[:80]!r}: {_RULE}")
    return name
