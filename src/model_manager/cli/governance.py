"""Verbs that govern the fleet: ``report``, ``cleanup``, ``archive``, ``unarchive``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

import click

from model_manager.cli.calls import call, echo_json
from model_manager.cli.tables import format_table
from model_manager.sizes import human_size

LIMIT_OPTIONS = [
    ("--window", "Traffic that makes a version in use. [server default: 7d]"),
    ("--stale-after", "No request for this long: STALE. [server default: 30d]"),
    ("--never-used-grace", "Unused this long after upload: NEVER_USED. [server default: 7d]"),
    ("--idle-after", "Loaded and unused this long: IDLE_IN_MEMORY. [server default: 1h]"),
    ("--purge-after", "Purge versions archived this long ago. [server default: 14d]"),
]


def limit_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for flag, text in reversed(LIMIT_OPTIONS):
        command = click.option(flag, metavar="DURATION", help=text)(command)
    return command


def _limits(flags: dict[str, Any]) -> dict[str, Any]:
    names = [flag[2:].replace("-", "_") for flag, _ in LIMIT_OPTIONS]
    return {name: flags[name] for name in names if flags.get(name)}


@click.command()
@click.option("--model", help="Only this model.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV: one row per version.")
@limit_options
@click.pass_context
def report(ctx: click.Context, /, model: str | None, as_json: bool, as_csv: bool,
           **flags: Any) -> None:
    """How many models are in use, which are stale, redundant or misbehaving, and their cost."""
    params = {**_limits(flags), **({"model": model} if model else {})}
    data = call(ctx, "request", "GET", "/api/report", params=params)
    if as_json:
        return echo_json(data)
    rows = [[m["name"], v["version"], _state(v), v["requests"], v["errors"], v["p99_ms"],
             _size(v["size"]), v["last_used"] or "never", " ".join(f["code"] for f in v["findings"]),
             "; ".join(_evidence(f) for f in v["findings"])]
            for m in data["models"] for v in m["versions"]]
    headers = ["MODEL", "VERSION", "STATE", "REQUESTS", "ERRORS", "P99_MS", "SIZE",
               "LAST_USED", "FINDINGS", "EVIDENCE"]
    if as_csv:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([h.lower() for h in headers])
        writer.writerows(rows)
        return click.echo(out.getvalue(), nl=False)
    t = data["totals"]
    click.echo(f"models {t['models']}  versions {t['versions']} ({t['archived_versions']} "
               f"archived)  in use {t['versions_in_use']}  loaded {t['loaded_versions']} "
               f"({_size(t['loaded_bytes'])} of {_size(t['memory_budget_bytes'])})  storage "
               f"{_size(t['storage_bytes'])}, reclaimable {_size(t['reclaimable_bytes'])}")
    click.echo(format_table(headers, rows))


@click.command()
@click.option("--apply", is_flag=True, help="Carry the actions out (default: a dry run).")
@click.option("--model", help="Only this model.")
@click.option("--finding", "findings", multiple=True, metavar="CODE",
              help="Only actions for this finding, e.g. STALE (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@limit_options
@click.pass_context
def cleanup(ctx: click.Context, /, apply: bool, model: str | None, findings: tuple[str, ...],
            as_json: bool, **flags: Any) -> None:
    """Unload idle versions, archive stale, superseded and never-used ones, purge old archives.
    A dry run unless --apply."""
    body: dict[str, Any] = {"dry_run": not apply, **_limits(flags)}
    if model:
        body["model"] = model
    if findings:
        body["findings"] = [f.upper() for f in findings]
    result = call(ctx, "request", "POST", "/api/cleanup", json=body)
    if as_json:
        return echo_json(result)
    rows = [[a["action"], a["model"] or "-", a["version"] or "-", a["finding"],
             _size(a["reclaims_bytes"]), "dry run" if result["dry_run"]
             else "done" if a["done"] else f"failed: {a['error']}"] for a in result["actions"]]
    click.echo(format_table(["ACTION", "MODEL", "VERSION", "FINDING", "FREES", "RESULT"], rows))
    verb = "would free" if result["dry_run"] else "freed"
    click.echo(f"{len(rows)} action(s); {verb} {_size(result['storage_bytes'])} of storage and "
               f"{_size(result['memory_bytes'])} of memory")


@click.command()
@click.argument("name")
@click.argument("version")
@click.pass_context
def archive(ctx: click.Context, name: str, version: str) -> None:
    """Stop serving VERSION of NAME (it stays in the registry; `unarchive` brings it back)."""
    call(ctx, "request", "POST", f"/api/models/{name}/versions/{version}/archive")
    click.echo(f"{name} version {version} archived")


@click.command()
@click.argument("name")
@click.argument("version")
@click.pass_context
def unarchive(ctx: click.Context, name: str, version: str) -> None:
    """Serve an archived VERSION of NAME again."""
    call(ctx, "request", "POST", f"/api/models/{name}/versions/{version}/unarchive")
    click.echo(f"{name} version {version} unarchived")


def _state(version: dict[str, Any]) -> str:
    return "archived" if version["archived"] else str(version["state"])


def _evidence(finding: dict[str, Any]) -> str:
    return f"{finding['code']}: " + json.dumps(finding["evidence"], separators=(",", ":"))


def _size(size: int | None) -> str:
    return "-" if size is None else human_size(size)
