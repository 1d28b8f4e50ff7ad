"""The peers' environment under bench/.peers: venvs, models and wrk, made once and reused.

    venv-mlserver      MLServer 1.7.x + mlserver-sklearn, uvloop 0.21.0, our scikit-learn version
    pylib-httptools    httptools, put on PYTHONPATH only for mlserver-tuned
    venv-floor         uvicorn[standard] + orjson + granian, for the constant-answer floor app
    models/{name}/     model.joblib + model-settings.json (MLServer), model.skops (our server)

Each venv holds a marker with the requirements it was built from; a different list rebuilds it.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

PEERS = Path(__file__).resolve().parent / ".peers"
MODELS = PEERS / "models"
MODEL_NAMES = ("logreg", "rf100")
SKLEARN = importlib.metadata.version("scikit-learn")
# uvloop 0.22+ raises in asyncio.get_event_loop() outside a running loop; MLServer 1.7's
# inference worker calls it at start, dies, and no model ever loads.
MLSERVER_REQUIREMENTS = ("mlserver>=1.7,<1.8", "mlserver-sklearn>=1.7,<1.8", "uvloop==0.21.0",
                         f"scikit-learn=={SKLEARN}")
FLOOR_REQUIREMENTS = ("uvicorn[standard]", "orjson", "granian")
HTTPTOOLS = PEERS / "pylib-httptools"
MARKER = ".requirements.json"


def ensure_all() -> None:
    """Everything the systems need; prints what it builds, skips what is already there."""
    PEERS.mkdir(exist_ok=True)
    ensure_wrk()
    ensure_venv("venv-mlserver", MLSERVER_REQUIREMENTS)
    ensure_venv("venv-floor", FLOOR_REQUIREMENTS)
    ensure_httptools()
    ensure_models()


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    print("installing wrk (apt-get)", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)


def ensure_h2load() -> None:
    """h2load (nghttp2's HTTP/2 load generator), for bench/grpc.py; not part of ensure_all."""
    if shutil.which("h2load"):
        return
    print("installing h2load (apt-get nghttp2-client)", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "nghttp2-client"], check=True)


def ensure_venv(name: str, requirements: tuple[str, ...]) -> Path:
    venv = PEERS / name
    marker = venv / MARKER
    if marker.exists() and json.loads(marker.read_text()) == list(requirements):
        return venv
    print(f"building {venv} ({' '.join(requirements)}); this takes a few minutes", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    pip(venv, "install", "--upgrade", "pip")
    pip(venv, "install", *requirements)
    marker.write_text(json.dumps(list(requirements)))
    return venv


def ensure_httptools() -> None:
    """Kept out of venv-mlserver so mlserver-default runs as `pip install mlserver` leaves it."""
    if (HTTPTOOLS / "httptools").is_dir():
        return
    print(f"installing httptools into {HTTPTOOLS}", flush=True)
    pip(PEERS / "venv-mlserver", "install", "--target", str(HTTPTOOLS), "httptools")


def pip(venv: Path, *args: str) -> None:
    log = PEERS / f"pip-{venv.name}.log"
    with open(log, "a") as out:
        done = subprocess.run([str(venv / "bin" / "pip"), *args], stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"pip {' '.join(args)} failed in {venv}; see {log}")


def ensure_models() -> None:
    """Both models as joblib (MLServer) and skops (our server), made with our scikit-learn."""
    marker = MODELS / MARKER
    if marker.exists() and json.loads(marker.read_text()) == {"scikit-learn": SKLEARN}:
        return
    print(f"making models in {MODELS} with scikit-learn {SKLEARN}", flush=True)
    import joblib
    import numpy as np
    import skops.io
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    x, y = make_classification(n_samples=5000, n_features=20, n_informative=10, random_state=0)
    models = {"logreg": LogisticRegression(max_iter=1000).fit(x, y),
              "rf100": RandomForestClassifier(n_estimators=100, random_state=0).fit(x, y)}
    for name, model in models.items():
        folder = MODELS / name
        folder.mkdir(parents=True, exist_ok=True)
        joblib.dump(model, folder / "model.joblib")
        skops.io.dump(model, folder / "model.skops")
        settings = {"name": name, "implementation": "mlserver_sklearn.SKLearnModel",
                    "parameters": {"uri": "./model.joblib", "version": "v1"}}
        (folder / "model-settings.json").write_text(json.dumps(settings, indent=2))
    np.save(MODELS / "row.npy", x[0])
    marker.write_text(json.dumps({"scikit-learn": SKLEARN}))


def sample_row() -> list[float]:
    """The one row every request sends: the first training sample, 20 FP64 features."""
    import numpy as np

    return [float(v) for v in np.load(MODELS / "row.npy")]


def versions(python: Path, packages: tuple[str, ...], env: dict[str, str] | None = None) -> dict[str, str]:
    """Installed versions of `packages` as seen by `python` (with `env`, e.g. a PYTHONPATH)."""
    code = ("import importlib.metadata as m, json, sys\n"
            "def v(p):\n"
            "    try:\n        return m.version(p)\n"
            "    except m.PackageNotFoundError:\n        return None\n"
            "print(json.dumps({p: v(p) for p in sys.argv[1:]}))")
    out = subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True,
                         env=env, check=True)
    return {k: v for k, v in json.loads(out.stdout).items() if v is not None}


def wrk_version() -> str:
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return (out.stdout or out.stderr).split("[")[0].strip()


def h2load_version() -> str:
    out = subprocess.run(["h2load", "--version"], capture_output=True, text=True)
    return (out.stdout or out.stderr).strip()
