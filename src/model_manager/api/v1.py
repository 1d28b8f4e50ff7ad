"""KServe V1 / TF Serving REST: ``{"instances": [...]}`` in, ``{"predictions": [...]}`` out.

V1 has no datatypes or tensor names on the wire, so the model's signature gives them: the
version the request names (else the default route's) is resolved first and its inputs say how
to read the body. The request then goes through the same ``PredictionRouter`` as v2 (traffic
policy, shadows, batching, usage, health, limits), with the v2 codec's rules for values (big
integers, NaN, BYTES as UTF-8).

- Row format, ``{"instances": [row, ...]}``: with one input each row is that input's row (or
  ``{"input": row}``); with several, each row is ``{"input": value, ...}``.
- Columnar format, ``{"inputs": tensor}`` (one input) or ``{"inputs": {"input": tensor, ...}}``.
- Answer: one prediction per row: the output's row with one output, else
  ``{"output": value, ...}`` (an output without a first dimension is repeated on every row).
"""

from __future__ import annotations

import logging
from typing import Any

import anyio.to_thread
import numpy as np
import orjson
from fastapi import APIRouter, Request, Response

from model_manager import errors
from model_manager.api.codec import (
    MAX_RANK,
    TensorLimits,
    check_element_count,
    dump_json,
    tensor_from_json,
)
from model_manager.bounded_json import load_json
from model_manager.errors import InvalidInput
from model_manager.registry import Registry, VersionRecord
from model_manager.serving import InferenceRequest, InferInput, ModelCache, PredictionRouter, State
from model_manager.serving.inference import InferOutput

log = logging.getLogger(__name__)


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
        # Ready means servable, as v2's model ready: loadable (a version not loaded yet loads on
        # its first request) and not failed.
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
        resolved = await router.resolve(name, version)
        raw = await request.body()
        _, result, job = await router.predict(
            name, version, lambda: _decoded(raw, resolved, limits),
            routing_key=request.headers.get("x-routing-key"))
        body = dump_json({"predictions": predictions(result.outputs)}, result.outputs)
        if job is not None:
            await router.dispatch(job)
        return Response(body, media_type="application/json")

    return api


def _decoded(raw: bytes, version: VersionRecord, limits: TensorLimits) -> InferenceRequest:
    """The body decoded. Whatever fails while decoding it is the caller's bad input, so it never
    counts against the model (its health, the canary guard): an unexpected exception is logged
    as the bug it is, and answered as a body the server could not decode."""
    try:
        return decode_v1(load_json(raw) if raw.strip() else None, version, limits)
    except errors.ModelManagerError:
        raise
    except Exception as exc:
        log.error("request failed: status=400 method=POST model=%s error=undecodable V1 body, "
                  "unhandled %s", version.model, type(exc).__name__, exc_info=exc)
        raise InvalidInput(f"the request body could not be decoded "
                           f"({type(exc).__name__})") from None


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
    """Each input's rows, stacked across the instances."""
    if not isinstance(instances, list) or not instances:
        raise InvalidInput('"instances" must be a non-empty list of rows')
    if len(names) == 1 and not any(isinstance(row, dict) for row in instances):
        return {names[0]: instances}
    if len(names) == 1 and not all(isinstance(row, dict) and set(row) == set(names)
                                   for row in instances):
        raise InvalidInput(f"the model's one input is {names[0]!r}: each instance must be its "
                           f"row, or an object of it alone ({{{names[0]!r}: row}})")
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
    if not _is_rectangular(data, shape):
        raise InvalidInput(f"input {name!r}: the rows are not all the same shape "
                           f"(the first is {list(shape[1:])})")
    return InferInput(name, datatype, tensor_from_json(name, datatype, shape, data, limits))


def _shape_of(name: str, data: Any) -> tuple[int, ...]:
    """The shape of nested lists as their first elements give it."""
    shape: list[int] = []
    level = data
    while isinstance(level, list):
        if len(shape) == MAX_RANK:
            raise InvalidInput(f"input {name!r}: data nests lists more than {MAX_RANK} levels "
                               f"deep")
        shape.append(len(level))
        if not level:
            break
        level = level[0]
    return tuple(shape)


def _is_rectangular(data: Any, shape: tuple[int, ...]) -> bool:
    """Whether every list at each depth has that dimension's length (one pass per level, no
    recursion)."""
    level = [data]
    for size in shape:
        if not all(type(item) is list and len(item) == size for item in level):
            return False
        level = [child for item in level for child in item]
    return not any(type(item) is list for item in level)


def predictions(outputs: tuple[InferOutput, ...]) -> list[Any]:
    """One prediction per row of the first dimension, which the outputs must share."""
    rows = [_plain(o) for o in outputs]
    if len(outputs) == 1:
        return rows[0] if isinstance(rows[0], list) else [rows[0]]
    counts = {o.name: o.data.shape[0] for o in outputs if o.data.ndim}
    if len(set(counts.values())) > 1:
        raise InvalidInput(f"the model's outputs have different first dimensions ({counts}), "
                           f"so V1 cannot answer them as rows; ask v2 infer")
    return [{o.name: (r[i] if o.data.ndim else r) for o, r in zip(outputs, rows, strict=True)}
            for i in range(min(counts.values(), default=1))]


def _plain(output: InferOutput) -> Any:
    if output.datatype == "BYTES":
        texts = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                 for v in output.data.ravel()]
        return np.asarray(texts, dtype=object).reshape(output.data.shape).tolist()
    return output.data.tolist()
