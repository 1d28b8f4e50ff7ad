"""``model-manager predict --grpc``: the same prediction over the gRPC endpoint, for a quick check
of it (metadata and inference both over gRPC)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import click
import grpc
import numpy as np

from model_manager.api.codec import TensorLimits, tensor_from_raw, tensor_to_raw
from model_manager.api.grpc.generated import inference_pb2 as pb
from model_manager.api.grpc.generated import inference_pb2_grpc as pb_grpc
from model_manager.runtimes.signature import DATATYPES
from model_manager.serving.inference import InferOutput

DEFAULT_GRPC_PORT = 8081


def address_for(url: str, given: str) -> str:
    """``given``, or the --url's host on the default gRPC port."""
    return given or f"{urlsplit(url).hostname or '127.0.0.1'}:{DEFAULT_GRPC_PORT}"


def predict(address: str, api_key: str | None, name: str, version: str | None,
            input_name: str | None, data: Any) -> dict[str, Any]:
    metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        try:
            model = stub.ModelMetadata(pb.ModelMetadataRequest(name=name, version=version or ""),
                                       metadata=metadata, timeout=60)
            specs = {spec.name: spec for spec in model.inputs}
            spec = specs.get(input_name) if input_name else model.inputs[0]
            if spec is None:
                raise click.BadParameter(f"the model's inputs are {list(specs)}",
                                         param_hint="--input-name")
            array = _array(data, spec.datatype)
            request = pb.ModelInferRequest(model_name=name, model_version=version or "")
            request.inputs.add(name=spec.name, datatype=spec.datatype, shape=array.shape)
            request.raw_input_contents.append(tensor_to_raw(InferOutput(spec.name, spec.datatype,
                                                                        array)))
            answer = stub.ModelInfer(request, metadata=metadata, timeout=60)
        except grpc.RpcError as exc:
            raise click.ClickException(f"{exc.code().name}: {exc.details()}") from exc
    outputs = {}
    for output, raw in zip(answer.outputs, answer.raw_output_contents, strict=True):
        values = tensor_from_raw(output.name, output.datatype, tuple(output.shape), raw,
                                 TensorLimits(max_bytes_element=len(raw)))
        if output.datatype == "BYTES":
            values = np.vectorize(_text, otypes=[object])(values)
        outputs[output.name] = values.tolist()
    return {"model_name": answer.model_name, "model_version": answer.model_version,
            "outputs": outputs}


def _array(data: Any, datatype: str) -> np.ndarray[Any, Any]:
    if datatype == "BYTES":
        encoded: np.ndarray[Any, Any] = np.vectorize(lambda v: str(v).encode("utf-8"),
                                                     otypes=[object])(np.asarray(data, dtype=object))
        return encoded
    try:
        return np.asarray(data, dtype=DATATYPES[datatype])
    except (ValueError, TypeError, OverflowError) as exc:
        raise click.BadParameter(f"not {datatype} values: {exc}", param_hint="--input") from exc


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
