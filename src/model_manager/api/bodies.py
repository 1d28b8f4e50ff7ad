"""Request bodies that are one JSON object."""

from __future__ import annotations

import json
from typing import Any

from model_manager.errors import InvalidInput


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; an empty body is an empty object."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidInput("the request body must be a JSON object")
    return value
