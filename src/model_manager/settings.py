"""Server settings, from ``model-manager serve`` flags and ``MODEL_MANAGER_*`` environment variables.

Precedence: a flag given on the command line, then the environment, then the default.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_manager.devices import parse_device

ENV_PREFIX = "MODEL_MANAGER_"

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4,
    "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3,
    "ti": 1024**4, "tib": 1024**4,
}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*")
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d|)\s*")
_SECONDS = {"ms": 0.001, "": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_size(text: str | int) -> int:
    """Parse a byte size such as ``512MiB``, ``2GB`` or ``1048576``."""
    if isinstance(text, int):
        return text
    match = _SIZE.fullmatch(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use bytes or units such as 512MiB, 2GiB, 100MB)")
    return int(float(match.group(1)) * _UNITS[unit])


def parse_duration(text: str | float) -> float:
    """Parse a duration such as ``30m``, ``10s``, ``1.5h`` or ``0`` into seconds."""
    if isinstance(text, int | float):
        return float(text)
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 500ms, 10s, 30m, 1h, or 0)")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def default_memory_budget() -> int:
    """Half of the memory this process may use: its cgroup's limit where one is set, else RAM."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return min(ram, _cgroup_limit() or ram) // 2


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # v1 reports "no limit" as a huge number
            return int(text)
    return None


def parse_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError(f"not a boolean: {text!r} (use true or false)")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything ``create_app`` needs to build the server."""

    host: str = "127.0.0.1"
    insecure: bool = False
    """Serve on a non-loopback address with no API key (anyone who can reach it may do anything)."""
    port: int = 8080
    grpc_port: int = 8081
    """Port of the gRPC Open Inference Protocol endpoint; 0 turns it off."""
    data_dir: Path = Path("./var")
    db_url: str | None = None
    """SQLAlchemy URL; default: a SQLite file ``registry.db`` in the data dir."""
    store_url: str | None = None
    """Where artifacts live; default: the data dir's ``store/`` folder."""
    allow_pickle: bool = False
    """Accept pickle/joblib files, which run arbitrary code when loaded."""
    allow_custom_code: bool = False
    """Accept Keras models with Lambda layers or custom objects, which run arbitrary code."""
    model_threads: int = 1
    """Intra-op threads each loaded model may use."""
    inference_threads: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    """Predictions that run in worker threads at once, over all models (default: the cores)."""
    device: str = "cpu"
    """Where models run (PyTorch, ONNX, XGBoost, Keras on JAX, text models): ``cpu``, ``cuda``
    or ``cuda:N``. A version's metadata may pin it to ``cpu``."""
    gpu_memory_budget: int | None = None
    """Device bytes that loaded models may hold; default: 90% of the device's free memory at
    start. With several workers, each holds its share."""
    demo: bool = False
    """Register the demo models when the registry is empty."""
    memory_budget: int = dataclasses.field(default_factory=default_memory_budget)
    """Bytes that loaded models may hold in all; least recently used ones are evicted past it."""
    preload: str = ""
    """Comma-separated aliases (e.g. ``production``) whose versions load before the server is ready."""
    idle_unload: float = 0.0
    """Seconds after which an unused model is unloaded; 0 disables."""
    load_wait: float = 10.0
    """Seconds a request waits for room in the budget when every loaded model is busy or pinned."""
    shutdown_timeout: float = 30.0
    """Seconds a SIGTERM waits for requests in flight before the server stops anyway."""
    predict_timeout: float = 30.0
    """Seconds a prediction may run before the caller gets 504."""
    isolate: str = "untrusted"
    """Versions served from a model process of their own: ``untrusted`` (formats that can run
    arbitrary code: pickle/joblib, Keras with custom code allowed), ``all`` or ``none``."""
    model_memory_limit: int | None = None
    """Bytes of memory one model process (an upload's check, an isolated version) may hold
    before it is killed; default: the memory budget, at least 2 GiB."""
    load_timeout: float = 300.0
    """Seconds an upload's check (load, signature, compiled twin, probe) or an isolated load may
    take before its process is killed."""
    usage_flush_interval: float = 5.0
    """Seconds between writes of usage counts to the registry (a crash loses at most this)."""
    probe_interval: float = 300.0
    """Seconds between golden probes of loaded versions; 0 disables (they still run on load)."""
    health_window: float = 300.0
    """Seconds of recent requests that health (and input drift) looks at."""
    drift_baseline: int = 1000
    """Rows of a version's first requests that make its drift reference, when none was given."""
    drift: bool = True
    """Whether live inputs are profiled for drift at all."""
    notify_retry: float = 10.0
    """Seconds before a failed notification is sent again; doubled each time, up to an hour."""
    health_max_error_rate: float = 0.05
    health_max_invalid_rate: float = 0.01
    health_max_p99: float = 1.0
    """Seconds; a version's p99 over the window above this makes it degraded."""
    prediction_log_rate: float = 0.01
    """Default share of requests logged for outcome joins (a model's settings may change it)."""
    prediction_log_rows: int = 100_000
    """Logged predictions each model keeps; the oldest go first."""
    model_concurrency: int = 4
    """Predictions of one version running at once."""
    model_queue: int = 256
    """Requests of one model waiting beyond those running; past them, 429."""
    shadow_queue: int = 64
    """Shadow requests waiting per model; more are dropped."""
    guard_interval: float = 5.0
    """Seconds between auto-rollback checks of canary routes."""
    report_window: float = 7 * 86400.0
    """Seconds of traffic that make a version "in use" in the governance report."""
    stale_after: float = 30 * 86400.0
    """A version with no request for this long is STALE."""
    never_used_grace: float = 7 * 86400.0
    """A version never requested since its upload this long ago is NEVER_USED."""
    idle_after: float = 3600.0
    """A loaded version unused this long is IDLE_IN_MEMORY."""
    purge_after: float = 14 * 86400.0
    """Cleanup deletes the artifacts of versions archived this long ago."""
    cleanup_interval: float = 0.0
    """Seconds between scheduled cleanups (applied); 0 disables."""
    cleanup_notice: float = 7 * 86400.0
    """A scheduled cleanup archives a version this long after it first planned to (and told
    the model's owners: ``cleanup_planned``); 0 archives at once."""
    clock_file: Path | None = None
    """A file holding seconds to add to the server's clock (to try out time-based policies)."""
    max_upload_size: int = 2 * 1024**3
    max_unpacked_size: int | None = None
    """Bytes a zip-based upload may unpack to, from its members' declared sizes; default: 4x
    ``max_upload_size``."""
    max_request_size: int = 64 * 1024**2
    max_inputs: int = 64
    """Input tensors in one infer request."""
    max_tensor_elements: int = 16 * 1024**2
    """Elements of one input tensor."""
    max_bytes_element: int = 1024**2
    """Bytes of one BYTES element."""
    log_level: str = "info"
    workers: int = 1
    """Worker processes serving the port (``auto``: the cores this process may use)."""
    http_server: str = "uvicorn"
    """``uvicorn`` (httptools and uvloop) or ``granian`` (the granian extra)."""

    @property
    def unpacked_limit(self) -> int:
        """``max_unpacked_size``, or its default: 4x the upload limit."""
        return self.max_unpacked_size or 4 * self.max_upload_size

    @property
    def preload_aliases(self) -> list[str]:
        return [alias.strip() for alias in self.preload.split(",") if alias.strip()]

    @property
    def resolved_db_url(self) -> str:
        return self.db_url or f"sqlite:///{(self.data_dir / 'registry.db').resolve()}"

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or str((self.data_dir / "store").resolve())

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None,
             environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from the environment, then ``overrides`` (flags that were given)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if ENV_PREFIX + "TORCH_DEVICE" in environ:  # the earlier name of --device
            values["device"] = environ[ENV_PREFIX + "TORCH_DEVICE"]
        for field in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + field.name.upper())
            if raw is not None:
                values[field.name] = raw
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls(**{name: _coerce(name, value) for name, value in values.items()})


_SIZES = {"memory_budget", "gpu_memory_budget", "max_upload_size", "max_unpacked_size", "max_request_size",
          "model_memory_limit",
          "max_bytes_element"}
_DURATIONS = {"shutdown_timeout", "idle_unload", "load_wait", "predict_timeout", "load_timeout",
              "usage_flush_interval",
              "probe_interval", "health_window", "health_max_p99", "guard_interval",
              "report_window", "stale_after", "never_used_grace", "idle_after", "purge_after",
              "cleanup_interval", "cleanup_notice", "notify_retry"}


def _coerce(name: str, value: Any) -> Any:
    field = {f.name: f for f in dataclasses.fields(Settings)}[name]
    kind = field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
    if name == "workers":
        text = str(value).strip().lower()
        if text == "auto":
            return len(os.sched_getaffinity(0))
        if not text.isdigit():
            raise ValueError(f"--workers takes a number or auto, not {value!r}")
    if name in _SIZES:
        return parse_size(value)
    if name == "device":
        return parse_device(str(value))
    if name in _DURATIONS:
        return parse_duration(value)
    if isinstance(kind, bool):
        return parse_bool(value)
    if isinstance(kind, float):
        return float(value)
    if isinstance(kind, int):
        return int(value)
    if isinstance(kind, Path) or name == "clock_file":
        return Path(value)
    return value
