"""What every verb does: call the server, turn its errors into clean exits, print JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click

from model_manager.cli.client import ApiError, ServerClient


@dataclasses.dataclass(frozen=True)
class Target:
    """The server the verbs talk to, and the key they send."""

    url: str
    api_key: str | None = None


def client(ctx: click.Context) -> ServerClient:
    target: Target = ctx.obj
    return ServerClient(target.url, api_key=target.api_key)


def call(ctx: click.Context, method: str, *args: Any, **kwargs: Any) -> Any:
    """``ServerClient.<method>(...)`` against the group's ``--url``; an API error exits 1
    with its message."""
    server = client(ctx)
    try:
        return getattr(server, method)(*args, **kwargs)
    except ApiError as exc:
        raise click.ClickException(exc.message) from exc
    finally:
        server.close()


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def json_arg(text: str, what: str) -> Any:
    """A JSON value given inline or as ``@path``."""
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{what} is not valid JSON: {exc}") from exc
