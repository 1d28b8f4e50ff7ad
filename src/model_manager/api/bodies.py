"""Request bodies that are one JSON value."""

from __future__ import annotations

import json
from typing import Any

from model_manager.errors import InvalidInput


def json_value(body: bytes) -> Any:
    """The body parsed as JSON (None when empty)."""
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from exc


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; an empty body is an empty object."""
    value = json_value(body)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("the request body must be a JSON object")
    return value
