"""The HTTP protocol uvicorn runs: its httptools protocol, writing each response at once.

uvicorn writes a response's head when the app sends ``http.response.start`` and its body when the
app sends ``http.response.body``: two ``send`` system calls for one small answer, and on a
virtual machine possibly two wake-ups of the client. Here the connection's writes made while one
task runs are joined and written when the event loop next turns, so a response sent in one go
(every prediction) leaves in one call. Writes pile up only until then, and past
``FLUSH_AT`` bytes they go out at once, so a large or streamed body is never held in memory.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

FLUSH_AT = 64 * 1024
"""Bytes held before they are written without waiting for the loop to turn."""


class JoinedWrites:
    """A transport whose writes are held until the event loop turns (or ``FLUSH_AT`` bytes),
    then written as one. Everything else is the wrapped transport's; closing writes what is
    held first."""

    __slots__ = ("_held", "_held_bytes", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._held_bytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data if type(data) is bytes else bytes(data))
        self._held_bytes += len(data)
        if self._held_bytes >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if not self._held:
            return
        held = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held, self._held_bytes = [], 0
        if not self._transport.is_closing():
            self._transport.write(held)

    def get_write_buffer_size(self) -> int:
        return self._held_bytes + self._transport.get_write_buffer_size()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over ``JoinedWrites``: ``uvicorn.run(..., http=HttpProtocol)``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(JoinedWrites(transport, self.loop))  # type: ignore[arg-type]
