"""``model-manager keys``: create, list and revoke API keys."""

from __future__ import annotations

from pathlib import Path

import click

from model_manager.access import ROLES
from model_manager.cli.calls import call
from model_manager.cli.tables import format_table


@click.group()
def keys() -> None:
    """API keys: once one has existed, every request but the health checks and the dashboard's
    page needs one."""


@keys.command("create")
@click.option("--name", required=True, help="Who uses the key, e.g. svc-a.")
@click.option("--role", type=click.Choice(ROLES), required=True,
              help="admin: everything; deployer: change models; predict: inference; read: look.")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Write the key straight into this server data dir's registry, without the "
                   "server (e.g. when every admin key is lost); a running server picks it up.")
@click.option("--db-url", help="With --data-dir: the registry, when not the data dir's SQLite file.")
@click.pass_context
def create(ctx: click.Context, name: str, role: str, data_dir: Path | None,
           db_url: str | None) -> None:
    """Create a key and print it: it is shown this once, the server keeps only its hash."""
    if data_dir is None:
        if db_url is not None:
            raise click.UsageError("--db-url goes with --data-dir")
        created = call(ctx, "request", "POST", "/api/keys", json={"name": name, "role": role})
    else:
        created = _create_offline(data_dir, db_url, name, role)
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


def _create_offline(data_dir: Path, db_url: str | None, name: str, role: str) -> dict[str, str]:
    from model_manager.access import KeyRing
    from model_manager.errors import ModelManagerError
    from model_manager.registry import Registry
    from model_manager.settings import Settings

    settings = Settings(data_dir=data_dir, db_url=db_url)
    if db_url is None and not (data_dir / "registry.db").is_file():
        raise click.ClickException(f"{data_dir} holds no registry.db: is it the server's data dir?")
    registry = Registry.from_url(settings.resolved_db_url)
    try:
        registry.migrate()
        _, secret = KeyRing(registry).create(name, role)
    except ModelManagerError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        registry.close()
    return {"key": secret}
