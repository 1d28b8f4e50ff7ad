"""``inference.GRPCInferenceService``: the REST endpoints' twins, over the same router.

Each RPC checks the caller's API key (``authorization: Bearer`` or ``x-api-key`` metadata) with
the permission its REST twin needs, then answers as that twin does: domain errors become the
status code of ``CODES`` with the same message (``retry-after`` in the trailing metadata where
REST sends the header), and only a bug is INTERNAL. Requests arrive as bytes and are parsed here,
so that a corrupted message is INVALID_ARGUMENT rather than the framework's INTERNAL.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio.to_thread
import grpc

from model_manager import __version__, errors
from model_manager.access import GRANTS, KeyRing
from model_manager.api.codec import TensorLimits
from model_manager.api.errors import BUG_MESSAGE, log_bug, log_failure, status_of
from model_manager.api.grpc import tensors
from model_manager.api.grpc.generated import inference_pb2 as pb
from model_manager.api.v2 import EXTENSIONS, Readiness, metadata_of
from model_manager.registry import Registry, acting_as
from model_manager.serving import InferenceRequest, ModelCache, PredictionRouter, State, VersionLifecycle

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"

CODES: dict[type[errors.ModelManagerError], grpc.StatusCode] = {
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidArtifact: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    errors.TooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.InsufficientStorage: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Saturated: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.PredictionTimeout: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.ModelError: grpc.StatusCode.UNKNOWN,
}
"""Domain errors to status codes, as ``api/errors.STATUS`` maps them to HTTP. A model that fails
while predicting is UNKNOWN (HTTP 500): INTERNAL is kept for the server's own bugs."""

PERMISSIONS = {"ServerLive": None, "ServerReady": None, "ModelReady": "metadata",
               "ServerMetadata": "metadata", "ModelMetadata": "metadata", "ModelInfer": "predict",
               "ModelStreamInfer": "predict", "RepositoryIndex": "read",
               "RepositoryModelLoad": "deploy", "RepositoryModelUnload": "deploy"}
"""What each RPC needs, as ``access.permission_for`` says for its REST twin."""

REQUESTS = {"ServerLive": pb.ServerLiveRequest, "ServerReady": pb.ServerReadyRequest,
            "ModelReady": pb.ModelReadyRequest, "ServerMetadata": pb.ServerMetadataRequest,
            "ModelMetadata": pb.ModelMetadataRequest, "ModelInfer": pb.ModelInferRequest,
            "ModelStreamInfer": pb.ModelInferRequest, "RepositoryIndex": pb.RepositoryIndexRequest,
            "RepositoryModelLoad": pb.RepositoryModelLoadRequest,
            "RepositoryModelUnload": pb.RepositoryModelUnloadRequest}


class Failure(Exception):
    """An RPC's answer when it failed: a status code and its message."""

    def __init__(self, code: grpc.StatusCode, message: str,
                 trailers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.code, self.message, self.trailers = code, message, trailers


class InferenceService:
    def __init__(self, router: PredictionRouter, registry: Registry, cache: ModelCache,
                 lifecycle: VersionLifecycle, readiness: Readiness, keys: KeyRing,
                 limits: TensorLimits) -> None:
        self._router = router
        self._registry = registry
        self._cache = cache
        self._lifecycle = lifecycle
        self._readiness = readiness
        self._keys = keys
        self._limits = limits

    def handler(self) -> grpc.GenericRpcHandler:
        """The service's method handlers; requests are parsed by the methods themselves."""
        methods: dict[str, grpc.RpcMethodHandler] = {}
        for name in PERMISSIONS:
            if name == "ModelStreamInfer":
                methods[name] = grpc.stream_stream_rpc_method_handler(
                    self._stream, response_serializer=_serialize)
            else:
                methods[name] = grpc.unary_unary_rpc_method_handler(
                    functools.partial(self._unary, name, getattr(self, name)),
                    response_serializer=_serialize)
        return grpc.method_handlers_generic_handler(SERVICE, methods)

    async def _unary(self, name: str, method: Callable[[Any, Any], Awaitable[Any]], data: bytes,
                     context: grpc.aio.ServicerContext) -> Any:
        try:
            actor = self._authorized(name, context)
            token = acting_as.set(actor) if actor is not None else None
            try:
                return await method(tensors.parse(REQUESTS[name], data), context)
            finally:
                if token is not None:
                    acting_as.reset(token)
        except Exception as exc:
            failure = _failure(name, exc)
        await context.abort(failure.code, failure.message, failure.trailers)

    async def _stream(self, requests: AsyncIterator[bytes],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Each request answered in order on the stream; a failed one is answered with its error
        message and the stream goes on, as Triton's clients expect. A missing or refused key
        ends the stream with its status."""
        try:
            self._authorized("ModelStreamInfer", context)
        except Failure as failure:
            await context.abort(failure.code, failure.message, failure.trailers)
        async for data in requests:
            try:
                message = tensors.parse(pb.ModelInferRequest, data)
                yield pb.ModelStreamInferResponse(infer_response=await self.ModelInfer(message, context))
            except Exception as exc:
                yield pb.ModelStreamInferResponse(
                    error_message=_failure("ModelStreamInfer", exc).message)

    def _authorized(self, name: str, context: grpc.aio.ServicerContext) -> str | None:
        """Who acts for the call (audit events): the caller's key, once it may call ``name``;
        None where no key is needed."""
        needed = PERMISSIONS[name]
        if needed is None or not self._keys.enforced:
            return None
        presented = _presented_key(context.invocation_metadata() or ())
        key = self._keys.authenticate(presented) if presented else None
        if key is None:
            raise Failure(grpc.StatusCode.UNAUTHENTICATED,
                          "this server needs an API key: send it as 'authorization: Bearer <key>' "
                          "or 'x-api-key: <key>' metadata")
        if needed not in GRANTS[key.role]:
            raise Failure(grpc.StatusCode.PERMISSION_DENIED,
                          f"key {key.name!r} has role {key.role}, which may not call {name}")
        return f"key:{key.name}"

    async def ServerLive(self, request: Any, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._readiness.is_ready)

    async def ServerMetadata(self, request: Any, context: Any) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="ml-model-manager", version=__version__,
                                         extensions=EXTENSIONS)

    async def ModelMetadata(self, request: Any, context: Any) -> pb.ModelMetadataResponse:
        resolved = await self._router.resolve(request.name, request.version or None)
        model = await self._router.model(request.name)
        doc = metadata_of(resolved, [str(v.number) for v in model.versions if not v.archived])
        return pb.ModelMetadataResponse(**doc)

    async def ModelReady(self, request: Any, context: Any) -> pb.ModelReadyResponse:
        """Servable, as REST's ready: an unknown model or version is not ready (Triton's answer),
        rather than an error."""
        try:
            resolved = await self._router.resolve(request.name, request.version or None)
        except errors.NotFound:
            return pb.ModelReadyResponse(ready=False)
        state = self._cache.state_of(request.name, resolved.number)
        return pb.ModelReadyResponse(ready=state.state is not State.FAILED)

    async def ModelInfer(self, request: Any, context: Any) -> pb.ModelInferResponse:
        routing_key = next((v for k, v in context.invocation_metadata() or ()
                            if k == "x-routing-key"), None)
        decoded, result, job = await self._router.predict(
            request.model_name, request.model_version or None,
            functools.partial(self._decoded, request), routing_key=routing_key)
        answer = tensors.encode_response(result, decoded, bool(request.raw_input_contents))
        if job is not None:
            await self._router.dispatch(job)
        return answer

    def _decoded(self, request: Any) -> InferenceRequest:
        """As REST's: whatever fails while decoding is the caller's bad input, never a count
        against the model; an unexpected exception is logged as the bug it is."""
        try:
            return tensors.decode_request(request, self._limits)
        except errors.ModelManagerError:
            raise
        except Exception as exc:
            log.error("request failed: status=400 rpc=ModelInfer error=undecodable request, "
                      "unhandled %s", type(exc).__name__, exc_info=exc)
            raise errors.InvalidInput(f"the request could not be decoded "
                                      f"({type(exc).__name__})") from None

    async def RepositoryIndex(self, request: Any, context: Any) -> pb.RepositoryIndexResponse:
        models = await anyio.to_thread.run_sync(self._registry.list_models)
        answer = pb.RepositoryIndexResponse()
        for model in models:
            for v in model.versions:
                state = self._cache.state_of(model.name, v.number)
                if v.archived or (request.ready and state.state is not State.READY):
                    continue
                answer.models.add(name=model.name, version=str(v.number),
                                  state=state.state.value, reason=state.reason or "")
        return answer

    async def RepositoryModelLoad(self, request: Any, context: Any) -> pb.RepositoryModelLoadResponse:
        await self._lifecycle.load(await self._router.resolve(request.model_name, None))
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: Any, context: Any) -> pb.RepositoryModelUnloadResponse:
        await self._lifecycle.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()


def _failure(rpc: str, exc: Exception) -> Failure:
    """The status an RPC that raised ``exc`` answers with; logged as REST logs it."""
    if isinstance(exc, Failure):
        return exc
    if isinstance(exc, errors.ModelManagerError):
        log_failure(status_of(exc), "RPC", rpc, exc.message)
        trailers = (("retry-after", str(exc.retry_after)),) if isinstance(
            exc, errors.Unavailable) else ()
        code = next((CODES[c] for c in type(exc).__mro__ if c in CODES), grpc.StatusCode.UNKNOWN)
        return Failure(code, exc.message, trailers)
    log_bug("RPC", rpc, exc)
    return Failure(grpc.StatusCode.INTERNAL, BUG_MESSAGE.format(type(exc).__name__))


def _presented_key(metadata: Any) -> str | None:
    for name, value in metadata:
        if name == "authorization" and str(value)[:7].lower() == "bearer ":
            return str(value)[7:].strip()
        if name == "x-api-key":
            return str(value).strip()
    return None


def _serialize(message: Any) -> bytes:
    return bytes(message.SerializeToString())
