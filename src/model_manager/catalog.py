"""``Catalog``: the management service behind the REST API and the CLI.

It adds versions (stage the upload, check it loads, store the blob, register it), removes them,
moves aliases, and loads a registered version's runtime for the cache. Methods block: call them
from a worker thread.

Blob lifecycle: a blob is stored before the version that points at it is registered, and deleted
only after the last version pointing at it is gone, under one lock, so the registry never points
at a missing blob. A crash in between leaves at worst an unreferenced blob, never a dangling row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from model_manager.bounded_json import parse_json
from model_manager.devices import CPU
from model_manager.errors import (
    Conflict,
    InsufficientStorage,
    InvalidArtifact,
    InvalidInput,
    ModelManagerError,
    Unreachable,
)
from model_manager.probes import Probe
from model_manager.registry import Registry, VersionRecord, check_model_name
from model_manager.runtimes import LoadOptions, Runtime, Signature, check_archive, detect_format, get_format
from model_manager.runtimes.huggingface import options_signature
from model_manager.runtimes.remote import Isolation, check_upload, load_remote
from model_manager.serving.batching import BatchPolicy
from model_manager.serving.validation import ALLOW_NON_FINITE, OutputRules
from model_manager.store import ArtifactStore, StagedFile, iter_file, stage_stream
from model_manager.store.base import Stager
from model_manager.store.space import check_room, is_disk_full, no_room
from model_manager.telemetry.events import EventLog

log = logging.getLogger(__name__)


class Catalog:
    def __init__(self, registry: Registry, store: ArtifactStore, options: LoadOptions,
                 max_upload_size: int, events: EventLog | None = None, *,
                 max_unpacked_size: int | None = None,
                 isolation: Isolation | None = None) -> None:
        self.registry = registry
        self.store = store
        self.options = options
        self.max_upload_size = max_upload_size
        self.max_unpacked_size = max_unpacked_size or 4 * max_upload_size
        """Bytes a zip-based upload may unpack to (its members' declared sizes)."""
        self.isolation = isolation or Isolation()
        """Which versions load in a process of their own; every upload is checked in one."""
        self._events = events
        self._blobs = threading.Lock()

    def add_version(self, name: str, chunks: Iterable[bytes], *, filename: str = "",
                    format: str | None = None, metadata: dict[str, Any] | None = None,
                    actor: str | None = None, compile: bool = True) -> VersionRecord:
        """Stage the uploaded bytes and ``add_staged`` them; the name and metadata are checked
        before a byte is read."""
        check_model_name(name)
        _checked_metadata(metadata)
        staged = stage_stream(chunks, self.store.staging_dir, self.max_upload_size,
                              self.store.staging_place)
        return self.add_staged(name, staged, filename=filename, format=format, metadata=metadata,
                               actor=actor, compile=compile)

    def add_staged(self, name: str, staged: StagedFile, *, filename: str = "",
                   format: str | None = None, metadata: dict[str, Any] | None = None,
                   actor: str | None = None, compile: bool = True) -> VersionRecord:
        """Register a staged upload as the model's next version, if it loads; the staged file is
        gone afterwards either way. A scikit-learn estimator also gets its compiled ONNX twin
        when it answers the same (unless ``compile`` is off); ``metadata["compiled"]`` says what
        happened. A disk that fills on the way is InsufficientStorage, and nothing is kept."""
        try:
            check_model_name(name)
            metadata, override, probe = _checked_metadata(metadata)
            with _paths_hidden(self.store.staging_dir, Path(tempfile.gettempdir())), \
                    self._disk_full_refused(staged.size):
                return self._add_staged(name, staged, filename, format, metadata, override,
                                        probe, actor, compile)
        finally:
            staged.discard()

    def open_stager(self, expected: int | None = None) -> Stager:
        """A temp file in the store's staging folder for an upload of ``expected`` bytes (if
        known), after checking that they fit."""
        if expected is not None:
            self.check_room(expected)
        return Stager.open(self.store.staging_dir, self.max_upload_size, self.store.staging_place,
                           expected)

    def check_room(self, size: int) -> None:
        """Raise InsufficientStorage if an upload of ``size`` bytes cannot fit where uploads
        are staged (and, for a local store, kept)."""
        check_room(self.store.staging_place, self.store.staging_dir, size)

    @contextlib.contextmanager
    def _disk_full_refused(self, size: int) -> Iterator[None]:
        """A full disk while checking, compiling or storing an upload of ``size`` bytes becomes
        InsufficientStorage naming the staging place."""
        try:
            yield
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            raise no_room(self.store.staging_place, self.store.staging_dir, size) from exc

    def _add_staged(self, name: str, staged: StagedFile, filename: str, format: str | None,
                    metadata: dict[str, Any], override: Signature | None, probe: Probe | None,
                    actor: str | None, compile: bool) -> VersionRecord:
        twin: StagedFile | None = None
        try:
            check_archive(staged.path, self.max_unpacked_size)
            fmt = detect_format(staged.path, filename, format)
            if fmt.name == "huggingface" and override is None:
                override = options_signature(metadata)
            signature, twin, compiled = self._check(staged, fmt.name, override, probe, compile)
            if compiled is not None:
                metadata["compiled"] = compiled
            with self._blobs:
                self.store.put(staged)
                if twin is not None:
                    self.store.put(twin)
                version = self._register(name, staged.sha256, staged.size, fmt.name, signature,
                                         metadata, actor, twin.sha256 if twin else None)
        finally:
            if twin is not None:
                twin.discard()
        if self._events is not None:
            self._events.emit("upload", model=name, version=version.number, sha256=version.sha256,
                              bytes=version.size, format=version.format,
                              compiled=version.compiled_sha256 is not None)
        return version

    def _check(self, staged: StagedFile, fmt: str, override: Signature | None,
               probe: Probe | None, compile: bool
               ) -> tuple[Signature, StagedFile | None, dict[str, Any] | None]:
        """Load the upload in a process of its own (``check_upload``): its signature, its
        staged compiled twin (if any) and the report for ``metadata["compiled"]`` (None: not
        a scikit-learn model)."""
        probe_call = (probe.inputs, list(probe.expected)) if probe is not None else None
        with tempfile.TemporaryDirectory(dir=self.store.staging_dir) as workdir:
            cpu = dataclasses.replace(self.options, device=CPU)  # the check needs no device
            checked = check_upload(staged.path, fmt, cpu, override, probe_call,
                                   Path(workdir) if compile else None, self.isolation)
            if fmt == "sklearn" and not compile:
                return checked.signature, None, {"format": None, "reason": "turned off at upload"}
            if checked.compiled is None:
                return checked.signature, None, None
            path, report = checked.compiled
            if path is None:
                return checked.signature, None, report
            twin = stage_stream(iter_file_path(path), self.store.staging_dir,
                                self.max_upload_size, self.store.staging_place)
        return checked.signature, twin, {**report, "sha256": twin.sha256, "size": twin.size}

    def delete_version(self, name: str, ref: str, actor: str | None = None) -> VersionRecord:
        with self._blobs:
            version = self.registry.delete_version(name, ref, actor)
            self._delete_unreferenced(version)
        return version

    def purge_version(self, name: str, number: int, actor: str | None = None) -> VersionRecord:
        """Delete an archived version and, if no other version references it, its blob."""
        version = self.registry.get_version(name, number)
        if not version.archived:
            raise Conflict(f"version {number} of {name!r} is not archived; archive it first")
        with self._blobs:
            self.registry.delete_version(name, number, actor, reason="purged")
            self._delete_unreferenced(version)
        return version

    def delete_orphan_blob(self, sha256: str) -> bool:
        """Delete a blob that no version references (an interrupted delete leaves one)."""
        with self._blobs:
            if self.registry.is_blob_referenced(sha256):
                return False
            self.store.delete(sha256)
            return True

    def load_runtime(self, version: VersionRecord) -> Runtime:
        """Load a registered version for serving, with its registered signature: through its
        compiled twin when it has one (and the twin loads), else as uploaded."""
        cpu = dataclasses.replace(self.options, device=CPU)
        if version.compiled_sha256 is not None:
            try:
                path = self.store.fetch(version.compiled_sha256)
                return get_format("onnx").load(path, cpu, version.signature)
            except ModelManagerError as exc:
                log.warning("%s v%d: serving the original, its compiled twin failed to load: %s",
                            version.model, version.number, exc.message)
        path = self.store.fetch(version.sha256)
        with _paths_hidden(path.parent, Path(tempfile.gettempdir())):
            if self.isolation.is_isolated(version.format, path, self.options):
                return load_remote(path, version.format, cpu, version.signature,
                                   self.isolation, f"version {version.number} of "
                                                   f"{version.model!r}")
            options = dataclasses.replace(self.options, device=self.device_for(version))
            return get_format(version.format).load(path, options, version.signature)

    def device_for(self, version: VersionRecord) -> str:
        """Where a version runs: on the server's device if its format can run there, else on
        the CPU. Pinned to the CPU: by its metadata (``"device": "cpu"``), as a compiled
        scikit-learn twin, or in a model process of its own (which would need a CUDA context of
        its own, outside the device budget)."""
        device = self.options.device
        if (device == CPU or version.metadata.get("device") == CPU
                or version.compiled_sha256 is not None
                or not get_format(version.format).accelerated
                or self.isolation.is_isolated(version.format, None, self.options)):
            return CPU
        return device

    def first_use(self, format_name: str) -> Callable[[str], None] | None:
        """A format's first use of a device, charged to the server (``Accelerator.prepare``)."""
        return getattr(get_format(format_name), "first_use", None)

    def _register(self, name: str, sha256: str, size: int, fmt: str, signature: Signature,
                  metadata: dict[str, Any], actor: str | None,
                  compiled_sha256: str | None) -> VersionRecord:
        try:
            return self.registry.create_version(name, sha256=sha256, size=size, format=fmt,
                                                signature=signature, metadata=metadata,
                                                actor=actor, compiled_sha256=compiled_sha256)
        except BaseException:
            try:
                for digest in (sha256, compiled_sha256):
                    if digest is not None and not self.registry.is_blob_referenced(digest):
                        self.store.delete(digest)
            except Unreachable:  # the registry went away: `doctor --repair` removes the blob
                log.warning("upload of %r failed with the registry unreachable; its blob may be "
                            "left unreferenced until `model-manager doctor --repair`", name)
            raise

    def _delete_unreferenced(self, version: VersionRecord) -> None:
        """Delete the version's blobs that no other version references (under ``_blobs``)."""
        for digest in (version.sha256, version.compiled_sha256):
            if digest is not None and not self.registry.is_blob_referenced(digest):
                self.store.delete(digest)


@contextlib.contextmanager
def _paths_hidden(*places: Path) -> Iterator[None]:
    """Cut paths under ``places`` out of the messages of domain errors raised inside: callers
    see what failed, not where the server keeps its files. (A full disk is named on purpose:
    the operator has to free space there.)"""
    try:
        yield
    except InsufficientStorage:
        raise
    except ModelManagerError as exc:
        message = exc.message
        for place in sorted((str(p) for p in places), key=len, reverse=True):
            message = re.sub(re.escape(place) + r"""[^\s'",:;)\]]*""", "<server file>", message)
        exc.message, exc.args = message, (message,)
        raise


def _checked_metadata(
        metadata: dict[str, Any] | None) -> tuple[dict[str, Any], Signature | None, Probe | None]:
    """A copy of an upload's metadata, with the signature override and golden probe it
    declares; malformed checks are refused now, not at serve time."""
    metadata = dict(metadata or {})
    override = Signature.from_json(metadata["signature"]) if "signature" in metadata else None
    OutputRules.from_metadata(metadata)
    probe = Probe.from_metadata(metadata)
    if metadata.get("batching") is not None:
        BatchPolicy.from_json(metadata["batching"])
    if metadata.get("device", CPU) != CPU:
        raise InvalidArtifact(f"metadata 'device' may only pin a version to {CPU!r}; the "
                              "server's --device places the others")
    if not isinstance(metadata.get(ALLOW_NON_FINITE, False), bool):
        raise InvalidArtifact(f"metadata {ALLOW_NON_FINITE!r} must be true or false")
    options_signature(metadata)
    return metadata, override, probe


def parse_metadata(text: str | None) -> dict[str, Any]:
    """An upload's ``metadata`` field: a JSON object (within ``bounded_json``'s limits), or
    nothing."""
    if not text:
        return {}
    value = parse_json(text, "metadata")
    if not isinstance(value, dict):
        raise InvalidInput("metadata must be a JSON object")
    return value


def iter_file_path(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        yield from iter_file(f)
