"""``model-manager keys``: create, list and revoke API keys."""

from __future__ import annotations

import click

from model_manager.access import ROLES
from model_manager.cli.calls import call
from model_manager.cli.tables import format_table


@click.group()
def keys() -> None:
    """API keys: once one exists, every request but the health checks needs one."""


@keys.command("create")
@click.option("--name", required=True, help="Who uses the key, e.g. svc-a.")
@click.option("--role", type=click.Choice(ROLES), required=True,
              help="admin: everything; deployer: change models; predict: inference; read: look.")
@click.pass_context
def create(ctx: click.Context, name: str, role: str) -> None:
    """Create a key and print it: it is shown this once, the server keeps only its hash."""
    created = call(ctx, "request", "POST", "/api/keys", json={"name": name, "role": role})
    click.echo(created["key"])
    click.echo(f"key {name!r} ({role}) created; it is not shown again", err=True)


@keys.command("ls")
@click.pass_context
def list_keys(ctx: click.Context) -> None:
    """List the keys: name, role, created, revoked."""
    rows = [[k["name"], k["role"], k["created_at"], k["revoked_at"] or "-"]
            for k in call(ctx, "request", "GET", "/api/keys")]
    click.echo(format_table(["NAME", "ROLE", "CREATED", "REVOKED"], rows))


@keys.command("revoke")
@click.argument("name")
@click.pass_context
def revoke(ctx: click.Context, name: str) -> None:
    """Revoke key NAME: it is refused from now on."""
    call(ctx, "request", "DELETE", f"/api/keys/{name}")
    click.echo(f"key {name!r} revoked")
