"""The Open Inference Protocol's REST body, JSON and binary tensor data, to and from domain types.

Binary tensor data extension: the request's JSON part is the first ``Inference-Header-Content-Length``
bytes; tensors whose parameters carry ``binary_data_size`` follow it, in order. Fixed-size types
are raw little-endian row-major bytes; each BYTES element is a 4-byte little-endian length, then
its bytes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from model_manager.bounded_json import check_depth, load_json
from model_manager.errors import InvalidInput, TooLarge
from model_manager.runtimes.signature import DATATYPES
from model_manager.serving.inference import (
    InferenceRequest,
    InferenceResponse,
    InferInput,
    InferOutput,
    RequestedOutput,
)
from model_manager.serving.validation import all_finite
from model_manager.sizes import human_size
from model_manager.types import Array

HEADER_LENGTH = "inference-header-content-length"
HEADER_LENGTH_KEY = HEADER_LENGTH.encode()
"""The header's name as ASGI carries it."""
_JSON_KINDS = {"BOOL": "b", "UINT": "ui", "INT": "ui", "FP": "uif"}
_ALLOWED_KINDS = {datatype: next(kinds for prefix, kinds in _JSON_KINDS.items()
                                 if datatype.startswith(prefix))
                  for datatype in DATATYPES if datatype != "BYTES"}
"""The numpy kinds JSON values may parse as, for each datatype."""
_LITTLE_ENDIAN = {datatype: dtype.newbyteorder("<") for datatype, dtype in DATATYPES.items()
                  if datatype != "BYTES"}
"""Each fixed-size datatype's numpy type in the binary data's byte order."""
_WRITTEN_AS_IS = frozenset(np.dtype(t) for t in (
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
    np.float64))
"""The native dtypes orjson writes from the array exactly as from a list (``json_data``)."""
_MAX_LENGTH_DIGITS = 18
MAX_RANK = 64
"""Dimensions of a tensor, as numpy allows: JSON ``data`` nested deeper is refused."""


@dataclasses.dataclass(frozen=True)
class TensorLimits:
    """What one infer request may hold; past them, 400 (inputs) or 413 (sizes)."""

    max_inputs: int = 64
    max_elements: int = 16 * 1024 * 1024
    """Elements of one input tensor."""
    max_bytes_element: int = 1024 * 1024
    """Bytes of one BYTES element."""


def decode_request(body: bytes, header_length: str | None,
                   limits: TensorLimits = TensorLimits()) -> InferenceRequest:
    """Parse an infer request body; raises InvalidInput (or TooLarge) saying what is wrong.
    Numbers and nesting stay within ``bounded_json``'s limits: parameters objects are depth
    checked, ``data`` may nest ``MAX_RANK`` lists (the elements themselves are not walked twice)."""
    json_part, binary = _split(body, header_length)
    doc = load_json(json_part)
    if not isinstance(doc, dict):
        raise InvalidInput("the request body must be a JSON object with an 'inputs' list")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("the request needs a non-empty 'inputs' list")
    if len(raw_inputs) > limits.max_inputs:
        raise InvalidInput(f"the request has {len(raw_inputs)} inputs; the server takes at most "
                           f"{limits.max_inputs} (--max-inputs)")
    reader = _BinaryReader(binary) if binary else _NO_BINARY
    inputs = tuple([_decode_input(item, reader, limits) for item in raw_inputs])
    reader.check_consumed()
    outputs, id_, parameters = doc.get("outputs"), doc.get("id"), doc.get("parameters")
    return InferenceRequest(inputs, () if outputs is None else _decode_outputs(outputs),
                            id_ if id_ is None or type(id_) is str else _decode_id(id_),
                            {} if parameters is None else _object(parameters, "parameters"))


def encode_response(response: InferenceResponse,
                    request: InferenceRequest) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The response body and its headers (as ASGI sends them, but the length); binary where the
    request asked for it."""
    default = bool(request.parameters.get("binary_data_output", False)) \
        if request.parameters else False
    wanted = {o.name: o.binary for o in request.outputs} if request.outputs else None
    chunks: list[bytes] = []
    outputs = []
    for output in response.outputs:
        binary = None if wanted is None else wanted.get(output.name)
        outputs.append(_encode_output(output, default if binary is None else binary, chunks))
    doc: dict[str, Any] = {"model_name": response.model_name,
                           "model_version": str(response.model_version), "outputs": outputs}
    if response.id is not None:
        doc["id"] = response.id
    if response.parameters:
        doc["parameters"] = response.parameters
    header = dump_json(doc, response.outputs)
    if not chunks:
        return header, [(b"content-type", b"application/json")]
    headers = [(b"content-type", b"application/octet-stream"),
               (HEADER_LENGTH_KEY, str(len(header)).encode())]
    return b"".join([header, *chunks]), headers


def dump_json(doc: dict[str, Any], outputs: tuple[InferOutput, ...]) -> bytes:
    """orjson, unless an output holds NaN or infinities: those are written as the standard
    library does (``NaN``, ``Infinity``), which clients' JSON parsers accept and orjson would
    turn into null."""
    for o in outputs:  # a loop: a generator costs more than the check on a few outputs
        if not (o.finite if o.finite is not None
                else o.data.dtype.kind != "f" or all_finite(o.data)):
            return json.dumps(doc, separators=(",", ":"), default=_listed).encode()
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def _listed(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_data(array: Array) -> Any:
    """A tensor's elements for a JSON ``data`` list: the flat array itself where orjson writes
    it exactly as Python numbers (64-bit floats, integers, booleans: no list built), else a list
    (orjson would write a 32-bit float as its shortest 32-bit form, not as the double clients
    have always been sent)."""
    flat = array.ravel()
    return flat if flat.dtype in _WRITTEN_AS_IS else flat.tolist()


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    text = header_length.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= _MAX_LENGTH_DIGITS):
        raise InvalidInput(f"Inference-Header-Content-Length must be a byte count, "
                           f"got {header_length[:40]!r}")
    n = int(text)
    if n > len(body):
        raise InvalidInput(f"Inference-Header-Content-Length runs {n - len(body)} bytes past "
                           f"the body's {human_size(len(body))}")
    return body[:n], body[n:]


def _decode_input(item: Any, reader: _BinaryReader, limits: TensorLimits) -> InferInput:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise InvalidInput("each input needs a 'name', a 'datatype', a 'shape' and 'data'")
    name = item["name"]
    datatype = item.get("datatype")
    if datatype not in DATATYPES:
        raise InvalidInput(f"input {name!r}: unknown datatype {datatype!r}, "
                           f"expected one of {', '.join(DATATYPES)}")
    shape = _shape(name, item.get("shape"))
    check_element_count(name, shape, limits)
    parameters = item.get("parameters")
    if parameters is not None:  # (the label is built only when there is something to check)
        parameters = _object(parameters, f"input {name!r} parameters")
    if parameters and "binary_data_size" in parameters:
        data = reader.read(name, datatype, shape, parameters["binary_data_size"], limits)
    elif "data" in item:
        data = tensor_from_json(name, datatype, shape, item["data"], limits)
    else:
        raise InvalidInput(f"input {name!r} has neither 'data' nor binary_data_size")
    return InferInput(name, datatype, data)


def check_element_count(name: str, shape: tuple[int, ...], limits: TensorLimits) -> None:
    if math.prod(shape) > limits.max_elements:
        raise TooLarge(f"input {name!r}: shape {list(shape)[:8]} holds {math.prod(shape)} "
                       f"elements; the server takes at most {limits.max_elements} per input "
                       f"(--max-tensor-elements)")


def _shape(name: str, shape: Any) -> tuple[int, ...]:
    valid = type(shape) is list
    if valid:
        for d in shape:  # a loop: a generator costs more than the check on a short shape
            if type(d) is not int or d < 0:  # (``type``: bool is no dimension)
                valid = False
                break
    if not valid:
        raise InvalidInput(f"input {name!r}: shape must be a list of non-negative integers, "
                           f"got {_preview(shape)}")
    return tuple(shape)


def _preview(value: Any) -> str:
    """A caller's value, short, for an error message: never a walk of what it nests."""
    if isinstance(value, list):
        shown = ", ".join("[...]" if isinstance(v, list) else "{...}" if isinstance(v, dict)
                          else repr(v)[:24] for v in value[:8])
        return f"[{shown}{', ...' if len(value) > 8 else ''}]"
    return "{...}" if isinstance(value, dict) else repr(value)[:80]


def tensor_from_json(name: str, datatype: str, shape: tuple[int, ...], data: Any,
                     limits: TensorLimits) -> Array:
    """Input ``name``'s tensor from JSON ``data`` (flat or nested lists) holding ``shape``'s
    elements; InvalidInput when the values are not ``datatype``'s or do not fill ``shape``."""
    count = math.prod(shape)
    try:
        if datatype == "BYTES":
            array = np.empty(count, dtype=object)
            array[:] = [_to_bytes(name, v, limits) for v in _flatten(data)]
            return array.reshape(shape)
        raw = np.asarray(data)
        allowed = _ALLOWED_KINDS[datatype]
        if raw.size and raw.dtype.kind not in allowed and not _all_ints(datatype, data):
            raise InvalidInput(f"input {name!r}: data holds {raw.dtype.kind!r}-kind values, "
                               f"not {datatype}")
        if datatype[:2] == "FP" or not raw.size:  # numbers into floats: as from the list
            array = raw.astype(DATATYPES[datatype], copy=False)
        else:  # converting from the list, not from ``raw``, makes out-of-range integers an error
            array = np.asarray(data, dtype=DATATYPES[datatype])
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(f"input {name!r}: data is not a list of {datatype} values "
                           f"({exc})") from exc
    if array.size != count:
        raise InvalidInput(f"input {name!r}: shape {list(shape)} holds {count} elements, "
                           f"data has {array.size}")
    return array if array.shape == shape else array.reshape(shape)


def _all_ints(datatype: str, data: Any) -> bool:
    """Integers past int64 make numpy guess float; they are still fine for UINT64."""
    return "INT" in datatype and all(type(v) is int for v in _flatten(data))


def _flatten(data: Any, depth: int = 0) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if depth == MAX_RANK:
        raise InvalidInput(f"data nests lists more than {MAX_RANK} levels deep")
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item, depth + 1))
    return flat


def _to_bytes(name: str, value: Any, limits: TensorLimits) -> bytes:
    if not isinstance(value, str):
        raise InvalidInput(f"input {name!r}: BYTES data must be strings, got {type(value).__name__}")
    encoded = value.encode("utf-8")
    check_bytes_element(name, len(encoded), limits)
    return encoded


def check_bytes_element(name: str, length: int, limits: TensorLimits) -> None:
    if length > limits.max_bytes_element:
        raise TooLarge(f"input {name!r}: a BYTES element of {human_size(length)}; the server "
                       f"takes at most {human_size(limits.max_bytes_element)} "
                       f"(--max-bytes-element)")


class _BinaryReader:
    """Takes each binary input's bytes from the data after the JSON header, in order."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def read(self, name: str, datatype: str, shape: tuple[int, ...], size: Any,
             limits: TensorLimits) -> Array:
        if type(size) is not int or size < 0:  # (``type``: a bool is no byte count)
            raise InvalidInput(f"input {name!r}: binary_data_size must be a byte count")
        end = self._offset + size
        if end > len(self._data):
            raise InvalidInput(f"input {name!r}: binary_data_size runs {end - len(self._data)} "
                               f"bytes past the body ({human_size(len(self._data) - self._offset)} "
                               f"left)")
        # One input holding all of the binary data (most requests) reads the bytes themselves:
        # numpy takes them faster than a view.
        chunk = self._data if size == len(self._data) else memoryview(self._data)[self._offset:end]
        self._offset = end
        return tensor_from_raw(name, datatype, shape, chunk, limits, "binary_data_size")

    def check_consumed(self) -> None:
        if self._offset != len(self._data):
            raise InvalidInput(f"{human_size(len(self._data) - self._offset)} after the JSON "
                               "header belong to no input")


_NO_BINARY = _BinaryReader(b"")
"""The reader of a body with no binary part: nothing to read, so it never changes (a read of
more than 0 bytes fails before it moves)."""


def tensor_from_raw(name: str, datatype: str, shape: tuple[int, ...], chunk: memoryview | bytes,
                    limits: TensorLimits, declared: str = "its raw contents") -> Array:
    """One input tensor from its raw bytes (the binary extension's, or gRPC's
    ``raw_input_contents``): fixed-size types little-endian row-major, BYTES length-prefixed.
    ``declared`` names what gave the size, for the error message."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return _bytes_elements(name, memoryview(chunk), count, limits).reshape(shape)
    dtype = _LITTLE_ENDIAN[datatype]
    expected = count * dtype.itemsize
    if len(chunk) != expected:
        raise InvalidInput(f"input {name!r}: shape {list(shape)} of {datatype} needs "
                           f"{human_size(expected)}, {declared} says "
                           f"{_difference(len(chunk) - expected)}")
    return np.frombuffer(chunk, dtype=dtype).reshape(shape)


def _bytes_elements(name: str, chunk: memoryview, count: int, limits: TensorLimits) -> Array:
    elements = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        if offset + 4 > len(chunk):
            raise InvalidInput(f"input {name!r}: BYTES data ends before element {i}")
        (length,) = struct.unpack_from("<I", chunk, offset)
        check_bytes_element(name, length, limits)
        offset += 4
        if offset + length > len(chunk):
            raise InvalidInput(f"input {name!r}: BYTES element {i} runs past its data")
        elements[i] = bytes(chunk[offset:offset + length])
        offset += length
    if offset != len(chunk):
        raise InvalidInput(f"input {name!r}: BYTES data holds more than {count} elements")
    return elements


def _decode_outputs(raw: Any) -> tuple[RequestedOutput, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(o, dict) for o in raw):
        raise InvalidInput("'outputs' must be a list of objects with a 'name'")
    outputs = []
    for item in raw:
        if not isinstance(item.get("name"), str):
            raise InvalidInput("each requested output needs a 'name'")
        parameters = _object(item.get("parameters"), f"output {item['name']!r} parameters")
        if parameters.get("classification"):
            raise InvalidInput("the classification extension is not supported; "
                               "request the probabilities output instead")
        binary = parameters.get("binary_data")
        outputs.append(RequestedOutput(item["name"], None if binary is None else bool(binary)))
    return tuple(outputs)


def _decode_id(raw: Any) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    raise InvalidInput("'id' must be a string")


def _object(raw: Any, what: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if type(raw) is dict:  # what JSON parses to (the type check first costs less)
        found: dict[str, Any] = raw
    elif isinstance(raw, Mapping):
        found = dict(raw)
    else:
        raise InvalidInput(f"{what} must be a JSON object")
    for value in found.values():  # an object of plain values (most parameters) is not walked
        if isinstance(value, list | dict):
            check_depth(found, what)
            break
    return found


def _encode_output(output: InferOutput, binary: bool, chunks: list[bytes]) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": output.name, "datatype": output.datatype,
                           "shape": list(output.data.shape)}
    if binary:
        data = tensor_to_raw(output)
        chunks.append(data)
        doc["parameters"] = {"binary_data_size": len(data)}
    elif output.datatype == "BYTES":
        doc["data"] = [_to_text(v) for v in output.data.ravel()]
    else:
        doc["data"] = json_data(output.data)
    return doc


def tensor_to_raw(output: InferOutput) -> bytes:
    """An output tensor's raw bytes, as the binary extension and gRPC's ``raw_output_contents``
    carry them: fixed-size types little-endian row-major, BYTES length-prefixed."""
    if output.datatype != "BYTES":
        return np.ascontiguousarray(output.data, dtype=output.data.dtype.newbyteorder("<")).tobytes()
    parts = []
    for value in output.data.ravel():
        raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
        parts.append(struct.pack("<I", len(raw)) + raw)
    return b"".join(parts)


def _to_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _difference(extra: int) -> str:
    """How far a declared size is off, exact however large the sizes: ``"4 bytes more"``."""
    return f"{abs(extra)} bytes {'more' if extra > 0 else 'less'}"
