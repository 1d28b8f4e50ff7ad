"""The gRPC floor: the least a Python gRPC server does for a ModelInfer call, with no model behind it.

grpc.aio in uvicorn's event loop, as our server runs it: an ASGI app whose lifespan starts a
grpc.aio server on ``GRPC_FLOOR_PORT``, while HTTP answers the readiness paths (``floor_app``).
Each ``ModelInfer`` request is parsed, its first input touched, and answered with one constant
``ModelInferResponse``. Anything slower on the same core is codec, routing, checks and the model.

    GRPC_FLOOR_PORT=18361 python -m uvicorn grpc_floor_app:app --app-dir bench --http httptools \
        --loop uvloop --no-access-log --workers 1
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

# bench/ holds a grpc.py, which `--app-dir bench` would have `import grpc` find: the folder goes last.
BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH] + [str(BENCH)]

import floor_app  # noqa: E402
import grpc  # noqa: E402
from tritonclient.grpc import service_pb2 as pb  # noqa: E402

SERVICE = "inference.GRPCInferenceService"
_answer = pb.ModelInferResponse(model_name="floor", model_version="1")
_answer.outputs.add(name="label", datatype="INT64", shape=[1]).contents.int64_contents.append(0)
ANSWER = _answer.SerializeToString()


async def _infer(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
    request = pb.ModelInferRequest.FromString(data)
    if not request.inputs:  # touched, as floor_app touches inputs[0].data
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not a ModelInfer request")
    return ANSWER


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "lifespan":
        await floor_app.app(scope, receive, send)
        return
    server = None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            server = grpc.aio.server()
            method = grpc.unary_unary_rpc_method_handler(_infer)  # bytes in, bytes out
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(SERVICE, {"ModelInfer": method}),))
            server.add_insecure_port(f"127.0.0.1:{os.environ['GRPC_FLOOR_PORT']}")
            await server.start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if server is not None:
                await server.stop(1)
            await send({"type": "lifespan.shutdown.complete"})
            return
