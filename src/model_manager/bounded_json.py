"""JSON from callers, within bounds: every request body, form field and document a caller sends
is parsed here, so that no number or nesting depth reaches code that cannot take it.

- No integer past 64 bits (-2**63 to 2**64 - 1: signed or unsigned tensor elements) is taken as
  an integer. orjson reads a longer literal as a double, or fails on it once the double would be
  infinite; the standard library, which then parses, refuses it before Python converts it (past
  4,300 digits the conversion raises, and below that it costs quadratic time for numbers no field
  here can use).
- Arrays and objects nest at most ``MAX_DEPTH`` deep (``parse_json``), or, for readers that walk
  only part of a large document (the v2 codec), at most orjson's 1,024 with ``check_depth`` on
  the parts they walk. A deeper document is refused with a 400 rather than left to exhaust the
  interpreter's recursion limit wherever it is walked later.
- NaN and Infinity literals are accepted (tensors may hold them); readers check what they allow.

Every refusal is ``InvalidInput`` naming what was sent (``what``).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import orjson

from model_manager.errors import InvalidInput

MAX_DEPTH = 32
"""Arrays and objects inside one another in a request's JSON documents."""
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
_INT_CHARS = len(str(INT_MIN))


def parse_json(text: bytes | str, what: str = "the request body") -> Any:
    """``text`` parsed, with integers in 64 bits and at most ``MAX_DEPTH`` levels of nesting."""
    value = load_json(text, what)
    check_depth(value, what)
    return value


def load_json(text: bytes | str, what: str = "the request body") -> Any:
    """``text`` parsed, with integers in 64 bits and at most 1,024 levels of nesting: for readers
    that ``check_depth`` the parts they walk themselves."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass  # NaN and Infinity, integers orjson holds as an infinite double, or not JSON at all
    try:
        return json.loads(text, parse_int=functools.partial(_bounded_int, what=what))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise _too_deep(what, MAX_DEPTH) from None


def check_depth(value: Any, what: str, limit: int = MAX_DEPTH) -> None:
    """Refuse ``value`` when its arrays and objects nest more than ``limit`` deep (no recursion:
    one pass per level)."""
    level = [value] if isinstance(value, list | dict) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            raise _too_deep(what, limit)
        level = [child for parent in level
                 for child in (parent.values() if isinstance(parent, dict) else parent)
                 if isinstance(child, list | dict)]


def _bounded_int(literal: str, what: str) -> int:
    if len(literal) <= _INT_CHARS:
        value = int(literal)
        if INT_MIN <= value <= INT_MAX:
            return value
    digits = len(literal.lstrip("-"))
    raise InvalidInput(f"{what} holds an integer of {digits} digits ({literal[:12]}...): "
                       f"integers here lie between -2**63 and 2**64 - 1")


def _too_deep(what: str, limit: int) -> InvalidInput:
    return InvalidInput(f"{what} nests arrays and objects more than {limit} levels deep")
