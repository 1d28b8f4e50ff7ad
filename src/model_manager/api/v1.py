"""KServe V1 / TF Serving REST: ``{"instances": [...]}`` in, ``{"predictions": [...]}`` out.

V1 has no datatypes or tensor names on the wire, so the model's signature gives them: the
default route's version is resolved first and its inputs say how to read the body. The request
then goes through the same ``PredictionRouter`` as v2 (traffic policy, shadows, batching, usage,
health, limits), with the v2 codec's rules for values (big integers, NaN, BYTES as UTF-8).

- Row format, ``{"instances": [row, ...]}``: with one input each row is that input's row; with
  several, each row is ``{"input": value, ...}``.
- Columnar format, ``{"inputs": tensor}`` (one input) or ``{"inputs": {"input": tensor, ...}}``.
- Answer: one prediction per row: the output's row with one output, else
  ``{"output": value, ...}``.
"""

from __future__ import annotations

import math
from typing import Any

import anyio.to_thread
import numpy as np
import orjson
from fastapi import APIRouter, Request, Response

from model_manager.api.bodies import json_value
from model_manager.api.codec import TensorLimits, check_element_count, dump_json, tensor_from_json
from model_manager.errors import InvalidInput
from model_manager.registry import Registry, VersionRecord
from model_manager.serving import InferenceRequest, InferInput, ModelCache, PredictionRouter, State
from model_manager.serving.inference import InferOutput


def v1_routes(router: PredictionRouter, registry: Registry, cache: ModelCache,
              limits: TensorLimits) -> APIRouter:
    api = APIRouter(prefix="/v1")

    @api.get("/models")
    async def models() -> dict[str, list[str]]:
        found = await anyio.to_thread.run_sync(registry.list_models)
        return {"models": [m.name for m in found if any(not v.archived for v in m.versions)]}

    @api.get("/models/{name}")
    @api.get("/models/{name}/versions/{version}")
    async def ready(name: str, version: str | None = None) -> Response:
        resolved = await router.resolve(name, version)
        state = cache.state_of(name, resolved.number)
        body = {"name": name, "version": str(resolved.number),
                "ready": state.state is not State.FAILED}
        if state.state is State.FAILED:
            return Response(orjson.dumps({**body, "reason": state.reason}), 503,
                            media_type="application/json")
        return Response(orjson.dumps(body), media_type="application/json")

    @api.post("/models/{name}:predict")
    @api.post("/models/{name}/versions/{version}:predict")
    async def predict(name: str, request: Request, version: str | None = None) -> Response:
        doc = json_value(await request.body())
        signature = await router.resolve(name, version)
        _, result, job = await router.predict(
            name, version, lambda: decode_v1(doc, signature, limits),
            routing_key=request.headers.get("x-routing-key"))
        body = dump_json({"predictions": predictions(result.outputs)}, result.outputs)
        if job is not None:
            await router.dispatch(job)
        return Response(body, media_type="application/json")

    return api


def decode_v1(doc: Any, version: VersionRecord, limits: TensorLimits) -> InferenceRequest:
    """The V1 body as an inference request for ``version``'s signature."""
    specs = {spec.name: spec for spec in version.signature.inputs}
    if not isinstance(doc, dict) or ("instances" in doc) == ("inputs" in doc):
        raise InvalidInput('a V1 body is a JSON object with either "instances" (a list of rows) '
                           'or "inputs" (the tensors)')
    if "instances" in doc:
        columns = _columns(doc["instances"], list(specs))
    elif len(specs) == 1 and not isinstance(doc["inputs"], dict):
        columns = {next(iter(specs)): doc["inputs"]}
    elif isinstance(doc["inputs"], dict):
        columns = doc["inputs"]
    else:
        raise InvalidInput(f'the model has inputs {list(specs)}: give "inputs" as an object '
                           f"of them")
    unknown = sorted(set(columns) - set(specs))
    if unknown:
        raise InvalidInput(f"the model has no input {unknown[:5]}; its inputs are {list(specs)}")
    return InferenceRequest(tuple(_tensor(name, specs[name].datatype, data, limits)
                                  for name, data in columns.items()))


def _columns(instances: Any, names: list[str]) -> dict[str, list[Any]]:
    if not isinstance(instances, list) or not instances:
        raise InvalidInput('"instances" must be a non-empty list of rows')
    if len(names) == 1:
        if all(isinstance(row, dict) and set(row) == set(names) for row in instances):
            return {names[0]: [row[names[0]] for row in instances]}
        return {names[0]: instances}
    if not all(isinstance(row, dict) for row in instances):
        raise InvalidInput(f"the model has inputs {names}: each instance must be an object "
                           f"of them")
    keys = set(instances[0])
    if any(set(row) != keys for row in instances):
        raise InvalidInput("every instance must name the same inputs")
    return {name: [row[name] for row in instances] for name in instances[0]}


def _tensor(name: str, datatype: str, data: Any, limits: TensorLimits) -> InferInput:
    shape = _shape_of(name, data)
    check_element_count(name, shape, limits)
    return InferInput(name, datatype, tensor_from_json(name, datatype, shape, data, limits))


def _shape_of(name: str, data: Any) -> tuple[int, ...]:
    """The shape of nested lists, which must be rectangular."""
    shape: list[int] = []
    level = data
    while isinstance(level, list):
        shape.append(len(level))
        if not level:
            break
        level = level[0]
    if math.prod(shape) and not _rectangular(data, shape):
        raise InvalidInput(f"input {name!r}: the rows are not all the same shape "
                           f"(the first is {shape[1:]})")
    return tuple(shape)


def _rectangular(data: Any, shape: list[int]) -> bool:
    if not shape:
        return not isinstance(data, list)
    return isinstance(data, list) and len(data) == shape[0] and all(
        _rectangular(item, shape[1:]) for item in data)


def predictions(outputs: tuple[InferOutput, ...]) -> list[Any]:
    """One prediction per row of the first dimension."""
    rows = [_plain(o) for o in outputs]
    if len(outputs) == 1:
        return rows[0] if isinstance(rows[0], list) else [rows[0]]
    count = min((len(r) for r in rows if isinstance(r, list)), default=1)
    return [{o.name: (r[i] if isinstance(r, list) else r) for o, r in zip(outputs, rows, strict=True)}
            for i in range(count)]


def _plain(output: InferOutput) -> Any:
    if output.datatype == "BYTES":
        texts = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                 for v in output.data.ravel()]
        return np.asarray(texts, dtype=object).reshape(output.data.shape).tolist()
    return output.data.tolist()
