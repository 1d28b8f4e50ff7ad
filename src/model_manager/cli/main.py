"""The ``model-manager`` command. Every verb but ``serve`` talks to a running server over HTTP."""

from __future__ import annotations

import logging
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import click

from model_manager import scheduling
from model_manager.cli import doctor, examples, governance, keys, monitoring
from model_manager.cli.calls import Target, call, echo_json, json_arg
from model_manager.cli.client import DEFAULT_URL
from model_manager.cli.tables import format_table
from model_manager.sizes import human_size
from model_manager.workers import MAX_WORKERS

log = logging.getLogger("model_manager.cli")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="MODEL_MANAGER_URL", default=DEFAULT_URL, show_default=True,
              help="The server to talk to.")
@click.option("--api-key", envvar="MODEL_MANAGER_API_KEY",
              help="The API key to send, once the server has keys.")
@click.version_option(package_name="ml-model-manager")
@click.pass_context
def cli(ctx: click.Context, url: str, api_key: str | None) -> None:
    """Serve many ML models over the Open Inference Protocol, and govern them."""
    ctx.obj = Target(url, api_key)


def main() -> None:
    cli(prog_name="model-manager")


@cli.command()
@click.option("--host", help="Address to bind. [default: 127.0.0.1]")
@click.option("--port", type=int, help="Port to listen on. [default: 8080]")
@click.option("--grpc-port", type=int,
              help="Port of the gRPC inference endpoint; 0 turns it off. [default: 8081]")
@click.option("--insecure/--no-insecure", default=None,
              help="Allow a non-loopback --host while no API key exists. [default: off]")
@click.option("--data-dir", type=click.Path(path_type=Path),
              help="Holds the SQLite registry and the local store. [default: ./var]")
@click.option("--db-url", help="SQLAlchemy database URL. [default: SQLite in the data dir]")
@click.option("--store-url", help="Artifact store: a folder. [default: <data-dir>/store]")
@click.option("--allow-pickle/--no-allow-pickle", default=None,
              help="Accept pickle/joblib models, which can run code when loaded. [default: off]")
@click.option("--allow-custom-code/--no-allow-custom-code", default=None,
              help="Accept Keras Lambda layers and custom objects. [default: off]")
@click.option("--model-threads", type=int, help="Intra-op threads per loaded model. [default: 1]")
@click.option("--inference-threads", type=int,
              help="Predictions running in worker threads at once. [default: the cores]")
@click.option("--device", "--torch-device", "device",
              help="Where models run that can run on a GPU (PyTorch, ONNX, XGBoost, Keras on "
                   "JAX, text models): cpu, cuda or cuda:N. [default: cpu]")
@click.option("--gpu-memory-budget",
              help="Device bytes loaded models may hold, e.g. 20GiB. [default: 90% of the "
                   "device's free memory at start]")
@click.option("--demo/--no-demo", default=None,
              help="Register the demo models when the registry is empty. [default: off]")
@click.option("--memory-budget",
              help="Bytes loaded models may hold, e.g. 512MiB, 2GiB. [default: half the memory "
                   "the process may use]")
@click.option("--preload", help="Comma-separated aliases (e.g. production) to load before ready.")
@click.option("--idle-unload", help="Unload models unused this long, e.g. 30m; 0 disables. [default: 0]")
@click.option("--load-wait", help="How long a load waits for room in the budget. [default: 10s]")
@click.option("--shutdown-timeout", help="How long SIGTERM waits for requests in flight. "
              "[default: 30s]")
@click.option("--predict-timeout", help="Longest a prediction may run (504 after). [default: 30s]")
@click.option("--isolate", type=click.Choice(["untrusted", "all", "none"]),
              help="Versions served from a model process of their own: untrusted (pickle, "
                   "Keras custom code), all or none. [default: untrusted]")
@click.option("--model-memory-limit",
              help="Memory one model process may hold before it is killed. [default: the "
                   "memory budget, at least 2GiB]")
@click.option("--load-timeout", help="Longest an upload's check or an isolated load may take. "
              "[default: 5m]")
@click.option("--usage-flush-interval", help="How often usage counts are saved. [default: 5s]")
@click.option("--probe-interval", help="How often loaded versions' golden probes run. [default: 5m]")
@click.option("--health-window", help="Recent requests health looks at. [default: 5m]")
@click.option("--health-max-error-rate", type=float, help="Degraded above this. [default: 0.05]")
@click.option("--health-max-invalid-rate", type=float, help="Degraded above this. [default: 0.01]")
@click.option("--health-max-p99", help="Degraded when p99 is above this, e.g. 500ms. [default: 1s]")
@click.option("--prediction-log-rate", type=float,
              help="Share of requests logged for outcome joins. [default: 0.01]")
@click.option("--drift/--no-drift", default=None, help="Profile live inputs and outputs for "
              "drift. [default: on]")
@click.option("--notify-retry", help="First wait before a failed notification is sent again; "
              "it doubles each time, up to an hour. [default: 10s]")
@click.option("--drift-baseline", type=int, help="Rows of a version's first requests that make "
              "its input drift reference when none was uploaded. [default: 1000]")
@click.option("--prediction-log-rows", type=int, help="Logged predictions kept per model. "
              "[default: 100000]")
@click.option("--model-concurrency", type=int,
              help="Predictions of one version running at once. [default: 4]")
@click.option("--model-queue", type=int,
              help="Requests of one model waiting beyond those; past them, 429. [default: 256]")
@click.option("--shadow-queue", type=int, help="Shadow requests waiting per model. [default: 64]")
@click.option("--guard-interval", help="How often canary routes are checked for auto-rollback. "
              "[default: 5s]")
@click.option("--report-window", help="Traffic that makes a version in use. [default: 7d]")
@click.option("--stale-after", help="No request for this long: STALE. [default: 30d]")
@click.option("--never-used-grace", help="Unused this long after upload: NEVER_USED. [default: 7d]")
@click.option("--idle-after", help="Loaded and unused this long: IDLE_IN_MEMORY. [default: 1h]")
@click.option("--purge-after", help="Cleanup purges versions archived this long. [default: 14d]")
@click.option("--cleanup-notice", help="How long a scheduled cleanup waits, after telling the "
              "model's owners, before it archives a version. [default: 7d]")
@click.option("--cleanup-interval", help="Run (and apply) cleanup this often; 0 disables. "
              "[default: 0]")
@click.option("--clock-file", type=click.Path(path_type=Path),
              help="A file with seconds to add to the server's clock, to try time-based policies.")
@click.option("--max-upload-size", help="Largest model upload, e.g. 2GiB. [default: 2GiB]")
@click.option("--max-unpacked-size",
              help="Largest size a zip-based upload may unpack to. [default: 4x --max-upload-size]")
@click.option("--max-request-size", help="Largest other request body. [default: 64MiB]")
@click.option("--max-inputs", type=int, help="Input tensors in one infer request. [default: 64]")
@click.option("--max-tensor-elements", type=int,
              help="Elements of one input tensor. [default: 16777216]")
@click.option("--max-bytes-element", help="Bytes of one BYTES element. [default: 1MiB]")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--workers", help="Worker processes serving the port, sharing one memory budget, "
              "one registry and one view; a number or auto (the cores). [default: 1]")
@click.option("--http-server", type=click.Choice(["uvicorn", "granian"]),
              help="The HTTP server: uvicorn (httptools, uvloop) or granian. [default: uvicorn]")
def serve(**flags: Any) -> None:
    """Run the server. Each flag can also be set as MODEL_MANAGER_<FLAG> in the environment."""
    from model_manager.settings import ENV_PREFIX, Settings

    try:
        settings = Settings.load(flags)
    except (TypeError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    if not 1 <= settings.workers <= MAX_WORKERS:
        raise click.UsageError(f"--workers takes 1 to {MAX_WORKERS}, not {settings.workers}")
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    scheduling.batch_all_threads()
    if settings.device != "cpu":
        _check_device(settings.device)
    if settings.http_server == "granian" or settings.workers > 1:
        for name, value in flags.items():  # the worker builds its settings from the environment
            if value is not None:
                os.environ[ENV_PREFIX + name.upper()] = str(value)
    if settings.http_server == "granian":
        if settings.workers > 1:
            raise click.UsageError("--workers runs on uvicorn; leave out --http-server granian")
        _serve_granian(settings)
        return
    import uvicorn

    from model_manager.api.http import HttpProtocol
    from model_manager.app import create_app

    if settings.workers > 1:
        _serve_workers(settings)
        return

    # uvicorn stops on SIGTERM (no new connections, requests in flight finish, the lifespan
    # flushes usage), then raises the signal again; this handler makes that a clean exit 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    # Idle connections stay open 75 s, longer than a load balancer's (an ALB's is 60 s) or a
    # client pool's idle timeout: the side that closes first must be the client, or a request
    # sent on a connection the server is closing fails (a 502 behind an ALB).
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, http=HttpProtocol,
                log_level=settings.log_level, access_log=False, proxy_headers=False,
                timeout_keep_alive=75,
                timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout)))


def _check_device(device: str) -> None:
    from model_manager import devices

    try:
        devices.check_device(device)
    except devices.NoDevice as exc:
        raise click.ClickException(f"--device {device}: {exc}") from None


def _serve_workers(settings: Any) -> None:
    """Migrate and register the demo once, then let uvicorn's supervisor run the workers: it
    replaces one that dies, and on SIGTERM each finishes what is in flight and flushes usage."""
    import uvicorn

    from model_manager import workers
    from model_manager.api.http import HttpProtocol
    from model_manager.app import prepare_registry

    run = workers.prepare(settings.workers)
    prepare_registry(settings)
    log.info("serving with %d worker processes (run folder %s)", settings.workers, run)
    try:
        uvicorn.run("model_manager.app:app_from_environment", factory=True,
                    workers=settings.workers, host=settings.host, port=settings.port,
                    http=HttpProtocol, log_level=settings.log_level, access_log=False,
                    proxy_headers=False, timeout_keep_alive=75,
                    timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout)))
    finally:
        shutil.rmtree(run, ignore_errors=True)


def _serve_granian(settings: Any) -> None:
    try:
        from granian.constants import Interfaces, Loops
        from granian.server import Server
    except ImportError:
        raise click.UsageError("granian is not installed: pip install "
                               "'ml-model-manager[granian]'") from None
    Server("model_manager.app:app_from_environment", address=settings.host, port=settings.port,
           interface=Interfaces.ASGI, workers=1, runtime_threads=1, loop=Loops.uvloop,
           factory=True, log_access=False).serve()


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Model name; created on its first push.")
@click.option("--format", "fmt", help="onnx or sklearn. [default: from the file]")
@click.option("--metadata", help="JSON object, or @file.json (may hold a 'signature').")
@click.option("--alias", help="Point this alias (e.g. production) at the new version.")
@click.option("--compile/--no-compile", "compile_twin", default=True, show_default=True,
              help="Serve a scikit-learn model through its ONNX twin when that answers the same.")
@click.option("--reference", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A sample of inputs (.npy, .npz or .csv) that input drift is measured against.")
@click.pass_context
def push(ctx: click.Context, file: Path, name: str, fmt: str | None, metadata: str | None,
         alias: str | None, compile_twin: bool, reference: Path | None) -> None:
    """Upload FILE as the next version of a model."""
    if metadata and metadata.startswith("@"):
        metadata = Path(metadata[1:]).read_text()
    version = call(ctx, "push", name, file, fmt, metadata, compile_twin)
    compiled = version["metadata"].get("compiled")
    served = "" if compiled is None else (
        ", served compiled to ONNX" if compiled.get("format") else
        f", not compiled: {compiled.get('reason')}")
    click.echo(f"pushed {name} version {version['version']} "
               f"({version['format']}, sha256 {version['sha256'][:12]}{served})")
    if reference is not None:
        monitoring.send_reference(ctx, name, version["version"], reference)
    if alias:
        call(ctx, "request", "PUT", f"/api/models/{name}/aliases/{alias}",
              json={"version": version["version"]})
        click.echo(f"{name}@{alias} -> {version['version']}")


@cli.command("ls")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """List models, or the versions of model NAME."""
    if name is None:
        models = call(ctx, "request", "GET", "/api/models")
        if as_json:
            return echo_json(models)
        rows = [[m["name"], m["latest_version"], m["version_count"],
                 _aliases(m["aliases"])] for m in models]
        return click.echo(format_table(["MODEL", "LATEST", "VERSIONS", "ALIASES"], rows))
    model = call(ctx, "request", "GET", f"/api/models/{name}")
    if as_json:
        return echo_json(model)
    rows = [[v["version"], v["format"], human_size(v["size"]), v["sha256"][:12],
             v["created_at"][:19], ",".join(v["aliases"]), _state(v),
             human_size(v["loaded_bytes"]) if v["loaded_bytes"] else ""]
            for v in model["versions"]]
    headers = ["VERSION", "FORMAT", "SIZE", "SHA256", "CREATED", "ALIASES", "STATE", "LOADED"]
    if any(v.get("device", "cpu") != "cpu" for v in model["versions"]):  # a server on a GPU
        headers.append("DEVICE")
        for row, v in zip(rows, model["versions"], strict=True):
            held = f" {human_size(v['device_bytes'])}" if v.get("device_bytes") else ""
            row.append(v["device"] + held)
    click.echo(format_table(headers, rows))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def replicas(ctx: click.Context, as_json: bool) -> None:
    """List the servers sharing the registry: what each holds of its memory budget."""
    fleet = call(ctx, "request", "GET", "/api/replicas")
    if as_json:
        return echo_json(fleet)
    rows = [[r["id"] + (" *" if r["this"] else ""), r["address"], r["started_at"][:19],
             f"{human_size(r['used_bytes'])} / {human_size(r['budget_bytes'])}",
             " ".join(f"{v['model']}:{v['version']}" for v in r["versions"])] for r in fleet]
    click.echo(format_table(["REPLICA", "ADDRESS", "STARTED", "HOLDS", "VERSIONS"], rows))


def _state(version: dict[str, Any]) -> str:
    state = "ARCHIVED" if version["archived"] else version["state"]
    return state + (",PINNED" if version["pinned"] else "")


def _aliases(aliases: dict[str, int]) -> str:
    return " ".join(f"{alias}={number}" for alias, number in aliases.items())


@cli.command()
@click.argument("name")
@click.argument("version", required=False)
@click.pass_context
def show(ctx: click.Context, name: str, version: str | None) -> None:
    """Show a model, or one version (a number or an alias), as JSON."""
    path = f"/api/models/{name}" + (f"/versions/{version}" if version else "")
    echo_json(call(ctx, "request", "GET", path))


@cli.command()
@click.argument("name")
@click.argument("version")
@click.pass_context
def rm(ctx: click.Context, name: str, version: str) -> None:
    """Delete a version that no alias points at."""
    deleted = call(ctx, "request", "DELETE", f"/api/models/{name}/versions/{version}")
    click.echo(f"deleted {name} version {deleted['deleted']['version']}")


@cli.command()
@click.argument("name")
@click.argument("version")
@click.pass_context
def pin(ctx: click.Context, name: str, version: str) -> None:
    """Load VERSION of NAME now and keep it loaded (never evicted)."""
    state = call(ctx, "request", "PUT", f"/api/models/{name}/versions/{version}/pin")
    click.echo(f"pinned {name} version {state['version']} ({human_size(state['loaded_bytes'])} "
               "loaded)")


@cli.command()
@click.argument("name")
@click.argument("version")
@click.pass_context
def unpin(ctx: click.Context, name: str, version: str) -> None:
    """Let VERSION of NAME be evicted or idle-unloaded again."""
    state = call(ctx, "request", "DELETE", f"/api/models/{name}/versions/{version}/pin")
    click.echo(f"unpinned {name} version {state['version']}")


def _version_body(version: str, force: bool) -> dict[str, Any]:
    """The body that moves an alias: a version number, or another alias's name."""
    return {"version": int(version) if version.isdigit() else version, "force": force}


@cli.group()
def alias() -> None:
    """Point names such as production at versions."""


@alias.command("set")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("version")
@click.option("--force", is_flag=True, help="Point production at a version whose probe fails.")
@click.pass_context
def alias_set(ctx: click.Context, name: str, alias_name: str, version: str, force: bool) -> None:
    """Point ALIAS of model NAME at VERSION (a number or another alias)."""
    body = _version_body(version, force)
    result = call(ctx, "request", "PUT", f"/api/models/{name}/aliases/{alias_name}", json=body)
    click.echo(f"{name}@{alias_name} -> {result['version']}")


@alias.command("rm")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.pass_context
def alias_rm(ctx: click.Context, name: str, alias_name: str) -> None:
    """Remove ALIAS from model NAME."""
    call(ctx, "request", "DELETE", f"/api/models/{name}/aliases/{alias_name}")
    click.echo(f"removed {name}@{alias_name}")


@cli.command()
@click.argument("name")
@click.option("--input", "input_", required=True,
              help="The input's data as JSON (a nested list), or @file.json.")
@click.option("--input-name", help="Which input to fill. [default: the model's first]")
@click.option("--version", help="A version number or alias. [default: the model's route]")
@click.option("--grpc", "grpc_address", is_flag=False, flag_value="", default=None,
              metavar="[HOST:PORT]", help="Call the gRPC endpoint instead of REST. [default "
              "address: the --url host, port 8081]")
@click.pass_context
def predict(ctx: click.Context, name: str, input_: str, input_name: str | None,
            version: str | None, grpc_address: str | None) -> None:
    """Predict with model NAME; prints the outputs as JSON."""
    import numpy as np

    data = json_arg(input_, "--input")
    if grpc_address is not None:
        from model_manager.cli import grpc_call

        target: Target = ctx.obj
        echo_json(grpc_call.predict(grpc_call.address_for(target.url, grpc_address),
                                    target.api_key, name, version, input_name, data))
        return
    metadata = call(ctx, "model_metadata", name, version)
    specs = {spec["name"]: spec for spec in metadata["inputs"]}
    spec = specs.get(input_name) if input_name else metadata["inputs"][0]
    if spec is None:
        raise click.BadParameter(f"the model's inputs are {list(specs)}", param_hint="--input-name")
    shape = list(np.asarray(data, dtype=object).shape)
    body = {"inputs": [{"name": spec["name"], "datatype": spec["datatype"], "shape": shape,
                        "data": data}]}
    result = call(ctx, "infer", name, version, body)
    outputs = {o["name"]: np.asarray(o["data"], dtype=object).reshape(o["shape"]).tolist()
               for o in result["outputs"]}
    echo_json({"model_name": result["model_name"], "model_version": result["model_version"],
                "outputs": outputs})


@cli.command()
@click.argument("name")
@click.option("--days", type=click.IntRange(1, 90), default=30, show_default=True)
@click.option("--daily", is_flag=True, help="Also print one row per version and day.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def usage(ctx: click.Context, name: str, days: int, daily: bool, as_json: bool) -> None:
    """Requests, errors by kind, latency percentiles and first/last use of model NAME."""
    report = call(ctx, "request", "GET", f"/api/models/{name}/usage", params={"days": days})
    if as_json:
        return echo_json(report)
    headers = ["VERSION", "REQUESTS", "ERRORS", "P50_MS", "P95_MS", "P99_MS", "FIRST_USED",
               "LAST_USED"]
    rows = [[v["version"], v["requests"], _errors(v), v["p50_ms"], v["p95_ms"], v["p99_ms"],
             v["first_used"] or "never", v["last_used"] or "never"] for v in report["versions"]]
    click.echo(format_table(headers, rows))
    if daily:
        rows = [[v["version"], d["day"], d["requests"], _errors(d), d["p50_ms"], d["p99_ms"]]
                for v in report["versions"] for d in v["days"]]
        click.echo("\n" + format_table(["VERSION", "DAY", "REQUESTS", "ERRORS", "P50_MS",
                                         "P99_MS"], rows))


def _errors(counts: dict[str, Any]) -> str:
    kinds = ",".join(f"{kind}={n}" for kind, n in counts["errors_by_kind"].items() if n)
    return f"{counts['errors']}" + (f" ({kinds})" if kinds else "")


@cli.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def health(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Health of model NAME's versions (or of every model) with the reasons behind it."""
    names = [name] if name else [m["name"] for m in call(ctx, "request", "GET", "/api/models")]
    reports = [call(ctx, "request", "GET", f"/api/models/{n}/health") for n in names]
    if as_json:
        return echo_json(reports if name is None else reports[0])
    rows = [[r["model"], v["version"], v["status"].upper(), v["requests"], v["p99_ms"],
             "; ".join(v["reasons"])] for r in reports for v in r["versions"]]
    click.echo(format_table(["MODEL", "VERSION", "STATUS", "REQUESTS", "P99_MS", "REASONS"], rows))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def formats(ctx: click.Context, as_json: bool) -> None:
    """Model formats the server knows, and whether each is installed there."""
    table = call(ctx, "request", "GET", "/api/formats")
    if as_json:
        return echo_json(table)
    rows = [[f["format"], " ".join(f["suffixes"]), "yes" if f["available"] else "no",
             "" if f["available"] or not f["extra"] else f"install ml-model-manager[{f['extra']}]"]
            for f in table]
    click.echo(format_table(["FORMAT", "FILES", "AVAILABLE", "TO INSTALL"], rows))


@cli.group()
def traffic() -> None:
    """Split a model's traffic among versions (canary) and shadow new ones."""


@traffic.command("set")
@click.argument("name")
@click.argument("routes", nargs=-1, required=True, metavar="VERSION=WEIGHT...")
@click.option("--shadow", "shadows", multiple=True, metavar="VERSION@RATE",
              help="A shadow version and its sample rate, e.g. 5@0.5 (repeatable).")
@click.option("--sticky-key", help="The request parameter that carries the routing key.")
@click.pass_context
def traffic_set(ctx: click.Context, name: str, routes: tuple[str, ...], shadows: tuple[str, ...],
                sticky_key: str | None) -> None:
    """Route NAME's requests by weight, e.g. `traffic set iris 3=90 4=10 --shadow 5@0.5`."""
    body: dict[str, Any] = {"routes": [_pair(r, "=", "weight") for r in routes],
                            "shadows": [_pair(s, "@", "sample_rate") for s in shadows]}
    if sticky_key:
        body["sticky_key"] = sticky_key
    result = call(ctx, "request", "PUT", f"/api/models/{name}/traffic", json=body)
    echo_json(result["policy"])


def _pair(text: str, separator: str, field: str) -> dict[str, Any]:
    version, _, value = text.partition(separator)
    try:
        return {"version": int(version), field: int(value) if field == "weight" else float(value)}
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected VERSION{separator}"
                                 f"{field.upper()}") from None


@traffic.command("show")
@click.argument("name")
@click.pass_context
def traffic_show(ctx: click.Context, name: str) -> None:
    """Show NAME's traffic policy (null: requests follow production)."""
    echo_json(call(ctx, "request", "GET", f"/api/models/{name}/traffic")["policy"])


@traffic.command("clear")
@click.argument("name")
@click.pass_context
def traffic_clear(ctx: click.Context, name: str) -> None:
    """Remove NAME's traffic policy: requests follow production again."""
    call(ctx, "request", "DELETE", f"/api/models/{name}/traffic")
    click.echo(f"{name}: requests follow production")


@cli.command()
@click.argument("name")
@click.argument("version")
@click.option("--force", is_flag=True, help="Promote a version whose golden probe fails.")
@click.pass_context
def promote(ctx: click.Context, name: str, version: str, force: bool) -> None:
    """Point production at VERSION (loaded and warmed first) and end its canary."""
    body = _version_body(version, force)
    result = call(ctx, "request", "POST", f"/api/models/{name}/promote", json=body)
    click.echo(f"{name}@production -> {result['version']}")


@cli.command()
@click.argument("name")
@click.pass_context
def rollback(ctx: click.Context, name: str) -> None:
    """Return production to the version it pointed at before."""
    result = call(ctx, "request", "POST", f"/api/models/{name}/rollback")
    click.echo(f"{name}@production -> {result['version']}")


for command in (monitoring.shadow, monitoring.outcomes, monitoring.settings, monitoring.notify,
                monitoring.drift, monitoring.reference,
                governance.report,
                governance.cleanup, governance.archive, governance.unarchive, keys.keys,
                doctor.doctor):
    cli.add_command(command)
examples.attach(cli)
