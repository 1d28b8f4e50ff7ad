"""Models on a CUDA device: correctness of each runtime, the device memory budget, and speed.

Runs the real server with ``--device cuda`` three ways, in well under 8 minutes on one H100:

1. **Correctness.** Each runtime that can use the device (PyTorch, onnxruntime's CUDA provider,
   XGBoost, Keras on JAX where JAX has its CUDA plugin) serves one model twice: as uploaded (on
   the device) and pinned to the CPU by its metadata. The answers must agree, and the device copy
   must show device bytes in ``GET /api/models/{name}``.
2. **The six-models walk.** Six distinct MLPs of ~128 MiB each, requested in turn twice with
   ``--gpu-memory-budget 512MiB``. Goal: the process's device memory (NVML, read here) stays
   within budget + the server's own bytes (context) + 10%, at least 4 evictions, every answer
   equal to PyTorch's on the CPU.
3. **Speed.** An MLP of ~100 MiB at batch 256, binary tensors through tritonclient: p50/p99 at
   one connection and requests/s at eight, on the device and pinned to the CPU, same server.

Prints each figure, then appends one JSON line to bench/results/gpu.jsonl.

Set-up on the GPU machine (onnxruntime-gpu must replace onnxruntime, which owns the same module;
where the machine has no package index, give pip a folder of wheels with ``--no-index
--find-links``)::

    python -m venv .venv-gpu
    .venv-gpu/bin/pip install -e '.[gpu,torch,demo]' xgboost 'tritonclient[http]'
    .venv-gpu/bin/pip uninstall -y onnxruntime
    .venv-gpu/bin/pip install --force-reinstall --no-deps onnxruntime-gpu
    .venv-gpu/bin/python bench/gpu.py [--keras]   # --keras: also Keras on JAX (pip 'jax[cuda12]' keras)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.onnx_models import matmul_chain_model  # noqa: E402
from tests.support import ServerProcess, push  # noqa: E402

MiB = 1024 * 1024
WALK_WIDTH = (4096, 8192)
"""4096x8192 + 8192x8 FP32 weights: 128.3 MiB per walked model."""
BIG_WIDTH = (1024, 4096, 4096, 1000)
"""The speed model's layers: 25.2 M parameters, 96 MiB."""
BATCH = 256


# ---- models ----------------------------------------------------------------------------------

def torch_mlp(path: Path, widths: tuple[int, ...], seed: int, rows: int = 8
              ) -> tuple[Path, np.ndarray, np.ndarray]:
    import torch

    torch.manual_seed(seed)
    layers: list[Any] = []
    for a, b in itertools.pairwise(widths):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers[:-1]).eval()
    x = torch.randn(rows, widths[0])
    program = torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(path))
    with torch.no_grad():
        return path, x.numpy(), net(x).numpy()


def xgboost_model(path: Path) -> tuple[Path, np.ndarray]:
    import xgboost

    rng = np.random.default_rng(0)
    x = rng.random((2000, 20), dtype=np.float32)
    y = (x[:, 0] + x[:, 1] > 1).astype(int)
    xgboost.XGBClassifier(n_estimators=50, max_depth=4).fit(x, y).save_model(path)
    return path, x[:64]


def keras_model(path: Path) -> tuple[Path, np.ndarray]:
    os.environ["KERAS_BACKEND"] = "jax"
    import keras

    inputs = keras.Input(shape=(64,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(8, name="y")(
        keras.layers.Dense(256, activation="relu")(inputs)))
    model.save(path)
    return path, np.random.default_rng(0).random((16, 64), dtype=np.float32)


# ---- calls -----------------------------------------------------------------------------------

def infer(client: httpx.Client, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    body = {"inputs": [{"name": key, "datatype": "FP32", "shape": list(value.shape),
                        "data": value.ravel().tolist()} for key, value in inputs.items()]}
    response = client.post(f"/v2/models/{name}/infer", json=body)
    response.raise_for_status()
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in response.json()["outputs"]}


def input_name(client: httpx.Client, name: str) -> str:
    return str(client.get(f"/v2/models/{name}").json()["inputs"][0]["name"])


def device_bytes(client: httpx.Client, name: str) -> tuple[str, int]:
    version = client.get(f"/api/models/{name}").json()["versions"][0]
    return version["device"], int(version["device_bytes"] or 0)


def nvml_process_bytes(pid: int) -> int:
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    for process in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
        if process.pid == pid:
            return int(process.usedGpuMemory or 0)
    return 0


# ---- the three checks ------------------------------------------------------------------------

def correctness(client: httpx.Client, folder: Path, with_keras: bool) -> dict[str, Any]:
    """Each runtime on the device against the same artifact pinned to the CPU."""
    cases: list[tuple[str, Path, np.ndarray]] = []
    path, x, _ = torch_mlp(folder / "torch.pt2", (64, 256, 8), seed=1)
    cases.append(("torch", path, x))
    onnx_path = matmul_chain_model(folder / "chain.onnx", width=256, layers=4)
    cases.append(("onnx", onnx_path, np.random.default_rng(1).random((16, 256), dtype=np.float32)))
    cases.append(("xgboost", *xgboost_model(folder / "xgb.ubj")))
    if with_keras:
        cases.append(("keras", *keras_model(folder / "model.keras")))
    results: dict[str, Any] = {}
    for name, artifact, rows in cases:
        for suffix, metadata in (("", {}), ("-cpu", {"device": "cpu"})):
            response = push(client, name + suffix, artifact, metadata=json.dumps(metadata))
            assert response.status_code == 201, response.text
        feed = {input_name(client, name): rows}
        try:
            on_device, on_cpu = infer(client, name, feed), infer(client, name + "-cpu", feed)
        except httpx.HTTPStatusError as exc:
            results[name] = {"error": exc.response.text}
            print(f"  {name:8s} FAILED on the device: {exc.response.text}")
            continue
        worst = max(float(np.max(np.abs(on_device[k].astype(np.float64)
                                        - on_cpu[k].astype(np.float64)))) for k in on_cpu)
        device, held = device_bytes(client, name)
        results[name] = {"max_abs_diff": worst, "device": device, "device_bytes": held}
        print(f"  {name:8s} on {device}: max |device - cpu| = {worst:.2e}, "
              f"{held / MiB:.1f} MiB on the device")
    return results


def walk(client: httpx.Client, server: ServerProcess, folder: Path) -> dict[str, Any]:
    models = [torch_mlp(folder / f"walk{i}.pt2", WALK_WIDTH, seed=10 + i) for i in range(6)]
    for i, (path, _, _) in enumerate(models):
        assert push(client, f"walk{i}", path).status_code == 201
    peak, worst, correct = 0, 0.0, True
    for _ in range(2):
        for i, (_, x, expected) in enumerate(models):
            got = infer(client, f"walk{i}", {input_name(client, f"walk{i}"): x})
            difference = float(np.max(np.abs(next(iter(got.values())) - expected)))
            worst = max(worst, difference)
            correct &= difference < 1e-3
            peak = max(peak, nvml_process_bytes(server.process.pid))
    cache = client.get("/api/cache").json()
    device = cache["device"]
    budget, context = device["budget_bytes"], device["context_bytes"]
    evictions = sum(1 for e in cache["events"] if e["event"] == "evict")
    limit = (budget + context) * 1.1
    print(f"  budget {budget / MiB:.0f} MiB, server's own {context / MiB:.0f} MiB, "
          f"peak process {peak / MiB:.0f} MiB (goal <= {limit / MiB:.0f}): "
          f"{'met' if peak <= limit else 'MISSED'}")
    print(f"  evictions {evictions} (goal >= 4), answers within {worst:.1e} of the CPU's: "
          f"{'all correct' if correct else 'WRONG'}")
    return {"budget_bytes": budget, "context_bytes": context, "peak_process_bytes": peak,
            "goal_bytes": limit, "evictions": evictions, "correct": correct,
            "max_abs_diff": worst}


def speed(server: ServerProcess, client: httpx.Client, folder: Path, seconds: float
          ) -> dict[str, Any]:
    import tritonclient.http as triton

    path, _, _ = torch_mlp(folder / "big.pt2", BIG_WIDTH, seed=99)
    assert push(client, "big", path).status_code == 201
    assert push(client, "big-cpu", path, metadata=json.dumps({"device": "cpu"})).status_code == 201
    x = np.random.default_rng(0).random((BATCH, BIG_WIDTH[0]), dtype=np.float32)
    metadata = client.get("/v2/models/big").json()
    tensor = triton.InferInput(metadata["inputs"][0]["name"], list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    wanted = [triton.InferRequestedOutput(metadata["outputs"][0]["name"], binary_data=True)]
    address = server.url.removeprefix("http://")

    def calls(name: str, until: float) -> list[float]:
        """Latencies of back-to-back calls on one connection until ``until``."""
        own = triton.InferenceServerClient(address)
        latencies = []
        while time.monotonic() < until:
            started = time.perf_counter()
            own.infer(name, [tensor], outputs=wanted)
            latencies.append(time.perf_counter() - started)
        return latencies

    results: dict[str, Any] = {}
    for name in ("big", "big-cpu"):
        calls(name, time.monotonic() + 2)  # load and warm
        latencies = calls(name, time.monotonic() + seconds)
        p50, p99 = (statistics.quantiles(latencies, n=100)[i] * 1000 for i in (49, 98))
        until = time.monotonic() + seconds
        with ThreadPoolExecutor(8) as pool:
            rate = sum(map(len, pool.map(calls, [name] * 8, [until] * 8))) / seconds
        results[name] = {"p50_ms": p50, "p99_ms": p99, "requests_per_s_c8": rate}
        print(f"  {name:8s} batch {BATCH}: p50 {p50:.2f} ms, p99 {p99:.2f} ms at 1 connection; "
              f"{rate:.0f} req/s at 8")
    results["speedup_p50"] = results["big-cpu"]["p50_ms"] / results["big"]["p50_ms"]
    results["speedup_throughput"] = (results["big"]["requests_per_s_c8"]
                                     / results["big-cpu"]["requests_per_s_c8"])
    print(f"  on the device: {results['speedup_p50']:.1f}x faster at p50, "
          f"{results['speedup_throughput']:.1f}x the requests/s at 8 connections")
    return results


def versions() -> dict[str, str]:
    found = {}
    for module in ("torch", "onnxruntime", "xgboost", "jax", "keras", "pynvml"):
        try:
            found[module] = str(__import__(module).__version__)
        except (ImportError, AttributeError):
            found[module] = "-"
    import pynvml

    pynvml.nvmlInit()
    found["gpu"] = str(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0)))
    found["driver"] = str(pynvml.nvmlSystemGetDriverVersion())
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="per speed measurement")
    parser.add_argument("--keras", action="store_true", help="also Keras on JAX")
    args = parser.parse_args()
    found = versions()
    print("  ".join(f"{k} {v}" for k, v in found.items()))
    record: dict[str, Any] = {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), **found}
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        server = ServerProcess(folder / "a", "--device", "cuda", "--gpu-memory-budget", "4GiB",
                               "--memory-budget", "8GiB")
        try:
            with httpx.Client(base_url=server.url, timeout=300) as client:
                print("correctness, device vs cpu:")
                record["correctness"] = correctness(client, folder, args.keras)
                print("speed:")
                record["speed"] = speed(server, client, folder, args.seconds)
        finally:
            server.stop()
        server = ServerProcess(folder / "b", "--device", "cuda", "--gpu-memory-budget", "512MiB",
                               "--memory-budget", "8GiB")
        try:
            with httpx.Client(base_url=server.url, timeout=300) as client:
                print("six models of 128 MiB through a 512 MiB device budget:")
                record["walk"] = walk(client, server, folder)
        finally:
            server.stop()
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    with open(results / "gpu.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
