"""The gRPC endpoint: its own port, the HTTP server's process and event loop (``grpc.aio``).

Besides the inference service it serves ``grpc.health.v1.Health`` (SERVING once the server is
ready, for Kubernetes' gRPC probes and load balancers) and server reflection (``grpcurl``).
"""

from __future__ import annotations

import asyncio
import logging

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from model_manager.api.grpc.service import SERVICE, InferenceService
from model_manager.api.v2 import Readiness

log = logging.getLogger(__name__)


class GrpcServer:
    def __init__(self, service: InferenceService, readiness: Readiness, host: str, port: int,
                 max_message_size: int, shared_port: bool) -> None:
        self._service = service
        self._readiness = readiness
        self._address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._options = [("grpc.max_receive_message_length", max_message_size),
                         ("grpc.max_send_message_length", -1),
                         # the workers of `serve --workers` share the port, as they share HTTP's
                         ("grpc.so_reuseport", int(shared_port))]
        self._health = HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._updates: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        server = grpc.aio.server(options=self._options)
        server.add_generic_rpc_handlers((self._service.handler(),))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), server)
        try:
            server.add_insecure_port(self._address)
        except RuntimeError as exc:
            raise RuntimeError(f"cannot serve gRPC on {self._address} ({exc}); is the port in "
                               f"use? --grpc-port picks another, 0 turns gRPC off") from None
        await server.start()
        self._server = server
        await self._serving(self._readiness.is_ready)
        self._readiness.listeners.append(self._on_readiness)
        log.info("serving gRPC (inference.GRPCInferenceService) on %s", self._address)

    async def stop(self, grace: float) -> None:
        """Refuse new calls, let those in flight finish for up to ``grace`` seconds."""
        if self._server is None:
            return
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)

    def _on_readiness(self, is_ready: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._serving(is_ready))
        self._updates.add(task)
        task.add_done_callback(self._updates.discard)

    async def _serving(self, is_ready: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if is_ready
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for service in ("", SERVICE):
            await self._health.set(service, status)
