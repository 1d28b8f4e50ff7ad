"""Models on a CUDA device, within its memory budget. The real server and CLI run on a simulated
device (``tests.fake_device``: its memory is a counter that the context, PyTorch's first use and
each PyTorch model placed there add to, per process) so that the accounting runs everywhere; the
last test runs on a real one, where there is one. ``bench/gpu.py`` is the full check on a GPU."""

from __future__ import annotations

import collections
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import Page, expect

from model_manager import devices
from tests import fake_device
from tests.e2e.test_dashboard import browser, page  # noqa: F401 (fixtures)
from tests.e2e.test_model_cache import metric
from tests.support import CLI, ServerProcess, push

MiB = 1024 * 1024
BUDGET = 8 * MiB
WIDTH = (256, 2048)
"""Each MLP holds 256x2048 + 2048x4 weights and their biases: 2.04 MiB of FP32."""
PARAM_BYTES = (WIDTH[0] * WIDTH[1] + WIDTH[1] + WIDTH[1] * 4 + 4) * 4
MODELS = 6


def has_cuda() -> bool:
    try:
        devices.check_device("cuda:0")
    except devices.NoDevice:
        return False
    return True


def mlp(folder: Path, seed: int) -> tuple[Path, np.ndarray, np.ndarray]:
    """A torch.export MLP with its own weights, sample rows and its answers on the CPU."""
    import torch

    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(*WIDTH), torch.nn.ReLU(),
                              torch.nn.Linear(WIDTH[1], 4)).eval()
    rows = torch.randn(8, WIDTH[0])
    program = torch.export.export(net, (rows,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    path = folder / f"mlp{seed}.pt2"
    torch.export.save(program, str(path))
    with torch.no_grad():
        return path, rows.numpy(), net(rows).numpy()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    folder = tmp_path_factory.mktemp("mlps")
    return [mlp(folder, seed) for seed in range(MODELS)]


@pytest.fixture(scope="module")
def gpu_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("gpu") / "var", "--device", "cuda",
                           "--gpu-memory-budget", "8MiB", "--load-wait", "1s",
                           env=fake_device.ENV)
    yield server
    server.stop()


@pytest.fixture
def client(gpu_server: ServerProcess,
           models: list[tuple[Path, np.ndarray, np.ndarray]]) -> Iterator[httpx.Client]:
    """A client of the server, which holds the six MLPs as mlp0..mlp5."""
    with httpx.Client(base_url=gpu_server.url, timeout=60) as client:
        for i, (path, _, _) in enumerate(models):
            if client.get(f"/api/models/mlp{i}").status_code == 404:
                assert push(client, f"mlp{i}", path).status_code == 201
        yield client


def infer(client: httpx.Client, name: str, rows: np.ndarray, input_name: str = "input"
          ) -> httpx.Response:
    body = {"inputs": [{"name": input_name, "datatype": "FP32", "shape": list(rows.shape),
                        "data": rows.ravel().tolist()}]}
    return client.post(f"/v2/models/{name}/infer", json=body)


def answer(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    output = response.json()["outputs"][0]
    return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])


def device_state(client: httpx.Client) -> dict[str, Any]:
    device = client.get("/api/cache").json()["device"]
    assert device is not None
    return dict(device)


def test_six_models_walk_through_a_device_budget_that_holds_three(
        gpu_server: ServerProcess, client: httpx.Client,
        models: list[tuple[Path, np.ndarray, np.ndarray]]) -> None:
    start = device_state(client)
    assert start["device"] == "cuda:0" and start["name"] == fake_device.NAME
    assert start["budget_bytes"] == BUDGET
    assert start["context_bytes"] == fake_device.CONTEXT_BYTES

    for _ in range(2):
        for i, (_, rows, expected) in enumerate(models):
            np.testing.assert_allclose(answer(infer(client, f"mlp{i}", rows)), expected,
                                       rtol=1e-5, atol=1e-6)
            state = device_state(client)
            assert state["used_bytes"] <= BUDGET
            assert state["process_bytes"] <= BUDGET + state["context_bytes"]

    state = device_state(client)
    # PyTorch's first use of the device is the server's, not the first model's.
    assert state["context_bytes"] == fake_device.CONTEXT_BYTES + fake_device.FIRST_USE_BYTES
    loaded = client.get("/api/cache").json()["loaded"]
    assert [e["device_bytes"] for e in loaded] == [PARAM_BYTES] * 3
    assert state["used_bytes"] == 3 * PARAM_BYTES
    assert state["process_bytes"] == state["context_bytes"] + 3 * PARAM_BYTES
    assert metric(gpu_server, "model_manager_evictions_total") >= 4

    last = client.get("/api/models/mlp5").json()["versions"][0]
    assert (last["state"], last["device"], last["device_bytes"]) == ("READY", "cuda:0", PARAM_BYTES)
    listing = gpu_server.cli("ls", "mlp5").stdout.splitlines()
    assert listing[0].split()[-2:] == ["LOADED", "DEVICE"]
    assert listing[1].endswith("cuda:0 2.0 MiB")
    assert metric(gpu_server, "model_manager_device_memory_budget_bytes") == BUDGET
    assert metric(gpu_server, "model_manager_device_loaded_bytes") == 3 * PARAM_BYTES
    assert metric(gpu_server, "model_manager_device_version_bytes", model="mlp5") == PARAM_BYTES
    assert metric(gpu_server, "model_manager_device_version_bytes", model="mlp0") == 0
    assert metric(gpu_server, "model_manager_device_context_bytes") == state["context_bytes"]
    assert metric(gpu_server, "model_manager_device_process_bytes") == state["process_bytes"]


def test_pinned_models_hold_the_device_and_a_load_that_finds_no_room_is_503(
        client: httpx.Client, models: list[tuple[Path, np.ndarray, np.ndarray]]) -> None:
    for i in (0, 1, 2):
        assert client.put(f"/api/models/mlp{i}/versions/1/pin").status_code == 200
    refused = infer(client, "mlp3", models[3][1])
    assert refused.status_code == 503
    assert "device memory budget" in refused.json()["error"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert client.delete("/api/models/mlp0/versions/1/pin").status_code == 200
    np.testing.assert_allclose(answer(infer(client, "mlp3", models[3][1])), models[3][2],
                               rtol=1e-5, atol=1e-6)
    loaded = {e["model"] for e in client.get("/api/cache").json()["loaded"]}
    assert loaded == {"mlp1", "mlp2", "mlp3"}
    for i in (1, 2):
        client.delete(f"/api/models/mlp{i}/versions/1/pin")


def xgboost_model(folder: Path) -> tuple[Path, str, np.ndarray]:
    import xgboost

    x = np.random.default_rng(0).random((200, 4), dtype=np.float32)
    path = folder / "xgb.ubj"
    xgboost.XGBClassifier(n_estimators=5).fit(x, (x[:, 0] > 0.5).astype(int)).save_model(path)
    return path, "input", x[:3]


def keras_model(folder: Path) -> tuple[Path, str, np.ndarray]:
    os.environ["KERAS_BACKEND"] = "jax"
    import keras

    inputs = keras.Input(shape=(4,), name="x")
    path = folder / "tiny.keras"
    keras.Model(inputs, keras.layers.Dense(2, name="y")(inputs)).save(path)
    return path, "x", np.ones((3, 4), dtype=np.float32)


@pytest.mark.parametrize(("name", "build", "says"), [
    ("onnx", None, "install ml-model-manager[gpu], which brings onnxruntime-gpu"),
    ("xgboost", xgboost_model, "install the xgboost package (the CUDA build)"),
    ("keras", keras_model, "install its CUDA plugin"),
])
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
def test_a_runtime_this_machine_cannot_run_on_the_device_says_so_unless_pinned_to_the_cpu(
        client: httpx.Client, iris: Any, tmp_path: Path, name: str,
        build: Callable[[Path], tuple[Path, str, np.ndarray]] | None, says: str) -> None:
    path, input_name, rows = (iris.onnx, "input", iris.x.astype(np.float32)) if build is None \
        else build(tmp_path)
    assert push(client, f"{name}-gpu", path).status_code == 201
    refused = infer(client, f"{name}-gpu", rows, input_name)
    assert refused.status_code == 503
    assert says in refused.json()["error"]
    assert client.get(f"/api/models/{name}-gpu").json()["versions"][0]["device"] == "cuda:0"

    pinned = push(client, f"{name}-cpu", path, metadata=json.dumps({"device": "cpu"}))
    assert pinned.status_code == 201
    assert infer(client, f"{name}-cpu", rows, input_name).status_code == 200
    version = client.get(f"/api/models/{name}-cpu").json()["versions"][0]
    assert (version["device"], version["device_bytes"]) == ("cpu", 0)


def test_what_has_no_gpu_runtime_stays_on_the_cpu_and_only_cpu_can_be_pinned(
        client: httpx.Client, iris: Any) -> None:
    # scikit-learn has no GPU runtime: its versions stay on the CPU without being told.
    assert push(client, "iris-skops", iris.skops).status_code == 201
    assert client.get("/api/models/iris-skops").json()["versions"][0]["device"] == "cpu"
    wrong = push(client, "iris-x", iris.onnx, metadata=json.dumps({"device": "cuda"}))
    assert wrong.status_code == 400
    assert "may only pin a version to 'cpu'" in wrong.json()["error"]


def test_the_memory_page_shows_the_device_budget_and_each_versions_share(
        gpu_server: ServerProcess, client: httpx.Client, page: Page,  # noqa: F811
        models: list[tuple[Path, np.ndarray, np.ndarray]]) -> None:
    for i in (3, 4, 5):
        assert infer(client, f"mlp{i}", models[i][1]).status_code == 200
    cache = client.get("/api/cache").json()
    on_device = [e for e in cache["loaded"] if e["device_bytes"]]
    on_cpu = [e["model"] for e in cache["loaded"] if not e["device_bytes"]]
    assert len(on_device) == 3
    page.goto(f"{gpu_server.url}/#/memory")
    expect(page.locator("[data-memory=device]")).to_contain_text(
        f"6.1 MiB of 8.0 MiB used (76.5%) · {len(on_device)} versions loaded")
    expect(page.locator("[data-memory=device-process]")).to_contain_text(
        "the server's own 308 MiB (CUDA context")
    expect(page.get_by_role("img", name="device memory budget and the loaded versions' shares")
           .locator("rect.segment")).to_have_count(len(on_device))
    expect(page.locator('table.loaded tr[data-model="mlp3"] [data-column=device]')).to_have_text(
        "2.0 MiB")
    for model in on_cpu:  # the versions pinned to the CPU by the tests before
        expect(page.locator(f'table.loaded tr[data-model="{model}"] [data-column=device]')
               ).to_have_text("—")


def test_each_worker_holds_its_share_of_the_device_budget_and_its_own_context(
        tmp_path: Path, models: list[tuple[Path, np.ndarray, np.ndarray]]) -> None:
    server = ServerProcess(tmp_path / "var", "--workers", "2", "--device", "cuda",
                           "--gpu-memory-budget", "8MiB", env=fake_device.ENV)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for i in (0, 1, 2):
                assert push(client, f"mlp{i}", models[i][0]).status_code == 201
            for _ in range(4):  # each request lands on either worker
                for i in (0, 1, 2):
                    np.testing.assert_allclose(answer(infer(client, f"mlp{i}", models[i][1])),
                                               models[i][2], rtol=1e-5, atol=1e-6)
            cache = client.get("/api/cache").json()
        device = cache["device"]
        assert device["budget_bytes"] == BUDGET  # two shares of 4 MiB
        assert device["context_bytes"] >= 2 * fake_device.CONTEXT_BYTES  # one context each
        held: dict[int, int] = collections.Counter()
        for entry in cache["loaded"]:
            held[entry["worker_pid"]] += entry["device_bytes"]
        assert held and all(size <= BUDGET // 2 for size in held.values())  # 4 MiB holds one
        assert sum(held.values()) == device["used_bytes"]
        assert metric(server, "model_manager_device_memory_budget_bytes") == BUDGET
        assert metric(server, "model_manager_device_loaded_bytes") == device["used_bytes"]
    finally:
        server.stop()


def test_a_device_that_is_not_there_stops_the_server_with_the_reason(tmp_path: Path) -> None:
    if has_cuda():
        pytest.skip("a CUDA device is present here")
    result = subprocess.run([CLI, "serve", "--device", "cuda:0", "--data-dir", str(tmp_path),
                             "--port", "0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "--device cuda:0:" in result.stderr
    earlier_name = subprocess.run([CLI, "serve", "--torch-device", "cuda", "--data-dir",
                                   str(tmp_path), "--port", "0"], capture_output=True, text=True,
                                  timeout=60)
    assert (earlier_name.returncode, earlier_name.stderr) == (1, result.stderr)
    bad = subprocess.run([CLI, "serve", "--device", "tpu", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert "not a device: 'tpu' (cpu, cuda or cuda:N)" in bad.stderr


@pytest.mark.skipif(not has_cuda(), reason="no CUDA device here")
def test_a_real_device_serves_the_same_answers_and_accounts_its_memory(
        tmp_path: Path, models: list[tuple[Path, np.ndarray, np.ndarray]]) -> None:
    server = ServerProcess(tmp_path / "var", "--device", "cuda")
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            path, rows, expected = models[0]
            assert push(client, "mlp", path).status_code == 201
            np.testing.assert_allclose(answer(infer(client, "mlp", rows)), expected,
                                       rtol=1e-4, atol=1e-5)
            version = client.get("/api/models/mlp").json()["versions"][0]
            assert version["device"] == "cuda:0"
            assert version["device_bytes"] >= PARAM_BYTES
            assert device_state(client)["context_bytes"] > 0
    finally:
        server.stop()
