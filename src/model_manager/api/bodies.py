"""Request bodies that are one JSON value, parsed within ``bounded_json``'s limits."""

from __future__ import annotations

from typing import Any

from model_manager.bounded_json import parse_json
from model_manager.errors import InvalidInput


def json_value(body: bytes) -> Any:
    """The body parsed as JSON (None when empty); InvalidInput when it is not JSON, holds an
    integer past 64 bits or nests too deep."""
    if not body.strip():
        return None
    return parse_json(body)


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; an empty body is an empty object."""
    value = json_value(body)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("the request body must be a JSON object")
    return value
