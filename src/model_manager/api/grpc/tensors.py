"""``ModelInferRequest`` / ``ModelInferResponse`` to and from the serving layer's types.

Inputs come either all as ``raw_input_contents`` (tritonclient's default: the same bytes as the
REST binary extension) or each as typed ``contents``. The answer uses the request's choice: raw
outputs for raw inputs, typed contents otherwise (raw after all when an output has no typed
field, FP16, since a response may not mix the two). The limits, checks and messages are the
REST codec's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from model_manager.api.codec import (
    MAX_RANK,
    TensorLimits,
    check_bytes_element,
    check_element_count,
    tensor_from_raw,
    tensor_to_raw,
)
from model_manager.api.grpc.generated import inference_pb2 as pb
from model_manager.errors import InvalidInput
from model_manager.runtimes.signature import DATATYPES
from model_manager.serving.inference import (
    InferenceRequest,
    InferenceResponse,
    InferInput,
    RequestedOutput,
)
from model_manager.types import Array

CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
            "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
            "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
            "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}
"""The typed field of ``InferTensorContents`` that carries each datatype (FP16 has none)."""


def parse(message_type: Any, data: bytes) -> Any:
    """A request message from its bytes; a corrupted one is the caller's bad input."""
    try:
        return message_type.FromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise InvalidInput(f"the request is not a valid {message_type.DESCRIPTOR.name} "
                           f"({exc})") from None


def decode_request(message: pb.ModelInferRequest, limits: TensorLimits) -> InferenceRequest:
    """The request as the router takes it; raises InvalidInput (or TooLarge) as the REST codec does."""
    if not message.inputs:
        raise InvalidInput("the request needs a non-empty 'inputs' list")
    if len(message.inputs) > limits.max_inputs:
        raise InvalidInput(f"the request has {len(message.inputs)} inputs; the server takes at "
                           f"most {limits.max_inputs} (--max-inputs)")
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise InvalidInput(f"raw_input_contents holds {len(raw)} tensors for "
                           f"{len(message.inputs)} inputs; give every input's data there, or "
                           f"none")
    inputs = tuple(_decode_input(tensor, raw[i] if raw else None, limits)
                   for i, tensor in enumerate(message.inputs))
    outputs = tuple(_requested(o) for o in message.outputs)
    return InferenceRequest(inputs, outputs, message.id or None,
                            parameters_of(message.parameters, "parameters"))


def _decode_input(tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None,
                  limits: TensorLimits) -> InferInput:
    name, datatype = tensor.name, tensor.datatype
    if datatype not in DATATYPES:
        raise InvalidInput(f"input {name!r}: unknown datatype {datatype!r}, "
                           f"expected one of {', '.join(DATATYPES)}")
    shape = tuple(tensor.shape)
    if len(shape) > MAX_RANK or any(d < 0 for d in shape):
        raise InvalidInput(f"input {name!r}: shape must be at most {MAX_RANK} non-negative "
                           f"integers, got {list(shape)[:8]}")
    check_element_count(name, shape, limits)
    if raw is not None:
        return InferInput(name, datatype, tensor_from_raw(name, datatype, shape, raw, limits,
                                                          "raw_input_contents"))
    field = CONTENTS.get(datatype)
    if field is None:
        raise InvalidInput(f"input {name!r}: {datatype} has no typed contents; send it in "
                           f"raw_input_contents")
    values = getattr(tensor.contents, field)
    count = math.prod(shape)
    if len(values) != count:
        raise InvalidInput(f"input {name!r}: shape {list(shape)} holds {count} elements, "
                           f"contents.{field} has {len(values)}")
    return InferInput(name, datatype, _typed(name, datatype, values, limits).reshape(shape))


def _typed(name: str, datatype: str, values: Any, limits: TensorLimits) -> Array:
    if datatype == "BYTES":
        array = np.empty(len(values), dtype=object)
        for i, value in enumerate(values):
            check_bytes_element(name, len(value), limits)
            array[i] = value
        return array
    try:
        return np.array(values, dtype=DATATYPES[datatype])
    except OverflowError as exc:  # int_contents are int32: an INT8 input may hold 300
        raise InvalidInput(f"input {name!r}: contents out of range for {datatype} "
                           f"({exc})") from None


def _requested(output: pb.ModelInferRequest.InferRequestedOutputTensor) -> RequestedOutput:
    parameters = parameters_of(output.parameters, f"output {output.name!r} parameters")
    if parameters.get("classification"):
        raise InvalidInput("the classification extension is not supported; "
                           "request the probabilities output instead")
    return RequestedOutput(output.name)


def parameters_of(parameters: Any, what: str) -> dict[str, Any]:
    """A protocol parameters map as plain values."""
    found: dict[str, Any] = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is None:
            raise InvalidInput(f"{what}: {key!r} has no value")
        found[key] = getattr(parameter, choice)
    return found


def set_parameters(target: Any, parameters: dict[str, Any]) -> None:
    for key, value in parameters.items():
        if isinstance(value, bool):
            target[key].bool_param = value
        elif isinstance(value, int):
            if value >= 2**63:
                target[key].uint64_param = value
            else:
                target[key].int64_param = value
        elif isinstance(value, float):
            target[key].double_param = value
        else:
            target[key].string_param = str(value)


def encode_response(response: InferenceResponse, request: InferenceRequest,
                    raw: bool) -> pb.ModelInferResponse:
    """The answer, with the request's ``id`` and parameters echoed; outputs as raw contents when
    ``raw`` (the request's inputs were)."""
    message = pb.ModelInferResponse(model_name=response.model_name,
                                    model_version=str(response.model_version),
                                    id=request.id or "")
    set_parameters(message.parameters, request.parameters)
    raw = raw or any(o.datatype not in CONTENTS for o in response.outputs)
    for output in response.outputs:
        tensor = message.outputs.add(name=output.name, datatype=output.datatype,
                                     shape=output.data.shape)
        if raw:
            message.raw_output_contents.append(tensor_to_raw(output))
        elif output.datatype == "BYTES":
            tensor.contents.bytes_contents.extend(
                v if isinstance(v, bytes) else str(v).encode("utf-8") for v in output.data.ravel())
        else:
            getattr(tensor.contents, CONTENTS[output.datatype]).extend(output.data.ravel().tolist())
    return message
