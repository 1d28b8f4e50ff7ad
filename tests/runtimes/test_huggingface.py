"""The huggingface format against transformers' own pipelines on the same tiny models: labels
equal and scores within 1e-4 for each task, batched or one text at a time, with truncation,
multi-label sigmoid, normalized embeddings and text pairs; bad texts and bad exports refused."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_manager.errors import InvalidArtifact, InvalidInput
from model_manager.runtimes import LoadOptions, Signature, detect_format, get_format
from model_manager.runtimes.huggingface import options_signature
from tests.text_models import TextModel, build

TEXTS = ["hello world", "the quick brown fox jumps over the lazy dog, said alice in paris",
         "prices", "Ünïcödé text — with dashes"]
LONG = " ".join(["the quick brown fox jumps over the lazy dog"] * 20)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TextModel]:
    folder = tmp_path_factory.mktemp("text-models")
    return {task: build(task, folder / task.split("-")[0])
            for task in ("text-classification", "feature-extraction", "token-classification")}


def texts(*values: str | bytes) -> np.ndarray:
    return np.array([v.encode() if isinstance(v, str) else v for v in values], dtype=object)


def load(path: Path, **metadata: Any) -> Any:
    return get_format("huggingface").load(path, LoadOptions(), options_signature(metadata))


def test_an_export_zip_is_detected_by_its_members(models: dict[str, TextModel]) -> None:
    for model in models.values():
        assert detect_format(model.zip_path, "model.zip", None).name == "huggingface"


def test_classification_equals_the_pipeline(models: dict[str, TextModel]) -> None:
    model = models["text-classification"]
    runtime = load(model.zip_path)
    assert runtime.signature.parameters["labels"] == ["negative", "neutral", "positive"]
    assert runtime.signature.parameters["task"] == "text-classification"
    batched = runtime.predict({"text": texts(*TEXTS)}, ["label", "label_id", "probabilities"])
    reference = model.pipeline()(TEXTS, top_k=None)
    for row, (text, ranked) in enumerate(zip(TEXTS, reference, strict=True)):
        scores = {r["label"]: r["score"] for r in ranked}
        want = [scores[label] for label in ("negative", "neutral", "positive")]
        assert batched["label"][row].decode() == ranked[0]["label"]
        assert batched["label_id"][row] == int(np.argmax(want))
        assert np.allclose(batched["probabilities"][row], want, atol=1e-4)
        alone = runtime.predict({"text": texts(text)}, ["probabilities"])
        assert np.allclose(alone["probabilities"][0], want, atol=1e-4)
    probabilities = batched["probabilities"]
    assert not np.allclose(probabilities[0], probabilities[1], atol=1e-3)  # texts told apart


def test_a_multi_label_model_scores_each_label_with_a_sigmoid(tmp_path: Path) -> None:
    model = build("text-classification", tmp_path / "multi",
                  problem_type="multi_label_classification")
    runtime = load(model.zip_path)
    got = runtime.predict({"text": texts(*TEXTS)}, ["probabilities"])["probabilities"]
    reference = model.pipeline()(TEXTS, top_k=None)
    for row, ranked in enumerate(reference):
        scores = {r["label"]: r["score"] for r in ranked}
        assert np.allclose(got[row], [scores[k] for k in ("negative", "neutral", "positive")],
                           atol=1e-4)
    assert not np.allclose(got.sum(axis=1), 1.0)


def test_embeddings_are_the_mean_of_the_pipelines_token_states(
        models: dict[str, TextModel]) -> None:
    model = models["feature-extraction"]
    plain, normalized = load(model.zip_path), load(model.zip_path, normalize=True)
    reference = [np.asarray(states[0]).mean(axis=0) for states in model.pipeline()(TEXTS)]
    got = plain.predict({"text": texts(*TEXTS)}, ["embedding"])["embedding"]
    assert got.shape == (len(TEXTS), 32) and got.dtype == np.float32
    assert np.allclose(got, reference, atol=1e-4)
    unit = normalized.predict({"text": texts(*TEXTS)}, ["embedding"])["embedding"]
    assert np.allclose(unit, got / np.linalg.norm(got, axis=1, keepdims=True), atol=1e-5)
    assert normalized.signature.parameters["normalize"] is True


def test_token_labels_and_offsets_equal_the_pipeline(models: dict[str, TextModel]) -> None:
    model = models["token-classification"]
    runtime = load(model.zip_path)
    rows = runtime.predict({"text": texts(*TEXTS)}, ["entities"])["entities"]
    reference = model.pipeline()(TEXTS)
    for text, row, want in zip(TEXTS, rows, reference, strict=True):
        entities = json.loads(row)
        named = [e for e in entities if e["label"] != "O"]  # the pipeline leaves out "O"
        assert [(e["label"], e["start"], e["end"]) for e in named] == \
            [(w["entity"], w["start"], w["end"]) for w in want]
        assert np.allclose([e["score"] for e in named], [w["score"] for w in want], atol=1e-4)
        assert all(text[e["start"]:e["end"]] == e["word"] for e in entities)
        assert "[CLS]" not in {e["token"] for e in entities}
    assert any(e["label"] != "O" for row in rows for e in json.loads(row))


def test_long_texts_are_truncated_to_the_models_length(models: dict[str, TextModel]) -> None:
    model = models["text-classification"]
    runtime = load(model.zip_path)
    assert runtime.signature.parameters["max_length"] == 48
    got = runtime.predict({"text": texts(LONG, "short")}, ["probabilities"])["probabilities"]
    ranked = model.pipeline()(LONG, top_k=None, truncation=True)
    scores = {r["label"]: r["score"] for r in ranked}
    assert np.allclose(got[0], [scores[k] for k in ("negative", "neutral", "positive")],
                       atol=1e-4)


def test_text_pairs_are_a_second_input_when_the_metadata_says_so(
        models: dict[str, TextModel]) -> None:
    model = models["text-classification"]
    runtime = load(model.zip_path, text_pairs=True)
    assert [t.name for t in runtime.signature.inputs] == ["text", "text_pair"]
    firsts, seconds = ["hello world", "prices went up"], ["a small test", "the market went down"]
    got = runtime.predict({"text": texts(*firsts), "text_pair": texts(*seconds)},
                          ["probabilities"])["probabilities"]
    for row, (first, second) in enumerate(zip(firsts, seconds, strict=True)):
        ranked = model.pipeline()({"text": first, "text_pair": second}, top_k=None)
        scores = {r["label"]: r["score"] for r in ranked}
        assert np.allclose(got[row], [scores[k] for k in ("negative", "neutral", "positive")],
                           atol=1e-4)
    with pytest.raises(InvalidInput, match="'text_pair' holds 1 texts for 2"):
        runtime.predict({"text": texts(*firsts), "text_pair": texts("one")}, ["label"])


@pytest.mark.parametrize(("inputs", "message"), [
    (texts("fine", b"\xff\xfe not utf-8"), "element 1 is not UTF-8 text"),
    (np.array([], dtype=object), "holds no text"),
    (texts("a", "b").reshape(2, 1), r"shape \[-1\]; got \[2, 1\]"),
])
def test_bad_texts_are_the_callers_error(models: dict[str, TextModel], inputs: np.ndarray,
                                         message: str) -> None:
    runtime = load(models["text-classification"].zip_path)
    with pytest.raises(InvalidInput, match=message):
        runtime.predict({"text": inputs}, ["label"])


def test_an_export_missing_a_member_is_refused(tmp_path: Path) -> None:
    model = build("text-classification", tmp_path / "partial", drop=("tokenizer.json",))
    assert zipfile.ZipFile(model.zip_path).namelist()  # the rest is there
    with pytest.raises(InvalidArtifact, match=r"the zip lacks tokenizer\.json"):
        get_format("huggingface").load(model.zip_path, LoadOptions(), None)


def test_a_tokenizer_from_another_vocabulary_is_refused(tmp_path: Path) -> None:
    model = build("text-classification", tmp_path / "mismatch", vocab_size=100)
    with pytest.raises(InvalidArtifact, match=r"the tokenizer has \d+ tokens but the model's "
                                               r"vocabulary has 100"):
        get_format("huggingface").load(model.zip_path, LoadOptions(), None)


def test_options_must_be_booleans_and_a_signature_is_read_not_given(
        models: dict[str, TextModel]) -> None:
    with pytest.raises(InvalidArtifact, match="'normalize' must be true or false"):
        options_signature({"normalize": "yes"})
    assert options_signature({"batching": None}) is None
    path = models["text-classification"].zip_path
    other = Signature.from_json({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [-1]}],
                                 "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1]}]})
    with pytest.raises(InvalidArtifact, match="signature is read from its export"):
        get_format("huggingface").load(path, LoadOptions(), other)
