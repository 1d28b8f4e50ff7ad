"""An S3-compatible endpoint that refuses every write, as a full MinIO or a Ceph bucket over
its quota does: reads find nothing, writes get the error it was told to give."""

from __future__ import annotations

import http.server
import threading
from typing import Any

from tests.s3 import CREDENTIALS

STORAGE_FULL = (507, "XMinioStorageFull", "Storage backend has reached its minimum free drive "
                "threshold. Please delete a few objects to proceed.")


class RefusingS3:
    def __init__(self, status: int, code: str, message: str) -> None:
        error = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                 f"<Message>{message}</Message></Error>").encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_HEAD(self) -> None:
                self._answer(404, b"")

            def do_GET(self) -> None:
                self._answer(404, b"<Error><Code>NoSuchKey</Code></Error>")

            def do_PUT(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer(status, error)

            do_POST = do_PUT

            def _answer(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def env(self) -> dict[str, str]:
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.url}

    def client(self) -> object:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.url, aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1",
                            config=Config(retries={"max_attempts": 1}))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
