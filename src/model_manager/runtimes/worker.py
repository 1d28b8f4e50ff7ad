"""The other end of a model process: it loads one model and answers the server's commands.

Commands arrive on a connection as tuples; each gets one reply, ``("ok", value)`` or
``("error", class name, message)`` for a domain error (re-raised as the same class in the
server). Tensors go through shared memory (``tensors_shm``), never through the connection.
Nothing here must be imported by the server for serving; it runs in a process of its own.
"""

from __future__ import annotations

import signal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from model_manager.errors import InvalidArtifact, ModelError, ModelManagerError
from model_manager.runtimes.base import LoadOptions, Runtime
from model_manager.runtimes.signature import Signature
from model_manager.runtimes.tensors_shm import Layout, TensorReader, TensorWriter
from model_manager.scheduling import batch_all_threads
from model_manager.types import Tensors


def serve(conn: Connection) -> None:
    """Answer commands until ``exit`` or until the server's end of the connection closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server, which stops us
    batch_all_threads()  # whichever thread of the server started the fork server
    model = _Model()
    try:
        while True:
            try:
                command, *args = conn.recv()
            except EOFError:
                return
            if command == "exit":
                return
            conn.send(model.run(command, args))
    finally:
        model.close()


class _Model:
    def __init__(self) -> None:
        self._runtime: Runtime | None = None
        self._reader = TensorReader()
        self._writer = TensorWriter()

    def run(self, command: str, args: list[Any]) -> tuple[Any, ...]:
        fallback = ModelError if command in ("predict", "probe") else InvalidArtifact
        try:
            return ("ok", getattr(self, "do_" + command)(*args))
        except ModelManagerError as exc:
            return ("error", type(exc).__name__, exc.message)
        except Exception as exc:  # the model's own code raises anything
            return ("error", fallback.__name__, f"{type(exc).__name__}: {exc}"[:1000])

    def do_load(self, path: str, format_name: str, options: LoadOptions,
                signature: dict[str, Any] | None) -> dict[str, Any]:
        from model_manager.runtimes import get_format

        override = (Signature.from_json(signature, parameters_only=True) if signature is not None
                    else None)
        self._runtime = get_format(format_name).load(Path(path), options, override)
        return self._runtime.signature.to_json()

    def do_compile(self, workdir: str, options: LoadOptions,
                   probe_inputs: Tensors | None) -> tuple[str | None, dict[str, Any]] | None:
        """The compiled ONNX twin of a scikit-learn estimator (None for other models)."""
        from model_manager.runtimes.compile import compile_sklearn
        from model_manager.runtimes.sklearn import SklearnRuntime

        runtime = self._runtime
        if not isinstance(runtime, SklearnRuntime):
            return None
        compiled = compile_sklearn(runtime, runtime.estimator, Path(workdir), options,
                                   probe_inputs)
        return (str(compiled.path) if compiled.path else None), compiled.report

    def do_probe(self, inputs: Tensors, outputs: list[str]) -> str | None:
        """Run the model once; its exception's message, if it raises (a crash kills us)."""
        try:
            self._loaded().predict(inputs, outputs)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def do_predict(self, segment: str, layout: Layout,
                   outputs: list[str]) -> tuple[str, Layout]:
        inputs = self._reader.read(segment, layout, copy=False)
        return self._writer.write(self._loaded().predict(inputs, outputs))

    def _loaded(self) -> Runtime:
        if self._runtime is None:
            raise ModelError("no model is loaded in this process")
        return self._runtime

    def close(self) -> None:
        self._reader.close()
        self._writer.close()
