"""Models in processes of their own: a crash, a hang or a runaway allocation there is the
model's alone, never the server's.

``ModelProcess`` starts one process per model (from a fork server that has imported the base
frameworks once, so a start costs milliseconds, not imports), watches its memory and answers
each call within a timeout. ``RemoteRuntime`` is a ``Runtime`` whose predictions run in such a
process, tensors passing through shared memory; ``check_upload`` loads a new version, reads
its signature, compiles its twin and runs its golden probe in one, then lets it exit.

A process that dies, runs past its timeout or past its memory limit is killed and reported as
``ProcessDied`` with what happened ("killed by SIGSEGV").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import multiprocessing.process
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model_manager import errors
from model_manager.errors import InvalidArtifact, ModelCrashed, ModelManagerError
from model_manager.runtimes.base import LoadOptions
from model_manager.runtimes.signature import Signature
from model_manager.runtimes.tensors_shm import Layout, TensorReader, TensorWriter
from model_manager.settings import Settings
from model_manager.sizes import human_size
from model_manager.types import Array, Tensors

log = logging.getLogger(__name__)

PRELOADED = ["__main__", "model_manager.cli.main", "model_manager.runtimes.worker", "numpy",
             "onnxruntime", "sklearn", "joblib", "model_manager.runtimes.skops_io",
             "skl2onnx"]
"""Imported once by the fork server, so that model processes start with them (missing ones
are skipped); other frameworks are imported by the process that needs them. Each process runs
the server's main module again (multiprocessing does, and Python 3.11's fork server ignores
``__main__`` here): with the command's module preloaded that costs nothing."""
WATCH_INTERVAL = 0.05
"""Seconds between checks of a model process's memory."""
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
TURN_POLL = 0.001
"""Seconds between looks at a runtime that a thread's call (a shadow, a batch) holds, while a
call from the event loop waits for its turn."""

_REAPING = threading.Lock()
"""Held to ask whether a model process lives (as starting any process does for all of them):
its exit status comes once through the fork server's pipe, and two threads reading it at once
leave one with "exit code 255" in place of the real status."""

ISOLATE_MODES = ("untrusted", "all", "none")
MIN_DEFAULT_MEMORY = 2 * 1024**3
"""The least memory limit of a model process by default (a framework's own overhead and an
upload that is too large for the budget still load, and are judged by the budget)."""


@dataclasses.dataclass(frozen=True)
class ProcessLimits:
    memory: int
    """Bytes of private resident memory a model process may hold; past them it is killed."""
    timeout: float
    """Seconds one call (a load, a prediction) may take; past them the process is killed."""


@dataclasses.dataclass(frozen=True)
class Isolation:
    """Which versions are served from a process of their own, and its limits."""

    mode: str = "untrusted"
    """``untrusted`` (formats that can run arbitrary code), ``all`` or ``none``."""
    memory: int = 4 * 1024**3
    load_timeout: float = 300.0
    predict_timeout: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Isolation:
        memory = settings.model_memory_limit or max(settings.memory_budget, MIN_DEFAULT_MEMORY)
        return cls(settings.isolate, memory, settings.load_timeout, settings.predict_timeout)

    def __post_init__(self) -> None:
        if self.mode not in ISOLATE_MODES:
            raise ValueError(f"--isolate takes {'|'.join(ISOLATE_MODES)}, not {self.mode!r}")

    def is_isolated(self, format_name: str, path: Path | None, options: LoadOptions) -> bool:
        """Whether a version of this format runs in a process of its own; with no ``path``
        (the file unread), a scikit-learn file is taken to be a pickle."""
        if self.mode != "untrusted":
            return self.mode == "all"
        return runs_code(format_name, path, options)


def runs_code(format_name: str, path: Path | None, options: LoadOptions) -> bool:
    """Whether loading or running this model can run arbitrary code: a pickle (and a skops
    file, once every type in it is trusted with --allow-pickle), or a Keras model while custom
    code is allowed."""
    if format_name == "sklearn":
        if path is None:
            return True
        with open(path, "rb") as f:
            return f.read(4) != b"PK\x03\x04" or options.allow_pickle
    return format_name == "keras" and options.allow_custom_code


@dataclasses.dataclass(frozen=True)
class Death:
    """How a model process ended, in two phrasings."""

    cause: str
    """``SIGSEGV``, ``out of memory (...)``, ``no answer within 30s``."""
    passive: str
    """``killed by SIGSEGV``, ..., for "the model's loader was ..."."""

    @classmethod
    def no_answer(cls, limit: float) -> Death:
        return cls(f"no answer within {limit:g}s", f"stopped after no answer within {limit:g}s")


class ProcessDied(Exception):
    def __init__(self, death: Death, stage: str) -> None:
        super().__init__(f"{death.cause} during {stage}")
        self.death = death
        self.stage = stage


class ModelProcess:
    """One model's process. ``call`` is not reentrant: callers serialise (``RemoteRuntime``
    holds a lock)."""

    def __init__(self, limits: ProcessLimits) -> None:
        self._limits = limits
        self._conn, child_end = multiprocessing.Pipe()
        self._process = _context().Process(target=_serve, args=(child_end,), daemon=True,
                                           name="model")
        try:
            FORK_SERVER.start(self._process)
        except errors.Unavailable:
            self._conn.close()
            raise
        finally:
            child_end.close()
        self._death: Death | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        threading.Thread(target=self._watch, name="model-memory", daemon=True).start()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def timeout(self) -> float:
        return self._limits.timeout

    def call(self, command: str, *args: Any, timeout: float | None = None) -> Any:
        """Send one command and return its reply's value; a domain error from the process is
        raised here as the same class. Raises ProcessDied when it dies, or runs past the
        timeout (then it is killed)."""
        if self._death is not None:
            raise ProcessDied(self._death, command)
        limit = self._limits.timeout if timeout is None else timeout
        try:
            self._conn.send((command, *args))
            if not self._conn.poll(limit):
                self._kill(Death.no_answer(limit))
            reply = self._conn.recv()
        except (EOFError, OSError):
            raise ProcessDied(self._ended(), command) from None
        if reply[0] == "ok":
            return reply[1]
        raise _domain_error(reply[1], reply[2])

    def start(self, release: Callable[[], None], command: str, *args: Any,
              then: Callable[[Any], Any] | None = None) -> asyncio.Future[Any]:
        """``call`` from the event loop, with no thread: send the command and return a future
        of ``then(reply's value)``, settled by a reader callback on the connection when the
        reply comes, or by the process's death (ProcessDied; past its timeout it is killed).

        The caller holds the process (``call`` is not reentrant) and hands its release over:
        ``release()`` runs once the exchange is over, after ``then``. The exchange finishes even
        when the future is cancelled (its caller gave up), so the next call reads its own
        reply."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        if self._death is not None:
            release()
            answer.set_exception(ProcessDied(self._death, command))
            return answer
        try:
            self._conn.send((command, *args))
        except (EOFError, OSError):
            self._report_death(answer, command, release)
            return answer
        limit = self._limits.timeout
        fd = self._conn.fileno()
        timer = loop.call_later(limit, self._kill, Death.no_answer(limit))

        def on_reply() -> None:
            loop.remove_reader(fd)
            timer.cancel()
            try:
                reply = self._conn.recv()
            except (EOFError, OSError):
                self._report_death(answer, command, release)
                return
            value: Any = None
            error: Exception | None = None
            try:
                if reply[0] != "ok":
                    error = _domain_error(reply[1], reply[2])
                else:
                    value = reply[1] if then is None else then(reply[1])
            except Exception as exc:  # reading the outputs failed: the caller's error
                error = exc
            finally:
                release()
            if answer.done():  # cancelled: nobody waits
                return
            if error is None:
                answer.set_result(value)
            else:
                answer.set_exception(error)

        loop.add_reader(fd, on_reply)
        return answer

    def _report_death(self, answer: asyncio.Future[Any], command: str,
                      release: Callable[[], None]) -> None:
        """Settle ``answer`` with how the process died, learnt off the loop (it waits for the
        process to be reaped)."""
        def reaped(done: asyncio.Future[Death]) -> None:
            release()
            if not answer.done():
                answer.set_exception(ProcessDied(done.result(), command))

        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, self._ended).add_done_callback(reaped)

    def resident_bytes(self) -> int:
        """Memory that goes back to the system when the process exits (its private pages)."""
        return _private_bytes(self._process.pid) if self._alive() else 0

    def stop(self) -> None:
        """End the process (asked first, then killed) and free what it holds."""
        self._stopped.set()
        if self._alive() and self._death is None:
            with contextlib.suppress(OSError):
                self._conn.send(("exit",))
            self._join(2)
        if self._alive():
            self._process.kill()
        self._join(5)
        self._conn.close()

    def _kill(self, death: Death) -> None:
        with self._lock:
            if self._death is None:
                self._death = death
        self._process.kill()  # no liveness check: that could wait on a thread's join

    def _alive(self) -> bool:
        with _REAPING:
            return self._process.is_alive()

    def _join(self, timeout: float) -> int | None:
        """Wait for the process to end; its exit code, or None if it still runs."""
        multiprocessing.connection.wait([self._process.sentinel], timeout)
        with _REAPING:
            return self._process.exitcode

    def _ended(self) -> Death:
        exitcode = self._join(5)
        with self._lock:
            if self._death is None:
                self._death = _death_of(exitcode)
            return self._death

    def _watch(self) -> None:
        """Kill the process once its memory passes the limit."""
        pid = self._process.pid
        while not self._stopped.wait(WATCH_INTERVAL) and self._alive():
            if _resident_bytes(pid) <= self._limits.memory:
                continue  # its private bytes are fewer still, and much dearer to count
            used = _private_bytes(pid)
            if used > self._limits.memory:
                limit = human_size(self._limits.memory)
                self._kill(Death(f"out of memory ({human_size(used)}, past its limit of {limit})",
                                 f"killed for using {human_size(used)}, past its memory limit "
                                 f"of {limit}"))
                return


class RemoteRuntime:
    """A ``Runtime`` whose model runs in a ``ModelProcess``: inputs and outputs through shared
    memory, one prediction at a time, each within the prediction timeout. Once the process has
    died every call raises ModelCrashed naming how it died."""

    def __init__(self, process: ModelProcess, signature: Signature, label: str) -> None:
        self._process = process
        self.signature = signature
        self._label = label
        self._lock = threading.Lock()
        """Held for one exchange (tensors in, call, tensors out), by a thread or the loop."""
        self._turn = asyncio.Lock()
        """Queues the event loop's callers, so they wait on the loop rather than poll."""
        self._writer = TensorWriter()
        self._reader = TensorReader()

    def predict(self, inputs: Tensors, outputs: Any) -> dict[str, Array]:
        with self._lock:
            segment, layout = self._writer.write(inputs)
            try:
                result = self._process.call("predict", segment, layout, list(outputs))
            except ProcessDied as died:
                raise self._crashed(died) from None
            return self._reader.read(*result)

    async def predict_async(self, inputs: Tensors, outputs: Any) -> dict[str, Array]:
        """``predict`` from the event loop, with no trip to a worker thread: it costs the
        pipe's round trip and no more. A caller that is cancelled (its timeout, its client
        gone) leaves the exchange to finish on its own."""
        async with self._turn:
            while not self._lock.acquire(blocking=False):  # a thread's call (a shadow, a batch)
                await asyncio.sleep(TURN_POLL)
            try:
                segment, layout = self._writer.write(inputs)
                answer = self._process.start(self._lock.release, "predict", segment, layout,
                                             list(outputs), then=self._read)
            except BaseException:
                self._lock.release()
                raise
            try:
                results: dict[str, Array] = await answer
            except ProcessDied as died:
                raise self._crashed(died) from None
            return results

    def _read(self, result: tuple[str, Layout]) -> dict[str, Array]:
        return self._reader.read(*result)

    def _crashed(self, died: ProcessDied) -> ModelCrashed:
        reason = f"crashed: {died}"
        return ModelCrashed(f"{self._label} {reason}; it restarts after a backoff", reason)

    def resident_bytes(self) -> int:
        return self._process.resident_bytes()

    def unload(self) -> None:
        # An exchange its caller gave up on may still run: let it end (its timeout bounds it).
        if self._lock.acquire(timeout=self._process.timeout + 5):
            self._lock.release()
        self._process.stop()
        self._reader.close(unlink=True)  # the process's own segment, if it died holding it
        self._writer.close()


def load_remote(path: Path, format_name: str, options: LoadOptions, signature: Signature,
                isolation: Isolation, label: str) -> RemoteRuntime:
    """Load a registered version in a process of its own; a death there fails the load."""
    process = ModelProcess(ProcessLimits(isolation.memory, isolation.predict_timeout))
    try:
        process.call("load", str(path), format_name, options, signature.to_json(),
                     timeout=isolation.load_timeout)
    except ProcessDied as died:
        process.stop()
        raise ModelCrashed(f"{label} crashed: {died}", f"crashed: {died}") from None
    except BaseException:
        process.stop()
        raise
    return RemoteRuntime(process, signature, label)


@dataclasses.dataclass(frozen=True)
class UploadCheck:
    signature: Signature
    compiled: tuple[Path | None, dict[str, Any]] | None
    """The compiled twin (if it passed) and its report; None: not a scikit-learn model."""


_WHO = {"load": "the model's loader", "compile": "the model, checked against its compiled twin,",
        "probe": "the model, running its golden probe,"}


def check_upload(path: Path, format_name: str, options: LoadOptions, override: Signature | None,
                 probe: tuple[Tensors, list[str]] | None, compile_in: Path | None,
                 isolation: Isolation) -> UploadCheck:
    """Load an upload in a process of its own, read its signature, compile its twin (into
    ``compile_in``, when given) and run its golden probe; the process then exits. A crash, a
    kill or a timeout there is InvalidArtifact naming what happened."""
    process = ModelProcess(ProcessLimits(isolation.memory, isolation.load_timeout))
    stage = "load"
    try:
        signature = Signature.from_json(process.call(
            "load", str(path), format_name, options, override.to_json() if override else None))
        compiled = None
        if compile_in is not None:
            stage = "compile"
            compiled = process.call(stage, str(compile_in), options, probe[0] if probe else None)
        if probe is not None:
            stage = "probe"
            process.call(stage, *probe)
    except ProcessDied as died:
        raise InvalidArtifact(f"{_WHO[stage]} was {died.death.passive}; the upload is "
                              "refused") from None
    finally:
        process.stop()
    twin = None if compiled is None else (Path(compiled[0]) if compiled[0] else None, compiled[1])
    return UploadCheck(signature, twin)


class ForkServer:
    """Whether model processes can be started (``FORK_SERVER``, one per server process, as the
    fork server is). The fork server imports the base frameworks once (about a second, and
    200 MB it keeps), so that each model process then starts in milliseconds. It starts with the
    first model process the server needs (an upload's check, an isolated version's load), not
    with the server: one that never needs a model process never holds it. ``state`` is ``idle``
    (none needed yet), ``starting``, ``ready`` or ``failed`` (``detail`` says why: that upload
    gets 503, and the next one tries again)."""

    def __init__(self) -> None:
        self.state = "idle"
        self.detail: str | None = None
        self.seconds: float | None = None

    def start(self, process: multiprocessing.process.BaseProcess) -> None:
        """Start a model process, and with the first one the fork server (blocks meanwhile).
        Raises Unavailable when the fork server dies or cannot fork."""
        with _REAPING:  # starting a process asks after every other one
            first = self.state != "ready"
            if first:
                self.state, started = "starting", time.monotonic()
            try:
                process.start()
            except (EOFError, OSError) as exc:
                self.state = "failed"
                self.detail = (f"a model process could not be started ({type(exc).__name__}: "
                               f"{exc}); see the server log")
                log.error("model processes cannot be started, uploads will be refused: %s",
                          self.detail)
                raise errors.Unavailable(self.detail, retry_after=5) from None
            if first:
                self.state, self.detail = "ready", None
                self.seconds = time.monotonic() - started
                log.info("model processes ready in %.1fs", self.seconds)

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "detail": self.detail,
                "ready_after_seconds": None if self.seconds is None else round(self.seconds, 2)}


FORK_SERVER = ForkServer()


@functools.cache
def _context() -> multiprocessing.context.ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOADED)
    return context


def _serve(conn: Any) -> None:
    from model_manager.runtimes.worker import serve

    serve(conn)


def _domain_error(name: str, message: str) -> ModelManagerError:
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, ModelManagerError)):
        cls = errors.ModelError
    return cls(message)


def _death_of(exitcode: int | None) -> Death:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        return Death(name, f"killed by {name}")
    return Death(f"exit code {exitcode}", f"ended with exit code {exitcode}")


def _resident_bytes(pid: int | None) -> int:
    """Resident bytes of a process, shared pages included: a counter the kernel keeps, read
    in microseconds (private bytes take a walk of every mapping, milliseconds); 0 once it is
    gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


def _private_bytes(pid: int | None) -> int:
    """Private (unshared) resident bytes of a process, from /proc; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return sum(int(line.split()[1]) * 1024 for line in f
                       if line.startswith(("Private_Clean:", "Private_Dirty:")))
    except (OSError, ValueError):
        return 0
