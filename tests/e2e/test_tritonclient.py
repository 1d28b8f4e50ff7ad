"""An unchanged Open Inference Protocol client, tritonclient.http, against the real server."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import IrisFiles
from tests.support import ServerProcess


@pytest.fixture
def client(demo_server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=demo_server.url.removeprefix("http://"))


def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", model_version="1")
    assert client.is_model_ready("iris", model_version="production")
    assert not client.is_model_ready("no-such-model")
    server = client.get_server_metadata()
    assert server["name"] == "ml-model-manager"
    assert "binary_tensor_data" in server["extensions"]
    metadata = client.get_model_metadata("iris")
    assert metadata["name"] == "iris"
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in metadata["outputs"]] == ["label", "probabilities"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize(("model", "dtype", "rtol"),
                         [("iris", np.float32, 1e-5), ("iris-sklearn", np.float64, 1e-12)])
def test_infer_matches_in_process_predictions(
        client: triton.InferenceServerClient, iris: IrisFiles, binary: bool, model: str,
        dtype: type, rtol: float) -> None:
    x = iris.x.astype(dtype)
    tensor = triton.InferInput("input", list(x.shape), "FP32" if dtype is np.float32 else "FP64")
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary)
               for name in ("label", "probabilities")]
    result = client.infer(model, [tensor], outputs=outputs, request_id="req-42")
    np.testing.assert_array_equal(result.as_numpy("label"), iris.model.predict(iris.x))
    np.testing.assert_allclose(result.as_numpy("probabilities"), iris.model.predict_proba(iris.x),
                               rtol=rtol, atol=1e-6)
    response = result.get_response()
    assert response["model_name"] == model
    assert response["model_version"] == "1"
    assert response["id"] == "req-42"


def test_infer_with_client_defaults(client: triton.InferenceServerClient, iris: IrisFiles) -> None:
    """No requested outputs: the client asks for every output as binary data."""
    x = iris.x.astype(np.float32)
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("iris", [tensor], model_version="production")
    np.testing.assert_array_equal(result.as_numpy("label"), iris.model.predict(iris.x))
    assert result.as_numpy("probabilities").shape == (len(x), 3)


def test_client_sees_errors_as_exceptions(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("input", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException, match="shape"):
        client.infer("iris", [tensor])
    with pytest.raises(InferenceServerException, match="not registered"):
        client.get_model_metadata("nope")
