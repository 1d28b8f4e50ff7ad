"""The request path's shortcuts answer exactly as the general path they skip, on random input.

- JSON data for a floating-point input is converted once, from the parsed array, rather than a
  second time from the list: same values, same dtype, same refusals.
- An output already of its signature's dtype is not cast, and the NaN count runs only when an
  output is not all finite: same outputs, same violations.
- A shape is compared with a tensor's by a rule decided once per tensor (the dimensions
  themselves, or those after the first when only the first is free): the same verdicts as
  comparing each dimension. A request's shape is checked by a loop on exact types: it takes the
  same shapes as the general rule.
- A small float tensor is found finite by its sum as Python floats before ``isfinite().all()``
  is asked: the same verdicts, overflowing sums included.
- Output data of 64-bit floats, integers and booleans goes to orjson as the array itself, not
  as a list: the same bytes on the wire.
- An infer path is split once and kept: the same model and version as splitting it each time.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import numpy as np
import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from model_manager.api.codec import TensorLimits, _shape, encode_response, tensor_from_json
from model_manager.api.infer import _infer_target, _split_infer_path
from model_manager.errors import InvalidInput, InvalidOutput
from model_manager.runtimes import Signature, TensorSpec
from model_manager.runtimes.signature import DATATYPES
from model_manager.serving import InferenceRequest, InferenceResponse, InferInput, InferOutput
from model_manager.serving.validation import (
    OutputRules,
    Violation,
    all_finite,
    check_outputs,
)

FLOATS = ("FP16", "FP32", "FP64")
NUMBERS = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
                    st.booleans(), st.sampled_from([0, 1, -1, 2**53 + 1, 2**63, 2**64 - 1]))


def general_tensor(datatype: str, shape: tuple[int, ...], data: Any) -> np.ndarray | str:
    """What the codec did before the shortcut: check the kinds, then convert from the list."""
    try:
        raw = np.asarray(data)
        if raw.size and raw.dtype.kind not in "uif":
            return "refused"
        array = np.asarray(data, dtype=DATATYPES[datatype]) if raw.size else raw.astype(
            DATATYPES[datatype])
    except (ValueError, TypeError, OverflowError):
        return "refused"
    return array.reshape(shape) if array.size == math.prod(shape) else "refused"


def fast_tensor(datatype: str, shape: tuple[int, ...], data: Any) -> np.ndarray | str:
    try:
        return tensor_from_json("x", datatype, shape, data, TensorLimits())
    except InvalidInput:
        return "refused"


@settings(max_examples=300, deadline=None)
@given(datatype=st.sampled_from(FLOATS), rows=st.integers(0, 3), columns=st.integers(1, 4),
       values=st.lists(NUMBERS, min_size=0, max_size=12), nested=st.booleans())
def test_float_json_data_converts_as_the_general_path(datatype: str, rows: int, columns: int,
                                                      values: list[Any], nested: bool) -> None:
    values = values[:rows * columns]
    shape = (rows, columns)
    data: Any = values
    if nested and len(values) == rows * columns:
        data = [values[i * columns:(i + 1) * columns] for i in range(rows)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow into FP16/FP32 warns alike
        want, got = general_tensor(datatype, shape, data), fast_tensor(datatype, shape, data)
    if isinstance(want, str) or isinstance(got, str):
        assert want == got
        return
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want, equal_nan=True)


def general_outputs(signature: Signature, rules: OutputRules, names: list[str],
                    results: dict[str, np.ndarray]) -> tuple[list[Any], list[Violation]]:
    """check_outputs written plainly: count NaNs, cast every output (and count the infinities a
    cast makes, as an integer past FP16's range), shapes by a generator."""
    specs = {spec.name: spec for spec in signature.outputs}
    outputs, violations = [], []
    for name in names:
        raw = np.asarray(results[name])
        bad = 0
        if raw.dtype.kind in "fc":
            bad = int(raw.size - np.count_nonzero(np.isfinite(raw)))
            if bad:
                violations.append(Violation("nan", f"output {name!r} holds {bad} NaN or infinite "
                                                   f"value(s) of {raw.size}"))
        try:
            with np.errstate(invalid="ignore", over="ignore"):
                array = raw.astype(DATATYPES[specs[name].datatype], copy=False)
        except (TypeError, ValueError):
            raise InvalidOutput("cast") from None
        made = int(array.size - np.count_nonzero(np.isfinite(array))) \
            if array.dtype.kind in "fc" and not bad else 0
        if made:
            violations.append(Violation("nan", f"output {name!r} holds {made} NaN or infinite "
                                               f"value(s) of {array.size}"))
        spec = specs[name]
        fits = len(array.shape) == len(spec.shape) and all(
            want in (-1, got) for want, got in zip(spec.shape, array.shape, strict=True))
        if not fits:
            violations.append(Violation("signature", f"output {name!r} has shape "
                                                     f"{list(array.shape)}, the signature says "
                                                     f"{list(spec.shape)}"))
        outputs.append((name, spec.datatype, array))
    return outputs, violations


NUMERIC = [d for d in DATATYPES if d not in ("BYTES", "BOOL")]


@settings(max_examples=300, deadline=None)
@given(declared=st.sampled_from(NUMERIC), produced=st.sampled_from(NUMERIC),
       shape=st.lists(st.integers(0, 3), min_size=1, max_size=3),
       declared_shape=st.lists(st.sampled_from([-1, 0, 1, 2, 3]), min_size=1, max_size=3),
       specials=st.lists(st.sampled_from([np.nan, np.inf, -np.inf, 0.5, 7.0]), max_size=3))
@example(declared="FP16", produced="INT64", shape=[1], declared_shape=[-1],
         specials=[np.nan])  # NaN as int64's minimum, past FP16's range: infinite once cast
def test_outputs_are_checked_as_the_general_path(declared: str, produced: str, shape: list[int],
                                                 declared_shape: list[int],
                                                 specials: list[float]) -> None:
    values = np.arange(math.prod(shape), dtype=np.float64)
    values[:len(specials)] = specials[:values.size]
    with warnings.catch_warnings(), np.errstate(invalid="ignore", over="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        result = values.reshape(shape).astype(DATATYPES[produced])
        signature = Signature((TensorSpec("x", "FP32", (-1,)),),
                              (TensorSpec("y", declared, tuple(declared_shape)),))
        rules = OutputRules.from_metadata({})
        want = general_outputs(signature, rules, ["y"], {"y": result})
        outputs, violations = check_outputs(signature, rules, ["y"], {"y": result})
    assert violations == want[1]
    (name, datatype, array), = want[0]
    assert (outputs[0].name, outputs[0].datatype) == (name, datatype)
    assert outputs[0].data.dtype == array.dtype
    assert np.array_equal(outputs[0].data, array, equal_nan=True)


@given(want=st.lists(st.integers(-1, 3), max_size=4), got=st.lists(st.integers(0, 3), max_size=4))
@example(want=[-1, 2], got=[5, 2]).via("rows")
@example(want=[-1, 2], got=[5, 3]).via("rows")
@example(want=[-1, 2], got=[5]).via("rows")
@example(want=[2, 3], got=[2, 3]).via("exact")
@example(want=[2, -1], got=[3, 7]).via("each")
def test_shapes_fit_as_the_general_rule(want: list[int], got: list[int]) -> None:
    general = len(want) == len(got) and all(w in (-1, g) for w, g in zip(want, got, strict=True))
    assert TensorSpec("x", "FP32", tuple(want)).fits(tuple(got)) == general


@given(shape=st.one_of(st.lists(st.one_of(st.integers(-3, 2**64), st.booleans(), st.floats(),
                                          st.text(max_size=2), st.none(), st.lists(st.integers())),
                                max_size=5),
                       st.integers(), st.text(max_size=3), st.none(), st.tuples(st.integers(0, 3))))
def test_request_shapes_are_taken_as_the_general_rule(shape: Any) -> None:
    general = isinstance(shape, list) and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    try:
        taken = _shape("x", shape) == tuple(shape)
    except InvalidInput:
        taken = False
    assert taken == general


@given(dtype=st.sampled_from(["float16", "float32", "float64", "complex64"]),
       values=st.lists(st.one_of(st.floats(-1e4, 1e4),
                                 st.sampled_from([1e308, -1e308, 65504.0, 3e38])),
                       max_size=40),
       bad=st.one_of(st.none(), st.tuples(st.sampled_from([math.nan, math.inf, -math.inf]),
                                          st.integers(0, 40))),
       columns=st.integers(1, 4))
def test_finiteness_is_found_as_isfinite_finds_it(dtype: str, values: list[float],
                                                  bad: tuple[float, int] | None,
                                                  columns: int) -> None:
    if bad is not None:
        values.insert(bad[1], bad[0])
    with np.errstate(over="ignore"):  # 1e308 in float16 is infinite: a case, not a failure
        array = np.array(values, dtype=dtype)
    array = array[:len(array) - len(array) % columns].reshape(-1, columns)
    assert all_finite(array) == bool(np.isfinite(array).all())


def listed_body(outputs: tuple[InferOutput, ...]) -> bytes:
    """The response body as it was written before: every tensor as a list."""
    doc = {"model_name": "m", "model_version": "1", "outputs": [
        {"name": o.name, "datatype": o.datatype, "shape": list(o.data.shape),
         "data": o.data.ravel().tolist()} for o in outputs], "id": "x"}
    finite = all(o.data.dtype.kind != "f" or bool(np.isfinite(o.data).all()) for o in outputs)
    return orjson.dumps(doc) if finite else json.dumps(doc, separators=(",", ":")).encode()


@settings(max_examples=300, deadline=None)
@given(datatype=st.sampled_from([*NUMERIC, "BOOL"]), shape=st.lists(st.integers(0, 3), max_size=3),
       raw=st.binary(min_size=27 * 16, max_size=27 * 16), strided=st.booleans(),
       big_endian=st.booleans())
def test_output_data_is_written_byte_for_byte_as_lists_were(datatype: str, shape: list[int],
                                                             raw: bytes, strided: bool,
                                                             big_endian: bool) -> None:
    """Any bit pattern of each datatype (NaN and infinities among the floats), contiguous or
    not, in either byte order."""
    dtype = DATATYPES[datatype]
    count = math.prod(shape) * (2 if strided else 1)
    if datatype == "BOOL":
        array = np.frombuffer(raw, np.uint8)[:count] % 2 == 1
    else:
        array = np.frombuffer(raw[:count * dtype.itemsize], dtype)
    array = (array[::2] if strided else array).reshape(shape)
    if big_endian:
        array = array.astype(array.dtype.newbyteorder(">"))
    outputs = (InferOutput("y", datatype, array),)
    body, _ = encode_response(InferenceResponse("m", 1, outputs, "x"),
                              InferenceRequest((InferInput("x", "FP32", np.zeros(1)),)))
    assert body == listed_body(outputs)


@given(path=st.one_of(
    st.text(alphabet="/abv0123456789._-", max_size=40),
    st.builds("/v2/models/{}/infer".format, st.text(alphabet="/abversion1", max_size=20)),
    st.builds("/v2/models/{}/versions/{}/infer".format, st.text(alphabet="/ab1", max_size=6),
              st.text(alphabet="/ab1", max_size=6))))
def test_infer_paths_are_read_as_when_split_each_time(path: str) -> None:
    """The first call splits and keeps the path; the second finds it kept."""
    assert _infer_target(path) == _split_infer_path(path)
    assert _infer_target(path) == _split_infer_path(path)
