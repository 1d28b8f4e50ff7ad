"""A bad model cannot take the server down: uploads are checked in a process of their own, and
models that can run arbitrary code (pickles, with --allow-pickle) are served from one."""

from __future__ import annotations

import faulthandler
import functools
import json
import operator
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from tests.conftest import IrisFiles
from tests.e2e.test_bad_input import assert_nothing_left, error_of, stored_blobs
from tests.e2e.test_model_cache import metric
from tests.support import ServerProcess, eventually, push

IRIS_ROW = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                        "data": [5.1, 3.5, 1.4, 0.2]}]}
TEXT_ROW = {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}
MiB = 1024 * 1024


class SegfaultOnLoad:
    """Unpickling it calls faulthandler._sigsegv: the loader crashes, not raises."""

    def __reduce__(self) -> tuple[Callable[[], None], tuple[()]]:
        return faulthandler._sigsegv, ()


def pipeline(classifier: LogisticRegression, *steps: Callable[..., Any]) -> Pipeline:
    """A text pipeline whose steps call ``steps`` in turn on the request's rows, then classify:
    ``len`` makes the row count an integer for the next step."""
    return Pipeline([*((f"step{i}", FunctionTransformer(step)) for i, step in enumerate(steps)),
                     ("model", classifier)])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("isolated") / "var", "--allow-pickle",
                           "--predict-timeout", "2s", "--model-memory-limit", "256MiB")
    yield server
    server.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def steady(server: ServerProcess, iris: IrisFiles) -> str:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert push(client, "steady", iris.onnx).status_code == 201
    return "steady"


class Clients:
    """``count`` threads predicting with ``steady`` until stopped; every answer is kept."""

    def __init__(self, url: str, model: str, count: int = 8) -> None:
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(url, model)) for _ in range(count)]
        for thread in self._threads:
            thread.start()

    def _run(self, url: str, model: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not self._stop.is_set():
                self.statuses.append(client.post(f"/v2/models/{model}/infer",
                                                 json=IRIS_ROW).status_code)

    def stop(self) -> list[int]:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        return self.statuses


def dumped(folder: Path, name: str, obj: object) -> Path:
    path = folder / f"{name}.joblib"
    joblib.dump(obj, path)
    return path


def version_state(client: httpx.Client, name: str) -> dict[str, Any]:
    return client.get(f"/api/models/{name}").json()["versions"][0]  # type: ignore[no-any-return]


def test_a_loader_that_segfaults_is_refused_at_upload(server: ServerProcess, client: httpx.Client,
                                                      steady: str, tmp_path: Path) -> None:
    blobs_before = stored_blobs(server)
    clients = Clients(server.url, steady)
    try:
        message = error_of(push(client, "crasher", dumped(tmp_path, "crasher", SegfaultOnLoad())),
                           400)
    finally:
        statuses = clients.stop()
    assert "the model's loader was killed by SIGSEGV" in message
    assert_nothing_left(server, client, "crasher", blobs_before)
    assert statuses and set(statuses) == {200}
    assert server.process.poll() is None


def test_a_model_that_segfaults_in_predict_fails_alone(server: ServerProcess,
                                                       client: httpx.Client, steady: str,
                                                       iris: IrisFiles, tmp_path: Path) -> None:
    model = dumped(tmp_path, "segv", pipeline(iris.model, len, faulthandler._sigsegv))
    assert push(client, "segv", model).status_code == 201
    clients = Clients(server.url, steady)
    try:
        crashed = client.post("/v2/models/segv/infer", json=TEXT_ROW)
        again = client.post("/v2/models/segv/infer", json=TEXT_ROW)
    finally:
        statuses = clients.stop()
    assert crashed.status_code == 503, crashed.text
    assert "crashed: SIGSEGV during predict" in crashed.json()["error"]
    assert again.status_code == 503 and "SIGSEGV" in again.json()["error"]
    assert statuses and set(statuses) == {200}
    state = version_state(client, "segv")
    assert state["state"] == "FAILED" and "crashed: SIGSEGV during predict" in state["reason"]
    assert metric(server, "model_manager_crashes_total", model="segv") == 1
    events = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    assert any(e["event"] == "crashed" and e["model"] == "segv" for e in events)
    # after the backoff the version loads again, in a new process, which crashes the same way
    eventually(lambda: crashes_after_request(server, client, "segv") == 2,
               what="a second process after the backoff")
    assert server.process.poll() is None


def crashes_after_request(server: ServerProcess, client: httpx.Client, name: str) -> float:
    answer = client.post(f"/v2/models/{name}/infer", json=TEXT_ROW)
    assert answer.status_code in (503, 504), answer.text
    return metric(server, "model_manager_crashes_total", model=name)


def test_a_model_that_allocates_past_its_limit_is_killed_alone(iris: IrisFiles,
                                                               tmp_path: Path) -> None:
    # a server of its own, whose prediction timeout cannot come first on a busy machine
    server = ServerProcess(tmp_path / "var", "--allow-pickle", "--predict-timeout", "60s",
                           "--model-memory-limit", "256MiB")
    # 320 MB of ones, then eight copies of them: memory climbs for a while, past the limit
    hog = pipeline(iris.model, len, functools.partial(operator.mul, 40_000_000), np.ones,
                   functools.partial(np.tile, reps=8))
    try:
        with httpx.Client(base_url=server.url, timeout=90) as client:
            assert push(client, "steady", iris.onnx).status_code == 201
            assert push(client, "hog", dumped(tmp_path, "hog", hog)).status_code == 201
            killed = client.post("/v2/models/hog/infer", json=TEXT_ROW)
            assert killed.status_code == 503, killed.text
            assert "crashed: out of memory" in killed.json()["error"]
            assert "past its limit of 256.0 MiB" in killed.json()["error"]
            assert client.post("/v2/models/steady/infer", json=IRIS_ROW).status_code == 200
    finally:
        server.stop()


def test_a_model_that_hangs_is_stopped_and_replaced(server: ServerProcess, client: httpx.Client,
                                                    iris: IrisFiles, tmp_path: Path) -> None:
    stuck = pipeline(iris.model, len, functools.partial(operator.mul, 3600), time.sleep)
    assert push(client, "stuck", dumped(tmp_path, "stuck", stuck)).status_code == 201
    hung = client.post("/v2/models/stuck/infer", json=TEXT_ROW)
    assert hung.status_code in (503, 504), hung.text  # whichever timeout answers first
    after = client.post("/v2/models/stuck/infer", json=TEXT_ROW)
    assert after.status_code == 503 and "no answer within 2s" in after.json()["error"]
    state = version_state(client, "stuck")
    assert state["state"] == "FAILED" and "no answer within 2s during predict" in state["reason"]
    assert metric(server, "model_manager_crashes_total", model="stuck") == 1
    eventually(lambda: crashes_after_request(server, client, "stuck") == 2,
               what="a new process after the backoff, stopped in turn")


def test_an_isolated_model_serves_and_counts_its_process_memory(server: ServerProcess,
                                                                client: httpx.Client,
                                                                iris: IrisFiles) -> None:
    assert push(client, "pickled", iris.joblib, compile="false").status_code == 201
    rows = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [2, 4],
                        "data": iris.x[:2].tolist()}]}
    served = client.post("/v2/models/pickled/infer", json=rows)
    assert served.status_code == 200, served.text
    labels = next(o for o in served.json()["outputs"] if o["name"] == "label")["data"]
    assert labels == iris.model.predict(iris.x[:2]).tolist()
    state = version_state(client, "pickled")
    assert state["state"] == "READY" and state["loaded_bytes"] > MiB
    assert client.post("/v2/repository/models/pickled/unload").status_code == 200
    assert version_state(client, "pickled")["state"] == "UNAVAILABLE"


def fork_servers(server: ServerProcess) -> list[int]:
    """The server's children (started by any of its threads) that are fork servers."""
    tasks = Path(f"/proc/{server.process.pid}/task")
    children = [int(pid) for task in tasks.iterdir() for pid in (task / "children").read_text().split()]
    return [pid for pid in children
            if b"multiprocessing.forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def test_model_processes_start_with_the_first_upload_not_with_the_server(
        tmp_path: Path, iris: IrisFiles) -> None:
    server = ServerProcess(tmp_path / "var")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            time.sleep(1)  # the server has been up a while, and still holds no fork server
            assert client.get("/api/status").json()["model_processes"] == {
                "state": "idle", "detail": None, "ready_after_seconds": None}
            assert fork_servers(server) == []
            assert push(client, "iris", iris.onnx).status_code == 201  # checked in one
            state = client.get("/api/status").json()["model_processes"]
            assert state["state"] == "ready" and state["ready_after_seconds"] > 0
            assert len(fork_servers(server)) == 1
            assert client.post("/v2/models/iris/infer", json=IRIS_ROW).status_code == 200
    finally:
        server.stop()


def test_when_model_processes_cannot_start_uploads_get_503_and_status_says_why(
        tmp_path: Path, iris: IrisFiles) -> None:
    site = tmp_path / "site"
    site.mkdir()
    # a broken environment: a module that imports as None breaks the fork server's imports
    (site / "sitecustomize.py").write_text('import sys\nsys.modules["torch"] = None\n')
    server = ServerProcess(tmp_path / "var", env={"PYTHONPATH": str(site)})
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert client.get("/api/status").json()["model_processes"]["state"] == "idle"
            refused = push(client, "iris", iris.onnx)
            assert refused.status_code == 503, refused.text
            assert "a model process could not be started" in refused.json()["error"]
            assert refused.headers["retry-after"] == "5"
            state = client.get("/api/status").json()["model_processes"]
            assert state["state"] == "failed" and "could not be started" in state["detail"]
            assert client.get("/api/models/iris").status_code == 404
            assert client.get("/v2/health/ready").status_code == 200  # predictions still served
        assert "model processes cannot be started" in server.log()
    finally:
        server.stop()
