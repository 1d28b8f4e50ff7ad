"""The one domain exception tree. No HTTP here: ``api/errors.py`` maps each class to a status.

::

    ModelManagerError
    ├── InvalidInput                 the caller sent something malformed
    │   ├── InvalidName              a model or alias name breaks the naming rule
    │   └── SignatureMismatch        well-formed tensors that do not fit the model's signature
    ├── NotFound                     no such model, version or alias
    ├── Conflict                     the request contradicts the registry's state
    ├── TooLarge                     a body, upload or tensor over its configured limit
    ├── InsufficientStorage          too little free disk where an upload is written
    ├── InvalidArtifact              an uploaded file that cannot be served
    │   ├── UnsupportedFormat        the format is unknown or its extra is not installed
    │   └── UnsafeArtifact           a format that can run code on load (pickle), not allowed
    ├── Unavailable                  cannot serve now; the caller may retry later
    │   ├── Overloaded               no capacity now (memory budget full of busy or pinned models)
    │   ├── Unreachable              the registry's database or the artifact store does not answer
    │   ├── ModelCrashed             the process serving a model died (a crash, a kill, a hang)
    │   └── StoreFull                a remote artifact store refused a write: full, or over quota
    ├── PredictionTimeout            a prediction ran past the timeout
    └── ModelError                   the model itself failed while predicting
        └── InvalidOutput            the model's output breaks its signature or constraints
"""

from __future__ import annotations


class ModelManagerError(Exception):
    """Base of every error this package raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ModelManagerError):
    """The caller sent something malformed."""


class InvalidName(InvalidInput):
    """A model or alias name breaks the naming rule."""


class SignatureMismatch(InvalidInput):
    """Well-formed tensors that do not fit the model's signature."""


class NotFound(ModelManagerError):
    """No such model, version or alias."""


class Conflict(ModelManagerError):
    """The request contradicts the registry's state."""


class TooLarge(ModelManagerError):
    """A body, upload or tensor over its configured limit."""


class InsufficientStorage(ModelManagerError):
    """An upload cannot be written: the disk where it goes (the store's folder, its cache, or the
    staging folder) has too little free space. The message names the place and its free space;
    nothing of the upload is kept."""


class InvalidArtifact(ModelManagerError):
    """An uploaded file that cannot be served."""


class UnsupportedFormat(InvalidArtifact):
    """The format is unknown, or the optional extra that serves it is not installed."""


class UnsafeArtifact(InvalidArtifact):
    """A format that can run arbitrary code when loaded, which the settings do not allow."""


class Unavailable(ModelManagerError):
    """The server cannot serve this now; retrying later may succeed."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Overloaded(Unavailable):
    """No capacity right now: a transient condition, never a fault of the model."""


class Unreachable(Unavailable):
    """A service the server depends on (the registry's database, the artifact store) cannot be
    reached or written now: never a fault of the model or of the caller."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message, retry_after)


class StoreFull(Unavailable):
    """A remote artifact store refused a write because it is full or over its quota: the
    provider's message says which; retrying once space is freed may succeed."""

    def __init__(self, message: str, retry_after: int = 60) -> None:
        super().__init__(message, retry_after)


class ModelCrashed(Unavailable):
    """The process that serves a model died: a crash, a kill for memory, or a hang stopped by
    the timeout. ``reason`` says which ("crashed: SIGSEGV during predict"); the model is loaded
    again after a backoff."""

    def __init__(self, message: str, reason: str, retry_after: int = 1) -> None:
        super().__init__(message, retry_after)
        self.reason = reason


class Saturated(Overloaded):
    """The model already has as many requests as it may run and queue: the caller should back
    off and retry."""


class ModelError(ModelManagerError):
    """The model raised while predicting."""


class InvalidOutput(ModelError):
    """The model answered with output that breaks its signature or its declared constraints."""


class PredictionTimeout(ModelManagerError):
    """A prediction ran longer than the configured timeout."""
