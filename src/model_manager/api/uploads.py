"""An upload's multipart body, read as it streams.

The ``file`` part goes straight to a temp file in the store's staging folder, hashed and sized
on the way: written once, on the filesystem whose free space the server checks and reports
(never spooled to the system's temp folder first). The other parts are text fields, kept in
memory: at most ``MAX_FIELDS`` of ``MAX_FIELD_BYTES`` each.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable

import anyio.to_thread
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from model_manager.errors import InvalidInput
from model_manager.sizes import human_size
from model_manager.store import StagedFile
from model_manager.store.base import Stager

FILE_FIELD = "file"
REFERENCE_FIELD = "reference"
"""An optional file part: a sample of inputs for drift, kept in memory."""
MAX_FIELDS = 10
MAX_FIELD_BYTES = 1024 * 1024
MAX_REFERENCE_BYTES = 64 * 1024 * 1024
NO_FILE = "the upload needs a multipart 'file' field with the model"

OpenStager = Callable[[int | None], Stager]
"""Opens the temp file for a file part, given its size when the part declares one."""


@dataclasses.dataclass
class UploadForm:
    fields: dict[str, str]
    staged: StagedFile | None = None
    filename: str = ""
    reference: tuple[str, bytes] | None = None
    """The ``reference`` part's file name and bytes, when given."""


@contextlib.asynccontextmanager
async def read_upload(request: Request, open_stager: OpenStager) -> AsyncIterator[UploadForm]:
    """The upload's text fields and its staged file. The file is removed on leaving, unless it
    was handed on and moved already (``Catalog.add_staged`` takes it)."""
    parts = _Parts(open_stager)
    try:
        await parts.read(request)
        yield parts.form
    finally:
        await anyio.to_thread.run_sync(parts.discard)


class _Parts:
    """python-multipart's callbacks: each part's headers, text fields into memory, the file's
    bytes queued for its temp file, which a worker thread writes between chunks of the body."""

    def __init__(self, open_stager: OpenStager) -> None:
        self.form = UploadForm({})
        self._open_stager = open_stager
        self._stager: Stager | None = None
        self._in_file = False
        self._file_size: int | None = None
        self._pending: list[bytes] = []
        self._header = self._value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._reference_name: str | None = None
        self._text = bytearray()

    async def read(self, request: Request) -> None:
        parser = MultipartParser(_boundary(request.headers.get("content-type", "")), {
            "on_part_begin": self._begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._data,
            "on_part_end": self._end})
        try:
            async for chunk in request.stream():
                parser.write(chunk)
                await self._write_file()
            parser.finalize()
        except FormParserError as exc:
            raise InvalidInput(f"the upload is not valid multipart data: {exc}") from exc
        if self._stager is not None:
            self.form.staged = await anyio.to_thread.run_sync(self._stager.finish)

    def discard(self) -> None:
        if self._stager is not None:
            self._stager.discard()

    async def _write_file(self) -> None:
        if self._in_file and self._stager is None:
            self._stager = await anyio.to_thread.run_sync(self._open_stager, self._file_size)
        if self._pending and self._stager is not None:
            data = b"".join(self._pending)
            self._pending.clear()
            await anyio.to_thread.run_sync(self._stager.write, data)

    def _begin(self) -> None:
        self._headers, self._text = {}, bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header.lower()] = self._value
        self._header = self._value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise InvalidInput("every multipart part needs a name in its Content-Disposition")
        self._name = _decode(options[b"name"])
        self._reference_name = None
        if self._name == FILE_FIELD:
            self._start_file(options.get(b"filename", b""))
        elif self._name == REFERENCE_FIELD and b"filename" in options:
            self._reference_name = _decode(options[b"filename"])
        elif b"filename" in options:
            raise InvalidInput(f"form fields other than '{FILE_FIELD}' and '{REFERENCE_FIELD}' "
                               "must be text")
        elif len(self.form.fields) >= MAX_FIELDS:
            raise InvalidInput(f"the upload has more than {MAX_FIELDS} form fields")

    def _start_file(self, filename: bytes) -> None:
        if self._stager is not None or self._in_file:
            raise InvalidInput(f"the upload takes one '{FILE_FIELD}' part")
        self._in_file, self.form.filename = True, _decode(filename)
        declared = self._headers.get(b"content-length", b"")
        self._file_size = int(declared) if declared.isdigit() and len(declared) < 19 else None

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file and self._name == FILE_FIELD:
            self._pending.append(data[start:end])
            return
        limit = MAX_FIELD_BYTES if self._reference_name is None else MAX_REFERENCE_BYTES
        if len(self._text) + end - start > limit:
            raise InvalidInput(f"form field {self._name[:40]!r} is over "
                               f"{human_size(MAX_FIELD_BYTES)}")
        self._text += data[start:end]

    def _end(self) -> None:
        if self._reference_name is not None:
            self.form.reference = (self._reference_name, bytes(self._text))
        elif self._name != FILE_FIELD:
            self.form.fields[self._name] = _decode(bytes(self._text))


def _boundary(content_type: str) -> bytes:
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise InvalidInput(NO_FILE)
    if not options.get(b"boundary"):
        raise InvalidInput("the multipart Content-Type has no boundary")
    return options[b"boundary"]


def _decode(value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value.decode("latin-1")
