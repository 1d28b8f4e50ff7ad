"""Golden probes from version metadata, run against the real iris ONNX model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from model_manager.errors import InvalidArtifact
from model_manager.probes import Probe, ProbeResult
from model_manager.runtimes import LoadOptions, Runtime, Signature, TensorSpec
from model_manager.runtimes.onnx import OnnxFormat
from model_manager.types import Array, Tensors
from tests.conftest import IrisFiles

SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]
INPUTS = [{"name": "input", "datatype": "FP32", "shape": [2, 4], "data": SETOSA + VIRGINICA}]
PROBABILITIES = [[0.98, 0.02, 0.0], [0.0, 0.08, 0.92]]  # the model's, to two decimals
AT = 1_700_000_000.0


@pytest.fixture(scope="module")
def runtime(iris: IrisFiles) -> Runtime:
    return OnnxFormat().load(iris.onnx, LoadOptions(), None)


def probe(expected: dict[str, Any], **extra: Any) -> Probe:
    parsed = Probe.from_metadata({"probe": {"inputs": INPUTS, "expected": expected, **extra}})
    assert parsed is not None
    return parsed


class FakeRuntime:
    signature = Signature((TensorSpec("input", "FP32", (-1, 4)),), (TensorSpec("species", "BYTES", (-1,)),))

    def __init__(self, outputs: dict[str, Array] | None = None, error: Exception | None = None) -> None:
        self.outputs, self.error = outputs or {}, error

    def predict(self, inputs: Tensors, outputs: Sequence[str]) -> dict[str, Array]:
        if self.error is not None:
            raise self.error
        return self.outputs

    def unload(self) -> None:
        pass


# ---- from metadata -----------------------------------------------------------------------------


def test_no_probe_in_the_metadata_is_none() -> None:
    assert Probe.from_metadata({}) is None
    assert Probe.from_metadata({"description": "iris", "probe": None}) is None


def test_a_probe_takes_v2_json_inputs() -> None:
    parsed = probe({"label": [0, 2]}, tolerance=0.5)

    assert list(parsed.inputs) == ["input"]
    assert parsed.inputs["input"].dtype == np.float32
    assert parsed.inputs["input"].shape == (2, 4)
    np.testing.assert_array_equal(parsed.expected["label"], [0, 2])
    assert parsed.tolerance == 0.5


def test_the_default_tolerance_is_tight() -> None:
    assert probe({"label": [0, 2]}).tolerance == 1e-6


@pytest.mark.parametrize("spec", [
    "run the model",
    {"expected": {"label": [0]}},
    {"inputs": INPUTS},
    {"inputs": [{"name": "input", "shape": [1, 4], "data": SETOSA}], "expected": {"label": [0]}},
    {"inputs": [{"name": "input", "datatype": "FP128", "shape": [1, 4], "data": SETOSA}],
     "expected": {"label": [0]}},
    {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 5], "data": SETOSA}],
     "expected": {"label": [0]}},
    {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": ["a", "b", "c", "d"]}],
     "expected": {"label": [0]}},
    {"inputs": INPUTS, "expected": {"label": [0, 2]}, "tolerance": "loose"},
])
def test_a_malformed_probe_is_an_invalid_artifact(spec: Any) -> None:
    with pytest.raises(InvalidArtifact, match="metadata 'probe' needs 'inputs'"):
        Probe.from_metadata({"probe": spec})


def test_expected_outputs_given_as_a_list_are_an_invalid_artifact() -> None:
    with pytest.raises(InvalidArtifact):
        Probe.from_metadata({"probe": {"inputs": INPUTS, "expected": [0, 2]}})


# ---- run against the real model ----------------------------------------------------------------


def test_the_expected_labels_pass(runtime: Runtime) -> None:
    result = probe({"label": [0, 2]}).run(runtime, AT)

    assert result == ProbeResult(True, AT, "outputs match")
    assert result.to_json() == {"passed": True, "at": AT, "detail": "outputs match"}


def test_a_wrong_label_fails_naming_the_output(runtime: Runtime) -> None:
    result = probe({"label": [0, 1]}).run(runtime, AT)

    assert not result.passed
    assert result.at == AT
    assert result.detail == "output 'label' differs from the expected by up to 1 (tolerance 1e-06)"


def test_a_wrong_number_of_labels_fails_with_the_shapes(runtime: Runtime) -> None:
    result = probe({"label": [0]}).run(runtime, AT)

    assert not result.passed
    assert result.detail == "output 'label' has shape [2], expected [1]"


def test_probabilities_fail_with_a_tolerance_too_small(runtime: Runtime) -> None:
    result = probe({"probabilities": PROBABILITIES}).run(runtime, AT)

    assert not result.passed
    assert result.detail.startswith("output 'probabilities' differs from the expected by up to ")
    assert result.detail.endswith("(tolerance 1e-06)")


def test_probabilities_pass_with_a_generous_tolerance(runtime: Runtime) -> None:
    result = probe({"label": [0, 2], "probabilities": PROBABILITIES}, tolerance=0.01).run(runtime, AT)

    assert result.passed, result.detail


def test_an_output_the_model_does_not_have_fails(runtime: Runtime) -> None:
    result = probe({"scores": [1.0, 2.0]}).run(runtime, AT)

    assert not result.passed
    assert "scores" in result.detail


def test_a_runtime_that_raises_gives_a_failed_result() -> None:
    result = probe({"label": [0, 2]}).run(FakeRuntime(error=RuntimeError("CUDA out of memory")), AT)

    assert result == ProbeResult(False, AT, "the model raised RuntimeError: CUDA out of memory")


def test_a_nan_output_fails_whatever_the_tolerance() -> None:
    runtime = FakeRuntime({"probabilities": np.array([[np.nan, 0.0, 0.0], [0.0, 0.08, 0.92]])})

    result = probe({"probabilities": PROBABILITIES}, tolerance=10.0).run(runtime, AT)

    assert not result.passed
    assert "'probabilities'" in result.detail


def test_text_labels_compare_equal_or_fail_showing_both() -> None:
    runtime = FakeRuntime({"species": np.array(["setosa", "virginica"], dtype=object)})

    assert probe({"species": ["setosa", "virginica"]}).run(runtime, AT).passed
    failed = probe({"species": ["setosa", "versicolor"]}).run(runtime, AT)
    assert not failed.passed
    assert failed.detail == ("output 'species' is ['setosa', 'virginica'], "
                             "expected ['setosa', 'versicolor']")
