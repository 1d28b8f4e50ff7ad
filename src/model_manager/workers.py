"""Several worker processes behind one port (``serve --workers N``), and how they stay one server.

uvicorn's supervisor starts the workers (fresh processes sharing the listening socket) and
replaces one that dies. Before it does, ``prepare`` creates a run folder that the workers share:

- ``ledger``: one fixed-size slot per worker (pid, bytes its loaded models hold, bytes it waits
  for), read and written through ``mmap``. A worker
  decides that a load fits by adding the other live workers' bytes to its own, under an
  exclusive ``flock`` on the file, so two workers never take the same room. A worker that needs
  room other workers hold says so in ``wanted``; each worker checks every ``TICK`` seconds and
  evicts its least recently used idle models until the budget has room for what is wanted.
  That is the whole coordination: one byte budget, no fixed share per worker, and a hot model
  may be loaded in several workers (each counts its own copy).
- ``changes``: an append-only file of JSON lines, the workers' local channel. A change made
  through one worker (an alias, a policy, a pin, an unload, settings, keys) is announced there
  and applied by every other worker within ``TICK`` seconds.
- ``worker-<slot>.json``: what each worker holds (for ``GET /api/models/{name}``).
- ``answer-<slot>.json``: a worker's answer to the last question asked on the channel (``ask``):
  its counts of the last hour, its cache, or just "flushed"; the asking worker merges them
  with its own, so that any worker answers for the whole server.
- ``leader.lock``: the worker holding this ``flock`` runs the once-per-server duties (the
  auto-rollback guard, scheduled cleanup, forgetting dead workers); when it dies the kernel
  releases the lock and another worker takes over.
- ``metrics/``: prometheus-client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``).

The registry's migrations and the demo models are done by ``prepare`` itself, once.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import mmap
import os
import signal
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RUN_DIR_ENV = "MODEL_MANAGER_RUN_DIR"
MAX_WORKERS = 256
TICK = 0.1
"""Seconds between a worker's looks at the channel and at the budget's pressure."""
_SLOT = struct.Struct("<qqq")  # pid, held bytes, wanted bytes
_QUESTIONS = MAX_WORKERS  # after the workers' slots: the number of the last question asked


def prepare(count: int, base: Path | None = None) -> Path:
    """The run folder for ``count`` workers, set in this process's environment (which the
    workers inherit): the ledger, an empty channel, the metrics folder."""
    if not 1 <= count <= MAX_WORKERS:
        raise ValueError(f"--workers takes 1 to {MAX_WORKERS}, not {count}")
    run = Path(tempfile.mkdtemp(prefix="model-manager-", dir=base))
    (run / "ledger").write_bytes(bytes(_SLOT.size * (MAX_WORKERS + 1)))
    (run / "changes").touch()
    (run / "metrics").mkdir()
    os.environ[RUN_DIR_ENV] = str(run)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(run / "metrics")
    return run


def joined() -> Siblings | None:
    """This worker's place among its siblings, when the server runs several workers."""
    run = os.environ.get(RUN_DIR_ENV)
    return Siblings(Path(run)) if run else None


class Siblings:
    """One worker's view of the others: the shared budget, the channel, the leadership."""

    def __init__(self, run: Path) -> None:
        self.run = run
        self.pid = os.getpid()
        _end_with_parent()
        self._ledger_file = open(run / "ledger", "r+b")  # noqa: SIM115 (held for the process)
        self._ledger = mmap.mmap(self._ledger_file.fileno(), 0)
        self._changes = os.open(run / "changes", os.O_RDWR | os.O_APPEND)
        self._offset = os.fstat(self._changes).st_size  # what came before this worker is done
        self._partial = b""
        self._leader_file = open(run / "leader.lock", "a")  # noqa: SIM115
        self._leader = False
        with self.locked():
            self.slot = self._claim_slot()

    # ---- the ledger --------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive use of the ledger among the workers (a few microseconds per use)."""
        fcntl.flock(self._ledger_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._ledger_file, fcntl.LOCK_UN)

    def _read(self, slot: int) -> tuple[int, int, int]:
        pid, held, wanted = _SLOT.unpack_from(self._ledger, slot * _SLOT.size)
        return pid, held, wanted

    def _write(self, slot: int, *values: int) -> None:
        _SLOT.pack_into(self._ledger, slot * _SLOT.size, *values)

    def _claim_slot(self) -> int:
        for slot in range(MAX_WORKERS):
            pid = self._read(slot)[0]
            if pid == 0 or not _alive(pid):
                self._write(slot, self.pid, 0, 0)
                return slot
        raise RuntimeError(f"more than {MAX_WORKERS} workers share {self.run}")

    def _live(self) -> Iterator[tuple[int, tuple[int, int, int]]]:
        for slot in range(MAX_WORKERS):
            values = self._read(slot)
            if values[0] and (slot == self.slot or _alive(values[0])):
                yield slot, values

    def others_held(self) -> int:
        """Bytes the other live workers' models hold (or have reserved for loads)."""
        return sum(v[1] for slot, v in self._live() if slot != self.slot)

    def excess(self, budget: int) -> int:
        """Bytes to free so that what the other workers wait for fits: every live worker's
        held bytes plus the others' wanted bytes, past ``budget``."""
        held = wanted = 0
        for slot, values in self._live():
            held += values[1]
            wanted += values[2] if slot != self.slot else 0
        return max(0, held + wanted - budget)

    def publish(self, held: int, wanted: int = 0) -> None:
        """This worker's bytes held (loaded and reserved) and the bytes it waits for."""
        self._write(self.slot, self.pid, held, wanted)

    def holdings(self, loaded: list[tuple[str, int, int]]) -> None:
        """Record which versions this worker holds, (model, version, bytes) each."""
        self._write_json(f"worker-{self.slot}.json", {"pid": self.pid, "loaded": loaded})

    def _write_json(self, name: str, doc: Any) -> None:
        path = self.run / name
        tmp = path.with_suffix(f".{self.pid}.tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(path)

    def holders(self) -> dict[tuple[str, int], list[dict[str, int]]]:
        """Which live workers hold each version: {(model, version): [{slot, pid, bytes}]}."""
        found: dict[tuple[str, int], list[dict[str, int]]] = {}
        for slot, values in self._live():
            try:
                held = json.loads((self.run / f"worker-{slot}.json").read_text())
            except (OSError, ValueError):
                continue
            if held.get("pid") != values[0]:
                continue  # left by the slot's previous, dead worker
            for model, version, size in held["loaded"]:
                found.setdefault((model, version), []).append(
                    {"worker": slot, "pid": values[0], "bytes": size})
        return found

    def reap(self) -> list[int]:
        """Free the slots of dead workers; their pids (their metrics are marked dead)."""
        dead = []
        with self.locked():
            for slot in range(MAX_WORKERS):
                pid = self._read(slot)[0]
                if pid and slot != self.slot and not _alive(pid):
                    self._write(slot, 0, 0, 0)
                    for name in (f"worker-{slot}.json", f"answer-{slot}.json"):
                        with contextlib.suppress(OSError):
                            (self.run / name).unlink()
                    dead.append(pid)
        return dead

    # ---- questions to every worker ------------------------------------------------------------

    def ask(self, what: str, **args: Any) -> int:
        """Ask every other worker ``what`` (they ``answer`` within a tick); the question's number."""
        with self.locked():
            number = self._read(_QUESTIONS)[0] + 1
            self._write(_QUESTIONS, number, 0, 0)
        self.announce("question", what=what, number=number, args=args)
        return number

    def answer(self, number: int, data: Any) -> None:
        """This worker's answer to question ``number``."""
        self._write_json(f"answer-{self.slot}.json", {"pid": self.pid, "number": number,
                                                       "data": data})

    def answers(self, number: int) -> tuple[list[Any], bool]:
        """The answers to question ``number`` so far, and whether every live worker gave one."""
        found, missing = [], False
        for slot, values in self._live():
            if slot == self.slot:
                continue
            try:
                answer = json.loads((self.run / f"answer-{slot}.json").read_text())
            except (OSError, ValueError):
                answer = {}
            if answer.get("pid") == values[0] and answer.get("number") == number:
                found.append(answer["data"])
            else:
                missing = True
        return found, not missing

    # ---- the channel -------------------------------------------------------------------------

    def announce(self, kind: str, **fields: Any) -> None:
        """Tell the other workers of a change (one line, appended atomically)."""
        line = json.dumps({"kind": kind, "pid": self.pid, **fields}).encode() + b"\n"
        os.write(self._changes, line)

    def news(self) -> list[dict[str, Any]]:
        """Changes the other workers announced since the last call."""
        size = os.fstat(self._changes).st_size
        if size <= self._offset:
            return []
        data = self._partial + os.pread(self._changes, size - self._offset, self._offset)
        self._offset = size
        *lines, self._partial = data.split(b"\n")
        news = [json.loads(line) for line in lines if line]
        return [n for n in news if n.get("pid") != self.pid]

    # ---- leadership --------------------------------------------------------------------------

    def is_leader(self) -> bool:
        """Whether this worker runs the once-per-server duties (it keeps the role once taken)."""
        if not self._leader:
            try:
                fcntl.flock(self._leader_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            self._leader = True
            log.info("worker %d (pid %d) runs the server's periodic duties", self.slot, self.pid)
        return True

    def close(self) -> None:
        with self.locked():
            self._write(self.slot, 0, 0, 0)
        for name in (f"worker-{self.slot}.json", f"answer-{self.slot}.json"):
            with contextlib.suppress(OSError):
                (self.run / name).unlink()
        self._ledger.close()
        self._ledger_file.close()
        self._leader_file.close()
        os.close(self._changes)


def _end_with_parent() -> None:
    """Have the kernel send this worker SIGTERM when the supervisor dies, even by SIGKILL: no
    orphaned worker keeps serving the port."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
