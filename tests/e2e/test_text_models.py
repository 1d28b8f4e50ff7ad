"""Hugging Face text models through the real server: uploaded as export zips, answered over v2
JSON, binary BYTES (tritonclient) and KServe V1, one text or many, alone or stacked by dynamic
batching, equal to transformers' own pipeline on the same model; bad texts are 400 and counted
as bad input, bad exports are refused at upload."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from tests.e2e.test_batching import batch_metric
from tests.e2e.test_model_cache import metric
from tests.support import ServerProcess, push
from tests.text_models import TextModel, build

TEXTS = ["hello world", "the quick brown fox jumps over the lazy dog, said alice in paris",
         "prices", "Ünïcödé text — with dashes"]
LABELS = ("negative", "neutral", "positive")
MAX_BYTES_ELEMENT = 2048


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TextModel]:
    folder = tmp_path_factory.mktemp("text-models")
    return {task: build(task, folder / task.split("-")[0])
            for task in ("text-classification", "feature-extraction", "token-classification")}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           models: dict[str, TextModel]) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("text") / "var",
                           "--max-bytes-element", str(MAX_BYTES_ELEMENT))
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for name, task in (("sentiment", "text-classification"), ("embed", "feature-extraction"),
                           ("ner", "token-classification")):
            uploaded = push(client, name, models[task].zip_path)
            assert uploaded.status_code == 201, uploaded.text
    yield server
    server.stop()


@pytest.fixture
def triton_client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def text_request(*texts: str, name: str = "text") -> dict[str, Any]:
    return {"inputs": [{"name": name, "datatype": "BYTES", "shape": [len(texts)],
                        "data": list(texts)}]}


def outputs_of(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    return {o["name"]: o for o in answer.json()["outputs"]}


def reference_scores(model: TextModel, texts: list[str]) -> list[list[float]]:
    ranked = model.pipeline()(texts, top_k=None)
    return [[{r["label"]: r["score"] for r in row}[label] for label in LABELS] for row in ranked]


def test_an_export_zip_is_served_with_its_task_and_labels(client: httpx.Client) -> None:
    version = client.get("/api/models/sentiment").json()["versions"][0]
    assert version["format"] == "huggingface"
    metadata = client.get("/v2/models/sentiment").json()
    assert metadata["platform"] == "huggingface_onnx"
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in metadata["outputs"]] == ["label", "label_id", "probabilities"]
    assert metadata["parameters"]["task"] == "text-classification"
    assert metadata["parameters"]["labels"] == list(LABELS)
    assert client.get("/v2/models/embed").json()["parameters"]["task"] == "feature-extraction"


def test_classification_over_json_equals_the_pipeline(client: httpx.Client,
                                                      models: dict[str, TextModel]) -> None:
    want = reference_scores(models["text-classification"], TEXTS)
    many = outputs_of(client.post("/v2/models/sentiment/infer", json=text_request(*TEXTS)))
    assert many["label"]["datatype"] == "BYTES" and many["label"]["shape"] == [len(TEXTS)]
    assert many["label"]["data"] == [LABELS[int(np.argmax(w))] for w in want]
    assert many["label_id"]["data"] == [int(np.argmax(w)) for w in want]
    got = np.array(many["probabilities"]["data"]).reshape(len(TEXTS), 3)
    assert np.allclose(got, want, atol=1e-4)
    for text, scores in zip(TEXTS, want, strict=True):
        alone = outputs_of(client.post("/v2/models/sentiment/infer", json=text_request(text)))
        assert np.allclose(alone["probabilities"]["data"], scores, atol=1e-4)
    assert not np.allclose(got[0], got[1], atol=1e-3)  # the model does tell texts apart


def test_binary_bytes_through_tritonclient_equal_the_pipeline(
        triton_client: triton.InferenceServerClient, models: dict[str, TextModel]) -> None:
    want = reference_scores(models["text-classification"], TEXTS)
    text = triton.InferInput("text", [len(TEXTS)], "BYTES")
    text.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=object),
                             binary_data=True)
    asked = [triton.InferRequestedOutput(name, binary_data=True)
             for name in ("label", "probabilities")]
    result = triton_client.infer("sentiment", [text], outputs=asked)
    assert [v.decode() for v in result.as_numpy("label")] == \
        [LABELS[int(np.argmax(w))] for w in want]
    assert np.allclose(result.as_numpy("probabilities"), want, atol=1e-4)


def test_embeddings_and_token_labels_over_binary_bytes(
        triton_client: triton.InferenceServerClient, models: dict[str, TextModel]) -> None:
    text = triton.InferInput("text", [len(TEXTS)], "BYTES")
    text.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=object),
                             binary_data=True)
    embedded = triton_client.infer("embed", [text], outputs=[
        triton.InferRequestedOutput("embedding", binary_data=True)]).as_numpy("embedding")
    reference = [np.asarray(s[0]).mean(axis=0) for s in models["feature-extraction"].pipeline()(TEXTS)]
    assert embedded.dtype == np.float32 and np.allclose(embedded, reference, atol=1e-4)
    rows = triton_client.infer("ner", [text], outputs=[
        triton.InferRequestedOutput("entities", binary_data=True)]).as_numpy("entities")
    for row, want in zip(rows, models["token-classification"].pipeline()(TEXTS), strict=True):
        named = [e for e in json.loads(row) if e["label"] != "O"]
        assert [(e["label"], e["start"], e["end"]) for e in named] == \
            [(w["entity"], w["start"], w["end"]) for w in want]


def test_embeddings_and_token_labels_equal_the_pipeline(client: httpx.Client,
                                                        models: dict[str, TextModel]) -> None:
    reference = [np.asarray(s[0]).mean(axis=0) for s in models["feature-extraction"].pipeline()(TEXTS)]
    embedded = outputs_of(client.post("/v2/models/embed/infer", json=text_request(*TEXTS)))
    assert embedded["embedding"]["shape"] == [len(TEXTS), 32]
    assert np.allclose(np.array(embedded["embedding"]["data"]).reshape(-1, 32), reference,
                       atol=1e-4)

    entities = outputs_of(client.post("/v2/models/ner/infer", json=text_request(*TEXTS)))
    rows = [json.loads(row) for row in entities["entities"]["data"]]
    for row, want in zip(rows, models["token-classification"].pipeline()(TEXTS), strict=True):
        named = [e for e in row if e["label"] != "O"]
        assert [(e["label"], e["start"], e["end"]) for e in named] == \
            [(w["entity"], w["start"], w["end"]) for w in want]
        assert np.allclose([e["score"] for e in named], [w["score"] for w in want], atol=1e-4)


def test_a_version_can_normalize_its_embeddings(client: httpx.Client,
                                                models: dict[str, TextModel]) -> None:
    uploaded = push(client, "unit-embed", models["feature-extraction"].zip_path,
                    metadata=json.dumps({"normalize": True}))
    assert uploaded.status_code == 201, uploaded.text
    answer = outputs_of(client.post("/v2/models/unit-embed/infer", json=text_request(*TEXTS)))
    vectors = np.array(answer["embedding"]["data"]).reshape(-1, 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    refused = push(client, "unsure-embed", models["feature-extraction"].zip_path,
                   metadata=json.dumps({"normalize": "yes"}))
    assert refused.status_code == 400
    assert "'normalize' must be true or false" in refused.json()["error"]


def test_dynamic_batching_stacks_texts_and_answers_each_its_own(
        server: ServerProcess, client: httpx.Client, models: dict[str, TextModel]) -> None:
    batching = {"batching": {"max_batch_size": 16, "max_queue_delay_us": 50_000}}
    uploaded = push(client, "batched", models["text-classification"].zip_path,
                    metadata=json.dumps(batching))
    assert uploaded.status_code == 201, uploaded.text
    texts = [TEXTS[i % len(TEXTS)] + " " * (i % 3) + "!" * (i % 5) for i in range(24)]
    want = reference_scores(models["text-classification"], texts)

    def ask(text: str) -> list[float]:
        with httpx.Client(base_url=server.url, timeout=60) as own:
            answer = outputs_of(own.post("/v2/models/batched/infer", json=text_request(text)))
        return list(answer["probabilities"]["data"])

    with ThreadPoolExecutor(12) as pool:
        got = list(pool.map(ask, texts))
    assert np.allclose(got, want, atol=1e-4)
    assert batch_metric(server, "batched", "count") > 0  # some texts ran stacked


def test_kserve_v1_instances_are_texts(client: httpx.Client,
                                       models: dict[str, TextModel]) -> None:
    want = reference_scores(models["text-classification"], TEXTS[:2])
    answer = client.post("/v1/models/sentiment:predict", json={"instances": TEXTS[:2]})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert [p["label"] for p in predictions] == [LABELS[int(np.argmax(w))] for w in want]
    assert np.allclose([p["probabilities"] for p in predictions], want, atol=1e-4)


def test_the_cli_predicts_from_a_list_of_texts(server: ServerProcess,
                                              models: dict[str, TextModel]) -> None:
    want = reference_scores(models["text-classification"], TEXTS[:2])
    printed = json.loads(server.cli("predict", "sentiment", "--input", json.dumps(TEXTS[:2])).stdout)
    assert printed["outputs"]["label"] == [LABELS[int(np.argmax(w))] for w in want]
    assert np.allclose(printed["outputs"]["probabilities"], want, atol=1e-4)


def test_a_golden_probe_compares_text_labels(client: httpx.Client,
                                             models: dict[str, TextModel]) -> None:
    want = LABELS[int(np.argmax(reference_scores(models["text-classification"], TEXTS[:1])[0]))]
    wrong = next(label for label in LABELS if label != want)
    for expected, passed in ((want, True), (wrong, False)):
        probe = {"probe": {"inputs": text_request(TEXTS[0])["inputs"],
                           "expected": {"label": [expected]}}}
        uploaded = push(client, f"probed-{passed}".lower(), models["text-classification"].zip_path,
                        metadata=json.dumps(probe))
        assert uploaded.status_code == 201, uploaded.text
        assert outputs_of(client.post(f"/v2/models/probed-{passed}/infer".lower(),
                                      json=text_request(TEXTS[0])))
        health = client.get(f"/api/models/probed-{passed}/health".lower()).json()["versions"][0]
        assert health["last_probe"]["passed"] is passed, health


def binary_text_body(*elements: bytes) -> tuple[bytes, dict[str, str]]:
    data = b"".join(len(e).to_bytes(4, "little") + e for e in elements)
    header = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES",
                                     "shape": [len(elements)],
                                     "parameters": {"binary_data_size": len(data)}}]}).encode()
    return header + data, {"Inference-Header-Content-Length": str(len(header))}


def test_bad_texts_are_refused_and_counted_as_bad_input(server: ServerProcess,
                                                client: httpx.Client) -> None:
    url = "/v2/models/ner/infer"
    before = metric(server, "model_manager_requests_total", model="ner", outcome="bad_input")
    body, headers = binary_text_body(b"fine", b"\xff\xfe not utf-8")
    cases = [
        (client.post(url, content=body, headers=headers), 400, "element 1 is not UTF-8 text"),
        (client.post(url, json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [0],
                                            "data": []}]}), 400, "holds no text"),
        # too large, as every limit of the server answers
        (client.post(url, json=text_request("x" * (MAX_BYTES_ELEMENT + 1))), 413,
         "takes at most 2.0 KiB"),
    ]
    for answer, status, message in cases:
        assert answer.status_code == status, answer.text
        assert message in answer.json()["error"], answer.text
    assert outputs_of(client.post(url, json=text_request("still serving")))
    assert metric(server, "model_manager_requests_total", model="ner",
                  outcome="bad_input") == before + 3
    health = client.get("/api/models/ner/health").json()["versions"][0]
    assert health["status"] == "healthy", health


@pytest.mark.parametrize(("options", "message"), [
    ({"drop": ("tokenizer.json",)}, "the zip lacks tokenizer.json"),
    ({"drop": ("model.onnx",)}, "the zip lacks model.onnx"),
    ({"vocab_size": 100}, "but the model's vocabulary has 100"),
])
def test_a_broken_export_is_refused_at_upload(client: httpx.Client, tmp_path: Path,
                                              options: dict[str, Any], message: str) -> None:
    model = build("text-classification", tmp_path / "broken", **options)
    refused = push(client, "broken", model.zip_path, format="huggingface")
    assert refused.status_code == 400, refused.text
    assert message in refused.json()["error"]
    assert client.get("/api/models/broken").status_code == 404
