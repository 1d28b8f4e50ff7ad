"""A kill -9 mid-upload leaves nothing behind; text models take strings end to end."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import skops.io as sio
import tritonclient.http as triton

from tests.conftest import IrisFiles
from tests.support import ServerProcess, push


def test_kill_during_upload_leaves_registry_and_store_consistent(tmp_path: Path,
                                                                 iris: IrisFiles) -> None:
    server = ServerProcess(tmp_path / "var")
    sent = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.onnx\"\r\n\r\n"
        yield iris.onnx.read_bytes()[:100]
        sent.set()
        time.sleep(30)  # the server dies while waiting for the rest
        yield b"\r\n--b--\r\n"

    def upload() -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(f"{server.url}/api/models/crashy/versions", content=slow_body(),
                       headers={"content-type": "multipart/form-data; boundary=b"}, timeout=40)

    uploader = threading.Thread(target=upload, daemon=True)
    uploader.start()
    assert sent.wait(10)
    server.stop(signal.SIGKILL)

    restarted = ServerProcess(tmp_path / "var")
    try:
        assert httpx.get(f"{restarted.url}/api/models/crashy").status_code == 404
        assert list((tmp_path / "var" / "store").rglob("*.part")) == []
        with httpx.Client(base_url=restarted.url) as client:
            assert push(client, "crashy", iris.onnx).json()["version"] == 1
    finally:
        restarted.stop()


def test_text_pipeline_takes_strings_over_json_and_binary(server: ServerProcess,
                                                          tmp_path: Path) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts = ["great product, works well", "terrible, broke in a day", "love it", "awful quality"]
    pipeline = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(
        texts, ["pos", "neg", "pos", "neg"])
    sio.dump(pipeline, tmp_path / "sentiment.skops")
    with httpx.Client(base_url=server.url, timeout=60) as client:  # the first loads skops
        pushed = push(client, "sentiment", tmp_path / "sentiment.skops").json()
        assert pushed["signature"]["inputs"] == [{"name": "input", "datatype": "BYTES", "shape": [-1]}]
        body = {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [2],
                            "data": ["works well, love it", "broke, awful"]}]}
        answer = client.post("/v2/models/sentiment/infer", json=body).json()
    labels = next(o for o in answer["outputs"] if o["name"] == "label")
    assert labels == {"name": "label", "datatype": "BYTES", "shape": [2],
                      "data": pipeline.predict(["works well, love it", "broke, awful"]).tolist()}

    prompts = np.array([b"love it", b"terrible"], dtype=object)
    tensor = triton.InferInput("input", [2], "BYTES")
    tensor.set_data_from_numpy(prompts)
    result = triton.InferenceServerClient(server.url.removeprefix("http://")).infer(
        "sentiment", [tensor])
    assert [v.decode() for v in result.as_numpy("label")] == pipeline.predict(
        ["love it", "terrible"]).tolist()
