"""Loading real artifacts into runtimes: signatures, predictions, safety and format detection."""

from __future__ import annotations

import operator
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio

from model_manager.errors import InvalidArtifact, UnsafeArtifact, UnsupportedFormat
from model_manager.runtimes import (
    FORMATS,
    LoadOptions,
    Signature,
    TensorSpec,
    detect_format,
    get_format,
)
from model_manager.runtimes.onnx import OnnxFormat
from model_manager.runtimes.sklearn import SklearnFormat
from tests.conftest import IrisFiles

SAFE = LoadOptions()
PICKLE = LoadOptions(allow_pickle=True)
BOTH = ["label", "probabilities"]


def random_bytes(tmp_path: Path, name: str = "junk.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).bytes(4096))  # starts with b"_", no magic number
    return path


# ---- ONNX --------------------------------------------------------------------------------------


def test_onnx_signature_is_read_from_the_graph(iris: IrisFiles) -> None:
    runtime = OnnxFormat().load(iris.onnx, SAFE, None)

    assert runtime.signature == Signature(
        (TensorSpec("input", "FP32", (-1, 4)),),
        (TensorSpec("label", "INT64", (-1,)), TensorSpec("probabilities", "FP32", (-1, 3))))


def test_onnx_predicts_like_the_sklearn_model(iris: IrisFiles) -> None:
    runtime = OnnxFormat().load(iris.onnx, SAFE, None)
    result = runtime.predict({"input": iris.x.astype(np.float32)}, BOTH)

    assert set(result) == set(BOTH)
    np.testing.assert_array_equal(result["label"], iris.model.predict(iris.x))
    np.testing.assert_allclose(result["probabilities"], iris.model.predict_proba(iris.x), rtol=1e-5)
    assert result["probabilities"].dtype == np.float32


def test_onnx_returns_only_the_outputs_asked_for(iris: IrisFiles) -> None:
    runtime = OnnxFormat().load(iris.onnx, SAFE, None)
    result = runtime.predict({"input": iris.x.astype(np.float32)}, ["probabilities"])

    assert list(result) == ["probabilities"]
    assert result["probabilities"].shape == (len(iris.x), 3)


def test_onnx_override_may_restate_shapes_and_drop_outputs(iris: IrisFiles) -> None:
    override = Signature((TensorSpec("input", "FP32", (-1, 4)),), (TensorSpec("label", "INT64", (-1,)),))
    runtime = OnnxFormat().load(iris.onnx, SAFE, override)

    assert runtime.signature == override


@pytest.mark.parametrize(("override", "message"), [
    (Signature((TensorSpec("features", "FP32", (-1, 4)),), (TensorSpec("label", "INT64", (-1,)),)),
     "inputs must be the graph's"),
    (Signature((TensorSpec("input", "FP64", (-1, 4)),), (TensorSpec("label", "INT64", (-1,)),)),
     "'input' is FP32 in the graph, not FP64"),
    (Signature((TensorSpec("input", "FP32", (-1, 4)),), (TensorSpec("label", "FP32", (-1,)),)),
     "'label' is INT64 in the graph, not FP32"),
    (Signature((TensorSpec("input", "FP32", (-1, 4)),), (TensorSpec("scores", "FP32", (-1,)),)),
     "outputs the graph lacks"),
], ids=["input-name", "input-datatype", "output-datatype", "output-name"])
def test_onnx_override_that_contradicts_the_graph_is_refused(
        iris: IrisFiles, override: Signature, message: str) -> None:
    with pytest.raises(InvalidArtifact, match=message):
        OnnxFormat().load(iris.onnx, SAFE, override)


def test_onnx_random_bytes_are_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidArtifact, match="not a loadable ONNX model"):
        OnnxFormat().load(random_bytes(tmp_path), SAFE, None)


def test_onnx_truncated_file_is_invalid(iris: IrisFiles, tmp_path: Path) -> None:
    data = iris.onnx.read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])

    with pytest.raises(InvalidArtifact, match="not a loadable ONNX model"):
        OnnxFormat().load(truncated, SAFE, None)


# ---- scikit-learn ------------------------------------------------------------------------------


def test_skops_signature_is_read_from_the_estimator(iris: IrisFiles) -> None:
    runtime = SklearnFormat().load(iris.skops, SAFE, None)

    assert runtime.signature == Signature(
        (TensorSpec("input", "FP64", (-1, 4)),),
        (TensorSpec("label", "INT64", (-1,)), TensorSpec("probabilities", "FP64", (-1, 3))))


def test_skops_predicts_like_the_sklearn_model(iris: IrisFiles) -> None:
    runtime = SklearnFormat().load(iris.skops, SAFE, None)
    result = runtime.predict({"input": iris.x}, BOTH)

    np.testing.assert_array_equal(result["label"], iris.model.predict(iris.x))
    np.testing.assert_allclose(result["probabilities"], iris.model.predict_proba(iris.x))


def test_joblib_is_refused_unless_pickle_is_allowed(iris: IrisFiles) -> None:
    with pytest.raises(UnsafeArtifact) as caught:
        SklearnFormat().load(iris.joblib, SAFE, None)
    assert "--allow-pickle" in caught.value.message
    assert "skops" in caught.value.message

    runtime = SklearnFormat().load(iris.joblib, PICKLE, None)
    np.testing.assert_array_equal(runtime.predict({"input": iris.x}, ["label"])["label"],
                                  iris.model.predict(iris.x))


def test_skops_with_untrusted_types_is_refused_unless_pickle_is_allowed(
        iris: IrisFiles, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    x = iris.x
    pipeline = make_pipeline(FunctionTransformer(operator.neg), LogisticRegression(max_iter=1000))
    pipeline.fit(x, iris.model.predict(x))
    path = tmp_path / "custom.skops"
    sio.dump(pipeline, path)

    with pytest.raises(UnsafeArtifact, match=r"_operator\.neg"):
        SklearnFormat().load(path, SAFE, None)
    runtime = SklearnFormat().load(path, PICKLE, None)
    np.testing.assert_array_equal(runtime.predict({"input": x}, ["label"])["label"], pipeline.predict(x))


@pytest.mark.parametrize("options", [SAFE, PICKLE], ids=["safe", "allow-pickle"])
def test_sklearn_random_bytes_are_invalid(tmp_path: Path, options: LoadOptions) -> None:
    with pytest.raises(InvalidArtifact) as caught:
        SklearnFormat().load(random_bytes(tmp_path), options, None)
    assert not isinstance(caught.value, UnsafeArtifact)


def test_truncated_skops_file_is_invalid(iris: IrisFiles, tmp_path: Path) -> None:
    data = iris.skops.read_bytes()
    truncated = tmp_path / "truncated.skops"
    truncated.write_bytes(data[: len(data) // 2])

    with pytest.raises(InvalidArtifact, match="not a loadable skops file") as caught:
        SklearnFormat().load(truncated, SAFE, None)
    assert not isinstance(caught.value, UnsafeArtifact)


def test_zip_that_is_not_a_skops_file_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "broken.skops"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("schema.json", "{not json")

    with pytest.raises(InvalidArtifact, match="not a loadable skops file") as caught:
        SklearnFormat().load(path, SAFE, None)
    assert not isinstance(caught.value, UnsafeArtifact)


def test_sklearn_signature_override_is_used(iris: IrisFiles) -> None:
    override = Signature((TensorSpec("features", "FP64", (-1, 4)),), (TensorSpec("label", "INT64", (-1,)),))
    runtime = SklearnFormat().load(iris.skops, SAFE, override)

    assert runtime.signature == override
    result = runtime.predict({"features": iris.x}, ["label"])
    np.testing.assert_array_equal(result["label"], iris.model.predict(iris.x))


@pytest.mark.parametrize(("override", "message"), [
    (Signature((TensorSpec("input", "BYTES", (-1,)),), (TensorSpec("label", "INT64", (-1,)),)),
     "one FP64 input"),
    (Signature((TensorSpec("input", "FP64", (-1, 4)),), (TensorSpec("scores", "FP64", (-1,)),)),
     "outputs are"),
    (Signature((TensorSpec("input", "FP64", (-1, 4)),), (TensorSpec("label", "FP32", (-1,)),)),
     "outputs are"),
])
def test_sklearn_override_that_contradicts_the_estimator_is_refused(
        iris: IrisFiles, override: Signature, message: str) -> None:
    with pytest.raises(InvalidArtifact, match=message):
        SklearnFormat().load(iris.skops, SAFE, override)


def test_text_pipeline_takes_bytes(tmp_path: Path) -> None:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts = ["good great fine", "bad awful poor", "great movie", "awful film"]
    labels = ["pos", "neg", "pos", "neg"]
    pipeline = make_pipeline(CountVectorizer(), LogisticRegression()).fit(texts, labels)
    path = tmp_path / "sentiment.skops"
    sio.dump(pipeline, path)

    runtime = SklearnFormat().load(path, SAFE, None)
    assert runtime.signature.inputs == (TensorSpec("input", "BYTES", (-1,)),)
    assert runtime.signature.outputs == (TensorSpec("label", "BYTES", (-1,)),
                                         TensorSpec("probabilities", "FP64", (-1, 2)))

    queries = ["great good movie", "awful bad"]
    inputs = np.array([q.encode() for q in queries], dtype=object)
    result = runtime.predict({"input": inputs}, BOTH)
    np.testing.assert_array_equal(result["label"], pipeline.predict(queries))
    np.testing.assert_array_equal(result["label"], ["pos", "neg"])
    np.testing.assert_allclose(result["probabilities"], pipeline.predict_proba(queries))


# ---- format detection --------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "filename", "expected"), [
    ("onnx", "model.onnx", "onnx"),
    ("onnx", "MODEL.ONNX", "onnx"),
    ("onnx", "upload", "onnx"),
    ("skops", "model.skops", "sklearn"),
    ("skops", "upload", "sklearn"),
    ("joblib", "model.joblib", "sklearn"),
    ("joblib", "upload", "sklearn"),
])
def test_detect_format_from_name_or_first_bytes(
        iris: IrisFiles, kind: str, filename: str, expected: str) -> None:
    path = getattr(iris, kind)
    assert detect_format(path, filename, None).name == expected


@pytest.mark.parametrize("name", ["model.pkl", "model.pickle", "model.onnx", "model.skops"])
def test_detect_format_trusts_the_extension_over_the_bytes(tmp_path: Path, name: str) -> None:
    expected = "onnx" if name.endswith(".onnx") else "sklearn"
    assert detect_format(random_bytes(tmp_path), name, None).name == expected


def test_declared_format_wins_over_the_file(iris: IrisFiles) -> None:
    assert detect_format(iris.onnx, "iris.onnx", "sklearn").name == "sklearn"


def test_detect_format_of_empty_file_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"")
    with pytest.raises(InvalidArtifact, match="empty") as caught:
        detect_format(path, "model.onnx", None)
    assert not isinstance(caught.value, UnsupportedFormat)


def test_detect_format_of_unknown_bytes_is_unsupported(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormat, match="'format' field"):
        detect_format(random_bytes(tmp_path, "weights.bin"), "weights.bin", None)


def test_unknown_declared_format_is_unsupported(iris: IrisFiles) -> None:
    with pytest.raises(UnsupportedFormat,
                       match="known formats: huggingface, keras, lightgbm, onnx, sklearn, torch, xgboost"):
        detect_format(iris.onnx, "iris.onnx", "tensorflow")
    with pytest.raises(UnsupportedFormat):
        get_format("pytorch")


def test_formats_name_their_platform() -> None:
    assert {name: fmt.platform for name, fmt in FORMATS.items()} == {
        "onnx": "onnxruntime_onnx", "sklearn": "sklearn", "keras": "keras", "torch": "pytorch",
        "xgboost": "xgboost", "lightgbm": "lightgbm", "huggingface": "huggingface_onnx"}
