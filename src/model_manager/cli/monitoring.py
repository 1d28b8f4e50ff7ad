"""Verbs that watch staged versions and tell owners: ``shadow``, ``outcomes``, ``settings``,
``notify``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from model_manager.cli.calls import call, echo_json, json_arg
from model_manager.cli.tables import format_table


@click.command()
@click.argument("name")
@click.option("--days", type=click.IntRange(1, 90), default=30, show_default=True)
@click.option("--daily", is_flag=True, help="Also print one row per pair and day.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def shadow(ctx: click.Context, name: str, days: int, daily: bool, as_json: bool) -> None:
    """How NAME's shadow versions compare with the versions that served the same requests."""
    report = call(ctx, "request", "GET", f"/api/models/{name}/shadow", params={"days": days})
    if as_json:
        return echo_json(report)
    headers = ["PRIMARY", "SHADOW", "PAIRS", "ERRORS", "DROPPED", "AGREEMENT", "MEAN_DIFF",
               "MAX_DIFF", "P50_MS", "SHADOW_P50_MS", "P99_MS", "SHADOW_P99_MS"]
    click.echo(format_table(headers, [[p["primary"], p["shadow"], *_pair_row(p)]
                                      for p in report["pairs"]]))
    if daily:
        rows = [[p["primary"], p["shadow"], d["day"], *_pair_row(d)]
                for p in report["pairs"] for d in p["days"]]
        click.echo("\n" + format_table([*headers[:2], "DAY", *headers[2:]], rows))


def _pair_row(stats: dict[str, Any]) -> list[Any]:
    return [stats["pairs"], stats["shadow_errors"], stats["dropped"], _share(stats["agreement"]),
            _num(stats["mean_abs_diff"]), _num(stats["max_abs_diff"]), stats["primary_p50_ms"],
            stats["shadow_p50_ms"], stats["primary_p99_ms"], stats["shadow_p99_ms"]]


@click.group()
def outcomes() -> None:
    """True outcomes of logged predictions, and each version's live accuracy on them."""


@outcomes.command("add")
@click.argument("name")
@click.argument("outcomes_json", metavar="JSON")
@click.pass_context
def outcomes_add(ctx: click.Context, name: str, outcomes_json: str) -> None:
    """Join outcomes to NAME's logged predictions: JSON is `[{"id": ..., "value": ...}]`,
    inline, @file.json, or - for standard input."""
    text = sys.stdin.read() if outcomes_json == "-" else outcomes_json
    body = json_arg(text, "the outcomes")
    result = call(ctx, "request", "POST", f"/api/models/{name}/outcomes", json=body)
    click.echo(f"{name}: {result['matched']} of {result['received']} outcomes matched a logged "
               f"prediction")


@outcomes.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def outcomes_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Live accuracy (labels) or MAE/RMSE (numbers) of NAME's versions, served and shadow."""
    report = call(ctx, "request", "GET", f"/api/models/{name}/outcomes")
    if as_json:
        return echo_json(report)
    rows = [[v["version"], v["role"], v["logged"], v["with_outcome"], _share(v.get("accuracy")),
             _num(v.get("mae")), _num(v.get("rmse"))] for v in report["versions"]]
    click.echo(format_table(["VERSION", "ROLE", "LOGGED", "WITH_OUTCOME", "ACCURACY", "MAE",
                             "RMSE"], rows))


@click.command()
@click.argument("name")
@click.option("--log-rate", type=click.FloatRange(0, 1),
              help="Share of requests logged for outcome joins.")
@click.option("--auto-rollback", metavar="KEY=VALUE,...",
              help="Take a canary route out of traffic when it breaks these, e.g. "
                   "max_error_rate=0.05,max_p99_ms=250,min_requests=200.")
@click.option("--no-auto-rollback", is_flag=True, help="Remove the auto-rollback guard.")
@click.option("--owner", help="The team or person who answers for the model ('' clears it).")
@click.option("--notify", "notify_urls", multiple=True, metavar="URL",
              help="A webhook told of the model's events (repeatable; replaces the targets).")
@click.option("--notify-events", metavar="EVENT,...",
              help="Which events the --notify URLs want. [default: all]")
@click.option("--notify-secret", help="Sign the --notify messages with HMAC-SHA256 and this.")
@click.option("--no-notify", is_flag=True, help="Remove every notify target.")
@click.pass_context
def settings(ctx: click.Context, name: str, log_rate: float | None, auto_rollback: str | None,
             no_auto_rollback: bool, owner: str | None, notify_urls: tuple[str, ...],
             notify_events: str | None, notify_secret: str | None, no_notify: bool) -> None:
    """Show NAME's settings (monitoring, owner, notify targets), or change the ones given."""
    changes: dict[str, Any] = {}
    if log_rate is not None:
        changes["prediction_log_rate"] = log_rate
    if auto_rollback:
        changes["auto_rollback"] = _thresholds(auto_rollback)
    if no_auto_rollback:
        changes["auto_rollback"] = None
    if owner is not None:
        changes["owner"] = owner or None
    if notify_urls:
        target: dict[str, Any] = {"secret": notify_secret}
        if notify_events:
            target["events"] = [e.strip() for e in notify_events.split(",") if e.strip()]
        changes["notify"] = [{"url": url, **target} for url in notify_urls]
    if no_notify:
        changes["notify"] = []
    path = f"/api/models/{name}/settings"
    echo_json(call(ctx, "request", "PATCH", path, json=changes) if changes
              else call(ctx, "request", "GET", path))


def _thresholds(text: str) -> dict[str, float]:
    thresholds: dict[str, float] = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        try:
            thresholds[key.strip()] = int(value) if key.strip() == "min_requests" else float(value)
        except ValueError:
            raise click.BadParameter(f"{item!r}: expected KEY=NUMBER") from None
    return thresholds


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


@click.group()
def notify() -> None:
    """The webhooks that tell a model's owners of its events."""


@notify.command("test")
@click.argument("name")
@click.pass_context
def notify_test(ctx: click.Context, name: str) -> None:
    """Send a test event to every notify target of NAME; prints how each went."""
    result = call(ctx, "request", "POST", f"/api/models/{name}/notifications/test")
    rows = [[n["url"], n["status"], n["last_error"] or ""] for n in result["sent"]]
    click.echo(format_table(["URL", "STATUS", "ERROR"], rows))
    if any(n["status"] != "delivered" for n in result["sent"]):
        sys.exit(1)


@notify.command("log")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def notify_log(ctx: click.Context, name: str, as_json: bool) -> None:
    """The messages sent (or being sent) to NAME's owners, newest first."""
    result = call(ctx, "request", "GET", f"/api/models/{name}/notifications")
    if as_json:
        return echo_json(result)
    rows = [[n["created_at"], n["version"] if n["version"] is not None else "-", n["event"],
             n["url"], n["status"], n["attempts"], n["last_error"] or ""]
            for n in result["notifications"]]
    click.echo(format_table(["AT", "VERSION", "EVENT", "URL", "STATUS", "ATTEMPTS", "ERROR"],
                            rows))


@click.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def drift(ctx: click.Context, name: str, as_json: bool) -> None:
    """How far NAME's live inputs have drifted from each version's reference, by column."""
    report = call(ctx, "request", "GET", f"/api/models/{name}/drift")
    if as_json:
        return echo_json(report)
    rows = []
    for version in report["versions"]:
        reference = version["reference"]
        if reference is None:
            rows.append([version["version"], "-", "-", "-", "-", "-",
                         f"gathering a baseline: {version['baseline_rows']} of "
                         f"{version['baseline_target']} rows"])
            continue
        for column in version["columns"]:
            rows.append([version["version"], column["column"], _num(column["psi"]),
                         _num(column["ks"]), version["live_rows"], reference["rows"],
                         "DRIFTED" if column["drifted"] else
                         ("ok" if version["judged"] else "too few live rows")])
    click.echo(format_table(["VERSION", "COLUMN", "PSI", "KS", "LIVE", "REFERENCE", "STATUS"],
                            rows))


@click.command()
@click.argument("name")
@click.argument("version")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def reference(ctx: click.Context, name: str, version: str, file: Path) -> None:
    """Make FILE (a sample of inputs: .npy, .npz or .csv) the drift reference of NAME VERSION."""
    send_reference(ctx, name, version, file)


def send_reference(ctx: click.Context, name: str, version: str | int, file: Path) -> None:
    if not file.is_file():
        raise click.BadParameter(f"{file} is not a file", param_hint="FILE")
    result = call(ctx, "request", "PUT", f"/api/models/{name}/versions/{version}/reference",
                  params={"filename": file.name}, content=file.read_bytes())
    click.echo(f"{name} version {result['version']}: drift reference of {result['rows']} rows, "
               f"columns {', '.join(result['columns'])}")
