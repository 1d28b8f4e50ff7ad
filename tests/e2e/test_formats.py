"""Every model format through the real server: models made by the real libraries, uploaded over
HTTP, served over the Open Inference Protocol to tritonclient (binary tensor data and JSON), and
compared with the library's own predictions."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import np_to_triton_dtype

from tests.support import ServerProcess, push
from tests.text_models import build

ROOT = Path(__file__).resolve().parents[2]
TF_PYTHON = ROOT / ".venv-tf" / "bin" / "python"
TF_SCRIPT = ROOT / "tests" / "fixtures" / "make_tf_keras_h5.py"
FORMATS = ("onnx", "sklearn", "keras", "torch", "xgboost", "lightgbm", "huggingface")

pytestmark = [
    # Keras 3 on JAX saving weights: numpy 2 warns about a jax-side __array__ without `copy`.
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"
                               ":DeprecationWarning:keras.src.backend.jax.core"),
    # PyTorch 2.13 deprecates TorchScript, which this module tests on purpose.
    pytest.mark.filterwarnings(r"ignore:`torch\.jit\.(trace|trace_method|save)` is deprecated"
                               ":DeprecationWarning:torch.jit"),
]


def import_keras() -> Any:
    """Keras on the JAX backend, the server's default: the backend is fixed at first import."""
    os.environ["KERAS_BACKEND"] = "jax"
    import keras

    assert keras.backend.backend() == "jax"
    return keras


def iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return x, y


@dataclasses.dataclass
class Case:
    """A model file, how to upload it, the inputs to send and the library's own answers."""

    path: Path
    inputs: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]
    platform: str
    form: dict[str, str] = dataclasses.field(default_factory=dict)
    atol: float = 1e-6
    rtol: float = 1e-6


# ---- the models, each made by its own library ----------------------------------------------------


def keras_functional(folder: Path, suffix: str) -> Case:
    keras = import_keras()
    x, y = iris()
    inputs = keras.Input(shape=(4,), name="features")
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    hidden = keras.layers.BatchNormalization()(hidden)
    outputs = keras.layers.Dense(3, activation="softmax", name="probs")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x.astype(np.float32), y, epochs=2, verbose=0)
    path = folder / f"functional{suffix}"
    model.save(path)
    rows = x[::10].astype(np.float32)
    return Case(path, {"features": rows}, {"probs": np.asarray(model.predict(rows, verbose=0))}, "keras")


def tf_keras(name: str, input_name: str, output_name: str) -> Callable[[Path, Path], Case]:
    def make(folder: Path, tf_files: Path) -> Case:
        expected = np.load(tf_files / "expected.npz")
        return Case(tf_files / f"{name}.h5", {input_name: expected["x"]},
                    {output_name: expected[name]}, "keras", atol=1e-5, rtol=1e-5)
    return make


def torch_net() -> Any:
    import torch

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hidden = torch.nn.Linear(4, 16)
            self.out = torch.nn.Linear(16, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.out(torch.relu(self.hidden(x))), dim=-1)

    return Net().eval()


TORCHSCRIPT_SIGNATURE = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
                         "outputs": [{"name": "probs", "datatype": "FP32", "shape": [-1, 3]}]}


def torchscript(folder: Path) -> Case:
    import torch

    net = torch_net()
    x = iris()[0].astype(np.float32)
    path = folder / "net.pt"
    torch.jit.save(torch.jit.trace(net, torch.from_numpy(x[:5])), str(path))
    rows = x[::10]
    with torch.no_grad():
        expected = net(torch.from_numpy(rows)).numpy()
    return Case(path, {"x": rows}, {"probs": expected}, "pytorch",
                form={"metadata": json.dumps({"signature": TORCHSCRIPT_SIGNATURE})})


def torch_export(folder: Path) -> Case:
    import torch

    net = torch_net()
    x = iris()[0].astype(np.float32)
    batch = torch.export.Dim("batch")
    program = torch.export.export(net, (torch.from_numpy(x[:5]),), dynamic_shapes={"x": {0: batch}})
    path = folder / "net.pt2"
    torch.export.save(program, str(path))
    rows = x[::10]  # 15 rows: not the batch of 5 it was exported with
    with torch.no_grad():
        expected = net(torch.from_numpy(rows)).numpy()
    output = program.graph_signature.user_outputs[0]
    return Case(path, {"x": rows}, {output: expected}, "pytorch")


def xgb_classifier(folder: Path) -> Case:
    import xgboost

    x, y = iris()
    model = xgboost.XGBClassifier(n_estimators=20, max_depth=3, random_state=0).fit(x, y)
    path = folder / "classifier.ubj"
    model.save_model(path)
    rows = x[::10].astype(np.float32)
    return Case(path, {"input": rows}, {"label": model.predict(rows),
                                        "probabilities": model.predict_proba(rows)}, "xgboost")


def xgb_regressor(folder: Path) -> Case:
    import xgboost

    x = iris()[0]
    model = xgboost.XGBRegressor(n_estimators=20, max_depth=3, random_state=0).fit(x[:, :3], x[:, 3])
    path = folder / "regressor.json"
    model.save_model(path)
    rows = x[::10, :3].astype(np.float32)
    return Case(path, {"input": rows}, {"prediction": model.predict(rows)}, "xgboost")


def lgb_classifier(folder: Path) -> Case:
    import lightgbm

    x, y = iris()
    model = lightgbm.LGBMClassifier(n_estimators=20, verbose=-1, random_state=0).fit(x, y)
    path = folder / "classifier.txt"
    model.booster_.save_model(path)
    rows = x[::10]
    return Case(path, {"input": rows}, {"label": model.predict(rows),
                                        "probabilities": model.predict_proba(rows)}, "lightgbm",
                atol=1e-12, rtol=1e-12)


def lgb_regressor(folder: Path) -> Case:
    import lightgbm

    x = iris()[0]
    model = lightgbm.LGBMRegressor(n_estimators=20, verbose=-1, random_state=0).fit(x[:, :3], x[:, 3])
    path = folder / "regressor.txt"
    model.booster_.save_model(path)
    rows = x[::10, :3]
    return Case(path, {"input": rows}, {"prediction": model.predict(rows)}, "lightgbm",
                atol=1e-12, rtol=1e-12)


# Case name -> (format, maker). The tf.keras makers take the folder of the fixture script's files.
MAKERS: dict[str, tuple[str, Callable[..., Case]]] = {
    "keras-v3": ("keras", lambda folder: keras_functional(folder, ".keras")),
    "keras-h5": ("keras", lambda folder: keras_functional(folder, ".h5")),
    "tf-keras-functional": ("keras", tf_keras("functional", "features", "probs")),
    "tf-keras-sequential": ("keras", tf_keras("sequential", "rows", "score")),
    "torchscript": ("torch", torchscript),
    "torch-export": ("torch", torch_export),
    "xgboost-classifier": ("xgboost", xgb_classifier),
    "xgboost-regressor": ("xgboost", xgb_regressor),
    "lightgbm-classifier": ("lightgbm", lgb_classifier),
    "lightgbm-regressor": ("lightgbm", lgb_regressor),
}


# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tf_keras_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tf.keras 2.x .h5 files and TensorFlow's predictions, written under TensorFlow 2.15."""
    if not TF_PYTHON.exists():
        pytest.fail(f"{TF_PYTHON} is missing: `make install` creates the TensorFlow environment")
    folder = tmp_path_factory.mktemp("tf-keras")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KERAS_BACKEND")}
    result = subprocess.run([str(TF_PYTHON), str(TF_SCRIPT), str(folder)], capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert str(np.load(folder / "expected.npz")["tf_version"]).startswith("2.")
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("formats") / "var")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=server.url.removeprefix("http://"), network_timeout=60)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@dataclasses.dataclass
class Uploaded:
    case: Case
    format: str
    names: tuple[str, str]
    """The model uploaded under its own file name, and again with the format field."""


@pytest.fixture(scope="module", params=list(MAKERS))
def uploaded(request: pytest.FixtureRequest, http: httpx.Client, models: Path) -> Uploaded:
    fmt, make = MAKERS[request.param]
    folder = models / request.param
    folder.mkdir()
    if request.param.startswith("tf-keras"):
        case = make(folder, request.getfixturevalue("tf_keras_files"))
    else:
        case = make(folder)
    by_name = push(http, request.param, case.path, **case.form)
    assert by_name.status_code == 201, by_name.text
    assert by_name.json()["format"] == fmt
    neutral = folder / "model.bin"
    shutil.copyfile(case.path, neutral)
    declared_name = f"{request.param}-declared"
    declared = push(http, declared_name, neutral, format=fmt, **case.form)
    assert declared.status_code == 201, declared.text
    assert declared.json()["format"] == fmt
    return Uploaded(case, fmt, (request.param, declared_name))


def infer(client: triton.InferenceServerClient, model: str, inputs: dict[str, np.ndarray],
          outputs: list[str], binary: bool) -> dict[str, np.ndarray]:
    tensors = []
    for name, value in inputs.items():
        tensor = triton.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
        tensor.set_data_from_numpy(value, binary_data=binary)
        tensors.append(tensor)
    requested = [triton.InferRequestedOutput(name, binary_data=binary) for name in outputs]
    result = client.infer(model, tensors, outputs=requested)
    return {name: result.as_numpy(name) for name in outputs}


# ---- tests --------------------------------------------------------------------------------------


def test_metadata_shows_the_platform_and_the_signature(uploaded: Uploaded,
                                                       client: triton.InferenceServerClient) -> None:
    case = uploaded.case
    for name in uploaded.names:
        metadata = client.get_model_metadata(name)
        assert metadata["platform"] == case.platform
        assert [t["name"] for t in metadata["inputs"]] == list(case.inputs)
        assert [t["datatype"] for t in metadata["inputs"]] == [
            np_to_triton_dtype(v.dtype) for v in case.inputs.values()]
        assert all(t["shape"][0] == -1 for t in metadata["inputs"])  # any batch size
        assert set(case.expected) <= {t["name"] for t in metadata["outputs"]}


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_predictions_match_the_library(uploaded: Uploaded, client: triton.InferenceServerClient,
                                       binary: bool) -> None:
    case = uploaded.case
    for name in uploaded.names:
        got = infer(client, name, case.inputs, list(case.expected), binary)
        for output, expected in case.expected.items():
            if np.issubdtype(expected.dtype, np.integer):
                np.testing.assert_array_equal(got[output], expected, err_msg=f"{name} {output}")
            else:
                assert got[output].shape == expected.shape, (name, output)
                np.testing.assert_allclose(got[output], expected, rtol=case.rtol, atol=case.atol,
                                           err_msg=f"{name} {output}")


def test_torchscript_needs_a_signature(http: httpx.Client, models: Path) -> None:
    folder = models / "torchscript-unsigned"
    folder.mkdir()
    response = push(http, "torchscript-unsigned", torchscript(folder).path)
    assert response.status_code == 400
    assert "signature" in response.json()["error"]
    assert http.get("/api/models/torchscript-unsigned").status_code == 404


@pytest.fixture(scope="module")
def lambda_keras(models: Path) -> Path:
    """A Keras 3 model with a Lambda layer, whose Python function runs when it loads."""
    keras = import_keras()
    model = keras.Sequential([keras.Input(shape=(4,), name="x"),
                              keras.layers.Lambda(lambda t: t * 2, name="doubled")])
    path = models / "lambda.keras"
    model.save(path)
    return path


def test_keras_lambda_layers_are_refused(http: httpx.Client, lambda_keras: Path,
                                         tf_keras_files: Path) -> None:
    for name, path in [("lambda-v3", lambda_keras), ("lambda-tf-h5", tf_keras_files / "lambda.h5")]:
        response = push(http, name, path)
        assert response.status_code == 400, (name, response.text)
        assert "--allow-custom-code" in response.json()["error"], name


def test_allow_custom_code_accepts_lambda_layers(tmp_path: Path, lambda_keras: Path) -> None:
    server = ServerProcess(tmp_path / "var", "--allow-custom-code")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            response = push(http, "lambda", lambda_keras)
            assert response.status_code == 201, response.text
        client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        output = client.get_model_metadata("lambda")["outputs"][0]["name"]
        got = infer(client, "lambda", {"x": x}, [output], binary=True)
        np.testing.assert_array_equal(got[output], x * 2)
    finally:
        server.stop()


def format_rows(server: ServerProcess) -> dict[str, str]:
    lines = server.cli("formats").stdout.splitlines()
    assert lines[0].split() == ["FORMAT", "FILES", "AVAILABLE", "TO", "INSTALL"]
    return {line.split()[0]: line for line in lines[1:] if line.strip()}


def test_formats_command_lists_every_format_as_available(server: ServerProcess) -> None:
    rows = format_rows(server)
    assert sorted(rows) == sorted(FORMATS)
    for row in rows.values():
        assert " yes" in row and "install" not in row, row
    assert ".keras" in rows["keras"] and ".pt2" in rows["torch"] and ".ubj" in rows["xgboost"]
    table = json.loads(server.cli("formats", "--json").stdout)
    assert {f["format"]: f["available"] for f in table} == dict.fromkeys(FORMATS, True)


def test_formats_whose_framework_is_missing(tmp_path: Path, models: Path) -> None:
    """A server where keras, torch and tokenizers cannot be imported says so, and refuses their
    models."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        # as Python sees an uninstalled package: no finder finds it
        "import sys, importlib.machinery as machinery\n"
        "class Uninstalled(machinery.PathFinder):\n"
        "    @classmethod\n"
        "    def find_spec(cls, name, path=None, target=None):\n"
        "        if name.partition('.')[0] not in ('keras', 'torch', 'tokenizers'):\n"
        "            return machinery.PathFinder.find_spec(name, path, target)\n"
        "sys.meta_path[sys.meta_path.index(machinery.PathFinder)] = Uninstalled\n")
    server = ServerProcess(tmp_path / "var", env={"PYTHONPATH": str(site)})
    try:
        rows = format_rows(server)
        for fmt in ("keras", "torch", "huggingface"):
            assert " no " in rows[fmt] and f"install ml-model-manager[{fmt}]" in rows[fmt], rows[fmt]
        for fmt in ("onnx", "sklearn", "xgboost", "lightgbm"):
            assert " yes" in rows[fmt] and "install" not in rows[fmt], rows[fmt]
        folder = models / "missing"
        folder.mkdir()
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for name, path, extra in [("k", keras_functional(folder, ".keras").path, "keras"),
                                      ("t", torch_export(folder).path, "torch"),
                                      ("h", build("text-classification", folder / "h").zip_path,
                                       "huggingface")]:
                response = push(http, name, path)
                assert response.status_code == 400, response.text
                assert f"install ml-model-manager[{extra}]" in response.json()["error"]
    finally:
        server.stop()
