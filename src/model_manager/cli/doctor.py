"""``model-manager doctor``: does the registry agree with the artifact store?"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from model_manager.cli.calls import call, echo_json
from model_manager.cli.tables import format_table


@click.command()
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False),
              help="A stopped server's data dir (else: ask the running server at --url).")
@click.option("--db-url", help="The registry, when not the data dir's SQLite file.")
@click.option("--store-url", help="The artifact store, when not the data dir's store/.")
@click.option("--repair", is_flag=True,
              help="Delete orphan blobs and temp files (with --data-dir: the server must be stopped).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def doctor(ctx: click.Context, data_dir: Path | None, db_url: str | None, store_url: str | None,
           repair: bool, as_json: bool) -> None:
    """Check every version's blob and digest, orphan blobs and leftover temp files; exit 1 if
    something is wrong (after --repair: if something is still wrong). Warn when the data dir or
    the store's staging folder has under 10% free, or less than the largest version's size."""
    if data_dir is None:
        if repair:
            raise click.UsageError("--repair needs --data-dir (a stopped server's data)")
        report = call(ctx, "request", "GET", "/api/doctor")
    else:
        report = _local(data_dir, db_url, store_url, repair)
    if as_json:
        echo_json(report)
    else:
        rows = [[p["kind"], p["target"], p["detail"], "repaired" if p.get("repaired") else
                 ("repairable" if p["repairable"] else "-")] for p in report["problems"]]
        click.echo(format_table(["PROBLEM", "TARGET", "DETAIL", "REPAIR"], rows) if rows
                   else "the registry and the store agree")
        for warning in report.get("warnings", []):
            click.echo(f"warning: {warning['place']} at {warning['path']} has {warning['detail']}",
                       err=True)
    if any(not p.get("repaired") for p in report["problems"]):
        ctx.exit(1)


def _local(data_dir: Path, db_url: str | None, store_url: str | None, repair: bool) -> dict[str, Any]:
    from model_manager import doctor as checks
    from model_manager.registry import Registry
    from model_manager.settings import Settings
    from model_manager.store import open_store

    settings = Settings(data_dir=data_dir, db_url=db_url, store_url=store_url)
    registry = Registry.from_url(settings.resolved_db_url)
    try:
        registry.migrate()
        store = open_store(settings.resolved_store_url, data_dir / "cache")
        problems = checks.examine(registry, store)
        repaired = set(checks.repair(store, registry, problems)) if repair else set()
        warnings = checks.disk_warnings(registry, {"data_dir": data_dir,
                                                   "staging": store.staging_dir})
    finally:
        registry.close()
    return {"problems": [{**p.to_json(), "repaired": p in repaired} for p in problems],
            "warnings": [w.to_json() for w in warnings]}
