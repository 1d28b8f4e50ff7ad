"""Compiled scikit-learn: an uploaded estimator served through its ONNX twin, checked first."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import skops.io as sio
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from tests.support import ServerProcess, push

X, Y = make_classification(n_samples=400, n_features=6, n_informative=4, random_state=0)
ROWS = np.random.default_rng(5).normal(scale=2, size=(40, 6))


def infer(client: httpx.Client, name: str, rows: np.ndarray) -> dict[str, np.ndarray]:
    answer = client.post(f"/v2/models/{name}/infer", json={"inputs": [
        {"name": "input", "datatype": "FP64", "shape": list(rows.shape), "data": rows.ravel().tolist()}]})
    assert answer.status_code == 200, answer.text
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in answer.json()["outputs"]}


def test_a_compiled_estimator_answers_as_the_original(server: ServerProcess, tmp_path: Path) -> None:
    for name, estimator in (("compiled-logreg", LogisticRegression(max_iter=500)),
                            ("compiled-forest", RandomForestClassifier(n_estimators=10, random_state=0))):
        estimator.fit(X, Y)
        sio.dump(estimator, tmp_path / f"{name}.skops")
        with httpx.Client(base_url=server.url, timeout=60) as client:
            version = push(client, name, tmp_path / f"{name}.skops").json()
            served = infer(client, name, ROWS)
            blob = server.data_dir / "store" / "sha256" / version["compiled_sha256"][:2] / \
                version["compiled_sha256"]
            assert version["metadata"]["compiled"]["format"] == "onnx"
            assert version["metadata"]["compiled"]["checked_rows"] >= 512
            assert blob.exists()
            np.testing.assert_array_equal(served["label"], estimator.predict(ROWS))
            np.testing.assert_allclose(served["probabilities"], estimator.predict_proba(ROWS), atol=1e-5)
            assert client.delete(f"/api/models/{name}/versions/1").status_code == 200
            assert not blob.exists()  # the twin goes with its version


def test_compiling_can_be_turned_off_and_is_skipped_when_impossible(server: ServerProcess,
                                                                   tmp_path: Path) -> None:
    estimator = LogisticRegression(max_iter=500).fit(X, Y)
    sio.dump(estimator, tmp_path / "plain.skops")
    text = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(
        ["good day", "bad day", "good night", "bad night"], [1, 0, 1, 0])
    sio.dump(text, tmp_path / "text.skops")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        off = push(client, "not-compiled", tmp_path / "plain.skops", compile="false").json()
        assert off["compiled_sha256"] is None
        assert off["metadata"]["compiled"] == {"format": None, "reason": "turned off at upload"}
        np.testing.assert_array_equal(infer(client, "not-compiled", ROWS)["label"], estimator.predict(ROWS))
        skipped = push(client, "text-model", tmp_path / "text.skops").json()
        assert skipped["compiled_sha256"] is None
        assert "one FP64 table input" in skipped["metadata"]["compiled"]["reason"]
        bad = push(client, "not-compiled", tmp_path / "plain.skops", compile="maybe")
        assert bad.status_code == 400 and "compile" in bad.json()["error"]
    shown = server.cli("push", str(tmp_path / "plain.skops"), "--name", "cli-compiled").stdout
    assert "served compiled to ONNX" in shown
