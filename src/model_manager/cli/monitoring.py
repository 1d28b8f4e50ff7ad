"""Verbs that watch staged versions: ``shadow``, ``outcomes``, ``settings``."""

from __future__ import annotations

import sys
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
@click.pass_context
def settings(ctx: click.Context, name: str, log_rate: float | None, auto_rollback: str | None,
             no_auto_rollback: bool) -> None:
    """Show NAME's monitoring settings, or change the ones given."""
    changes: dict[str, Any] = {}
    if log_rate is not None:
        changes["prediction_log_rate"] = log_rate
    if auto_rollback:
        changes["auto_rollback"] = _thresholds(auto_rollback)
    if no_auto_rollback:
        changes["auto_rollback"] = None
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
