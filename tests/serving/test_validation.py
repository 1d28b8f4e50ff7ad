"""Inputs checked against a signature; outputs cast, checked for NaN, shape and constraints."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from model_manager.errors import InvalidArtifact, InvalidInput, InvalidOutput, SignatureMismatch
from model_manager.runtimes import Signature, TensorSpec
from model_manager.serving import InferenceRequest, InferInput, RequestedOutput
from model_manager.serving.validation import (
    DEFAULT_POLICY,
    OutputRules,
    Violation,
    check_inputs,
    check_outputs,
    select_outputs,
)

SIGNATURE = Signature(
    (TensorSpec("input", "FP32", (-1, 4)), TensorSpec("mask", "BOOL", (-1,))),
    (TensorSpec("label", "INT64", (-1,)), TensorSpec("probabilities", "FP32", (-1, 3)),
     TensorSpec("name", "BYTES", (-1,))))


def request(*inputs: InferInput, outputs: tuple[str, ...] = ()) -> InferenceRequest:
    return InferenceRequest(inputs, tuple(RequestedOutput(o) for o in outputs))


def good_inputs(rows: int = 2) -> tuple[InferInput, InferInput]:
    return (InferInput("input", "FP32", np.zeros((rows, 4), np.float32)),
            InferInput("mask", "BOOL", np.ones(rows, bool)))


def rules(**validation: Any) -> OutputRules:
    return OutputRules.from_metadata({"validation": validation})


NO_RULES = OutputRules.from_metadata({})


# ---- inputs ------------------------------------------------------------------------------------


def test_matching_inputs_are_returned_by_name_in_signature_order() -> None:
    x, mask = good_inputs(3)

    tensors = check_inputs(SIGNATURE, request(mask, x))

    assert list(tensors) == ["input", "mask"]
    assert tensors["input"] is x.data and tensors["mask"] is mask.data


def test_a_missing_input_is_named() -> None:
    x, _ = good_inputs()

    with pytest.raises(SignatureMismatch) as info:
        check_inputs(SIGNATURE, request(x))

    assert info.value.message == "the model takes inputs ['input', 'mask']; missing ['mask']"
    assert isinstance(info.value, InvalidInput)


def test_an_unknown_input_is_named_with_the_missing_one() -> None:
    x, _ = good_inputs()
    extra = InferInput("weights", "FP32", np.zeros(2, np.float32))

    with pytest.raises(SignatureMismatch, match=r"missing \['mask'\]; unknown \['weights'\]"):
        check_inputs(SIGNATURE, request(x, extra))


def test_a_wrong_datatype_says_what_was_expected() -> None:
    _, mask = good_inputs()
    x = InferInput("input", "FP64", np.zeros((2, 4)))

    with pytest.raises(SignatureMismatch, match="input 'input' must be FP32, got FP64"):
        check_inputs(SIGNATURE, request(x, mask))


@pytest.mark.parametrize("shape", [(4,), (2, 4, 1), (2, 5), (2, 0)])
def test_a_wrong_rank_or_fixed_dimension_is_refused(shape: tuple[int, ...]) -> None:
    _, mask = good_inputs()
    x = InferInput("input", "FP32", np.zeros(shape, np.float32))

    with pytest.raises(SignatureMismatch) as info:
        check_inputs(SIGNATURE, request(x, mask))

    assert info.value.message == (f"input 'input' must have shape [-1, 4] (-1: any size), "
                                  f"got {list(shape)}")


@pytest.mark.parametrize("rows", [0, 1, 1000])
def test_a_variable_dimension_takes_any_size(rows: int) -> None:
    assert check_inputs(SIGNATURE, request(*good_inputs(rows)))["input"].shape == (rows, 4)


# ---- requested outputs -------------------------------------------------------------------------


def test_without_requested_outputs_all_are_computed() -> None:
    assert select_outputs(SIGNATURE, request(*good_inputs())) == ("label", "probabilities", "name")


def test_requested_outputs_are_kept_in_the_callers_order() -> None:
    chosen = select_outputs(SIGNATURE, request(*good_inputs(), outputs=("probabilities", "label")))

    assert chosen == ["probabilities", "label"]


def test_an_unknown_requested_output_is_refused() -> None:
    with pytest.raises(SignatureMismatch, match=r"no output \['scores'\]; its outputs are \['label'"):
        select_outputs(SIGNATURE, request(*good_inputs(), outputs=("label", "scores")))


# ---- rules from metadata -----------------------------------------------------------------------


def test_rules_default_to_no_constraints_and_the_default_policy() -> None:
    assert NO_RULES.constraints == {}
    assert NO_RULES.policy == {"nan": "reject", "signature": "reject", "constraints": "flag"}
    assert OutputRules.from_metadata({"validation": None}) == NO_RULES


def test_rules_keep_constraints_and_merge_a_partial_policy() -> None:
    parsed = rules(outputs={"probabilities": {"range": [0, 1], "sums_to_one": True}},
                   policy={"constraints": "reject"})

    assert parsed.constraints == {"probabilities": {"range": [0, 1], "sums_to_one": True}}
    assert parsed.policy == {**DEFAULT_POLICY, "constraints": "reject"}


@pytest.mark.parametrize("validation", [
    "reject everything",
    ["probabilities"],
    {"outputs": ["probabilities"]},
    {"outputs": {"probabilities": [0, 1]}},
    {"outputs": {"probabilities": {"between": [0, 1]}}},
    {"policy": {"nan": "ignore"}},
    {"policy": {"latency": "reject"}},
])
def test_malformed_rules_are_an_invalid_artifact(validation: Any) -> None:
    with pytest.raises(InvalidArtifact):
        OutputRules.from_metadata({"validation": validation})


def test_a_policy_that_is_not_an_object_is_an_invalid_artifact() -> None:
    with pytest.raises(InvalidArtifact):
        OutputRules.from_metadata({"validation": {"policy": "reject"}})


# ---- outputs -----------------------------------------------------------------------------------


def good_results(rows: int = 2) -> dict[str, np.ndarray]:
    return {"label": np.zeros(rows, np.int64),
            "probabilities": np.tile(np.array([0.7, 0.2, 0.1], np.float32), (rows, 1)),
            "name": np.array([b"setosa"] * rows, dtype=object)}


def test_good_outputs_are_typed_and_have_no_violations() -> None:
    results = good_results()
    results["label"] = results["label"].astype(np.int32)  # the runtime's own integer type

    outputs, violations = check_outputs(SIGNATURE, NO_RULES, ["label", "probabilities"], results)

    assert violations == []
    assert [(o.name, o.datatype) for o in outputs] == [("label", "INT64"), ("probabilities", "FP32")]
    assert outputs[0].data.dtype == np.int64
    np.testing.assert_array_equal(outputs[1].data, results["probabilities"])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_values_are_a_nan_violation(bad: float) -> None:
    results = good_results()
    results["probabilities"][1, 2] = bad

    _, violations = check_outputs(SIGNATURE, NO_RULES, ["probabilities"], results)

    assert violations == [Violation("nan", "output 'probabilities' holds 1 NaN or infinite value(s) of 6")]


def test_a_wrong_shape_is_a_signature_violation() -> None:
    results = good_results()
    results["probabilities"] = np.full((2, 4), 0.25, np.float32)

    _, violations = check_outputs(SIGNATURE, NO_RULES, ["probabilities"], results)

    assert [v.category for v in violations] == ["signature"]
    assert violations[0].message == "output 'probabilities' has shape [2, 4], the signature says [-1, 3]"


def test_a_missing_output_cannot_be_served() -> None:
    results = good_results()
    del results["probabilities"]

    with pytest.raises(InvalidOutput, match="the model returned no output 'probabilities'"):
        check_outputs(SIGNATURE, NO_RULES, ["label", "probabilities"], results)


def test_an_output_that_cannot_take_its_datatype_cannot_be_served() -> None:
    results = good_results()
    results["label"] = np.array(["cat", "dog"])

    with pytest.raises(InvalidOutput, match="output 'label' is not INT64"):
        check_outputs(SIGNATURE, NO_RULES, ["label"], results)


def test_values_outside_the_range_are_a_constraint_violation() -> None:
    results = good_results()
    results["probabilities"][0] = [1.5, -0.3, 0.8]
    checked = rules(outputs={"probabilities": {"range": [0, 1]}})

    _, violations = check_outputs(SIGNATURE, checked, ["probabilities"], results)

    assert violations == [Violation("constraint", "output 'probabilities': 2 value(s) outside [0, 1]")]


def test_values_on_the_range_bounds_are_inside() -> None:
    results = good_results()
    results["probabilities"][0] = [1.0, 0.0, 0.0]

    _, violations = check_outputs(SIGNATURE, rules(outputs={"probabilities": {"range": [0, 1]}}),
                                  ["probabilities"], results)

    assert violations == []


def test_rows_that_do_not_sum_to_one_are_a_constraint_violation() -> None:
    results = good_results(3)
    results["probabilities"][2] = [0.5, 0.2, 0.1]
    checked = rules(outputs={"probabilities": {"sums_to_one": True}})

    _, violations = check_outputs(SIGNATURE, checked, ["probabilities"], results)

    assert violations == [Violation("constraint",
                                    "output 'probabilities': 1 row(s) do not sum to one (within 0.001)")]


def test_sums_to_one_allows_the_given_tolerance() -> None:
    results = good_results()
    results["probabilities"][0] = [0.7, 0.2, 0.09]  # sums to 0.99
    loose = rules(outputs={"probabilities": {"sums_to_one": True, "tolerance": 0.02}})
    strict = rules(outputs={"probabilities": {"sums_to_one": True}})

    assert check_outputs(SIGNATURE, loose, ["probabilities"], results)[1] == []
    assert [v.category for v in check_outputs(SIGNATURE, strict, ["probabilities"], results)[1]] == [
        "constraint"]


def test_integer_labels_outside_the_allowed_ones_are_a_constraint_violation() -> None:
    results = good_results(4)
    results["label"] = np.array([0, 2, 7, 7], np.int64)
    checked = rules(outputs={"label": {"allowed": [0, 1, 2]}})

    _, violations = check_outputs(SIGNATURE, checked, ["label"], results)

    assert violations == [Violation("constraint",
                                    "output 'label': labels ['7'] are not among the allowed ['0', '1', '2']")]


def test_allowed_string_labels_match_bytes_outputs() -> None:
    results = good_results(3)
    results["name"] = np.array([b"setosa", b"virginica", b"rose"], dtype=object)
    as_text = rules(outputs={"name": {"allowed": ["setosa", "versicolor", "virginica"]}})
    as_bytes = rules(outputs={"name": {"allowed": [b"setosa", b"versicolor", b"virginica"]}})

    for checked in (as_text, as_bytes):
        _, violations = check_outputs(SIGNATURE, checked, ["name"], results)
        assert [v.category for v in violations] == ["constraint"]
        assert "labels ['rose']" in violations[0].message


def test_allowed_labels_all_present_pass() -> None:
    checked = rules(outputs={"name": {"allowed": ["setosa"]}, "label": {"allowed": [0]}})

    assert check_outputs(SIGNATURE, checked, ["label", "name"], good_results())[1] == []


def test_constraints_apply_only_to_their_output() -> None:
    checked = rules(outputs={"label": {"allowed": [5]}})

    assert check_outputs(SIGNATURE, checked, ["probabilities"], good_results())[1] == []


# ---- policy ------------------------------------------------------------------------------------


def test_by_default_nan_and_signature_reject_and_constraints_flag() -> None:
    assert NO_RULES.rejects(Violation("nan", ""))
    assert NO_RULES.rejects(Violation("signature", ""))
    assert not NO_RULES.rejects(Violation("constraint", ""))


def test_the_policy_can_be_overridden_either_way() -> None:
    custom = rules(policy={"nan": "flag", "signature": "flag", "constraints": "reject"})

    assert not custom.rejects(Violation("nan", ""))
    assert not custom.rejects(Violation("signature", ""))
    assert custom.rejects(Violation("constraint", ""))


def test_nan_is_reported_before_an_integer_cast_hides_it() -> None:
    signature = Signature((TensorSpec("x", "FP32", (-1,)),), (TensorSpec("label", "INT64", (-1,)),))
    _, violations = check_outputs(signature, OutputRules.from_metadata({}), ["label"],
                                  {"label": np.array([0.0, np.nan])})
    assert [v.category for v in violations] == ["nan"]


def test_allowed_numbers_compare_as_numbers() -> None:
    signature = Signature((TensorSpec("x", "FP32", (-1,)),), (TensorSpec("label", "FP64", (-1,)),))
    rules = OutputRules.from_metadata({"validation": {"outputs": {"label": {"allowed": [0, 1]}}}})
    _, violations = check_outputs(signature, rules, ["label"], {"label": np.array([0.0, 1.0, 2.0])})
    assert [v.message for v in violations] == [
        "output 'label': labels ['2.0'] are not among the allowed ['0', '1']"]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_non_finite_float_inputs_are_bad_input_naming_the_count(dtype: type) -> None:
    data = np.array([[1, np.nan, np.inf, -np.inf]], dtype=dtype)
    signature = Signature((TensorSpec("x", DATATYPE_OF[dtype], (-1, 4)),),
                          (TensorSpec("y", "FP32", (-1,)),))
    x = InferInput("x", DATATYPE_OF[dtype], data)

    with pytest.raises(InvalidInput) as info:
        check_inputs(signature, request(x))

    assert not isinstance(info.value, SignatureMismatch)
    assert info.value.message.startswith("input 'x' holds 3 NaN or infinite value(s) of 4")
    assert check_inputs(signature, request(x), allow_non_finite=True)["x"] is data


DATATYPE_OF = {np.float16: "FP16", np.float32: "FP32", np.float64: "FP64"}


def test_outputs_say_whether_they_are_finite_after_their_cast_and_json_writes_them_so() -> None:
    """The encoder trusts ``finite`` rather than scanning each output again: it must be true of
    the array served, which a cast can change (a large float64 into FP32 is infinite)."""
    from model_manager.api.codec import dump_json, json_data

    signature = Signature((), (TensorSpec("small", "FP32", (-1,)), TensorSpec("big", "FP32", (-1,)),
                               TensorSpec("nan_label", "INT64", (-1,))))
    results = {"small": np.array([0.5], np.float32), "big": np.array([1e300]),
               "nan_label": np.array([np.nan])}

    outputs, violations = check_outputs(signature, NO_RULES, ["small", "big", "nan_label"], results)

    assert [o.finite for o in outputs] == [True, False, True]
    assert [v.message for v in violations] == [
        "output 'big' holds 1 NaN or infinite value(s) of 1",
        "output 'nan_label' holds 1 NaN or infinite value(s) of 1"]
    assert outputs[1].data[0] == np.inf
    written = dump_json({"data": [json_data(o.data) for o in outputs]}, tuple(outputs))
    assert written.startswith(b'{"data":[[0.5],[Infinity],[')  # not null: clients read it back
