"""The Open Inference Protocol over gRPC (``--grpc-port``): the same router as REST.

``generated/`` holds the protocol's messages, compiled from ``generated/inference.proto`` by
``make proto``; nothing else in it is written by hand.
"""

from __future__ import annotations

from model_manager.api.grpc.server import GrpcServer
from model_manager.api.grpc.service import InferenceService

__all__ = ["GrpcServer", "InferenceService"]
