"""Blobs in an S3 bucket (``s3://bucket/prefix``), cached on local disk by digest.

Objects are ``<prefix>/sha256/<ab>/<digest>``. Uploads go through boto3's managed transfer, which
switches to a multipart upload for large artifacts; an object appears only once it is complete,
so a crash never leaves half a blob in the bucket. ``fetch`` downloads a blob once into the local
cache (to a temp file, then renamed) and serves it from there afterwards: a digest names one
content forever. The endpoint and credentials come from boto3's usual sources
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ..., instance roles).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from model_manager.errors import NotFound, StoreFull, Unreachable
from model_manager.store.base import StagedFile
from model_manager.types import Digest

_DIGEST = re.compile(r"[0-9a-f]{64}")
_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "Throttling", "ThrottlingException"}
_FULL_CODES = {"XMinioStorageFull", "XMinioAdminBucketQuotaExceeded", "QuotaExceeded",
               "InsufficientStorage", "StorageFull"}
"""Codes of S3-compatible stores for a write refused for want of space or quota (MinIO's full
drives and bucket quotas, Ceph's quotas); a 507 answer means the same whatever its code."""
MULTIPART_THRESHOLD = 64 * 1024**2


class S3Store:
    def __init__(self, bucket: str, prefix: str, cache_dir: Path, client: Any = None,
                 multipart_threshold: int = MULTIPART_THRESHOLD) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.cache_dir = Path(cache_dir)
        self._s3 = client or boto3.client("s3")
        self._transfer = TransferConfig(multipart_threshold=multipart_threshold,
                                        multipart_chunksize=multipart_threshold)

    @classmethod
    def from_url(cls, url: str, cache_dir: Path) -> S3Store:
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"an S3 store URL is s3://bucket/prefix, got {url!r}")
        return cls(bucket, prefix, cache_dir)

    @property
    def staging_dir(self) -> Path:
        return self.cache_dir / "tmp"

    @property
    def staging_place(self) -> str:
        return f"the store's cache at {self.cache_dir}"

    def put(self, staged: StagedFile) -> None:
        """Upload the staged file. Raises StoreFull when the store refuses it for want of space
        or quota, Unreachable when S3 cannot be reached or is failing."""
        key = self._key(staged.sha256)
        try:
            if not self.exists(staged.sha256):
                self._upload(staged, key)
        finally:
            staged.discard()

    def _upload(self, staged: StagedFile, key: str) -> None:
        try:
            self._s3.upload_file(str(staged.path), self.bucket, key, Config=self._transfer)
        except Exception as exc:
            cause = _client_error_of(exc)
            self._raise_full(cause)
            self._raise_unreachable(cause)
            raise

    def fetch(self, digest: Digest) -> Path:
        cached = self._cached(digest)
        if cached.is_file():
            return cached
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=f".{digest}.")
        os.close(fd)
        try:
            self._s3.download_file(self.bucket, self._key(digest), tmp, Config=self._transfer)
            os.replace(tmp, cached)
        except Exception as exc:
            Path(tmp).unlink(missing_ok=True)
            if _is_missing(exc):
                raise NotFound(f"artifact {digest} is missing from s3://{self.bucket}/"
                               f"{self.prefix}") from exc
            self._raise_unreachable(exc)
            raise
        return cached

    def delete(self, digest: Digest) -> None:
        self._s3.delete_object(Bucket=self.bucket, Key=self._key(digest))
        self._cached(digest).unlink(missing_ok=True)

    def exists(self, digest: Digest) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=self._key(digest))
        except Exception as exc:
            if _is_missing(exc):
                return False
            self._raise_unreachable(exc)
            raise
        return True

    def blobs(self) -> dict[Digest, int]:
        found: dict[Digest, int] = {}
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(""))
        for page in pages:
            for item in page.get("Contents", []):
                name = item["Key"].rsplit("/", 1)[-1]
                if _DIGEST.fullmatch(name):
                    found[name] = int(item["Size"])
        return found

    def _raise_full(self, exc: Exception) -> None:
        """Raise ``exc`` as StoreFull, with the provider's message, when it says the store is
        full or over quota."""
        response = getattr(exc, "response", None) or {}
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        error = response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in _FULL_CODES or status == 507:
            raise StoreFull(f"the artifact store s3://{self.bucket}/{self.prefix} refused the "
                            f"upload: {str(error.get('Message') or code)[:300]} ({code or status})"
                            ) from exc

    def _raise_unreachable(self, exc: Exception) -> None:
        """Raise ``exc`` as Unreachable when it means S3 cannot be reached or is failing (no
        connection, a timeout, a 5xx or throttling answer)."""
        from botocore.exceptions import BotoCoreError, ClientError

        response = getattr(exc, "response", None) or {}
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        code = str(response.get("Error", {}).get("Code", ""))
        if isinstance(exc, ClientError) and status < 500 and code not in _TRANSIENT_CODES:
            return
        if isinstance(exc, (BotoCoreError, ClientError)):
            raise Unreachable(f"the artifact store s3://{self.bucket}/{self.prefix} cannot be "
                              f"reached: {str(exc)[:300]}") from exc

    def _key(self, digest: str) -> str:
        if digest and not _DIGEST.fullmatch(digest):
            raise NotFound(f"not a sha256 digest: {digest!r}")
        path = f"sha256/{digest[:2]}/{digest}" if digest else "sha256/"
        return f"{self.prefix}/{path}" if self.prefix else path

    def _cached(self, digest: Digest) -> Path:
        if not _DIGEST.fullmatch(digest):
            raise NotFound(f"not a sha256 digest: {digest!r}")
        return self.cache_dir / "sha256" / digest[:2] / digest


def _client_error_of(exc: Exception) -> Exception:
    """The S3 answer behind boto3's S3UploadFailedError (raised while handling it), else ``exc``."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import ClientError

    inner = exc.__context__
    if isinstance(exc, S3UploadFailedError) and isinstance(inner, ClientError):
        return inner  # type: ignore[no-any-return]  # botocore is untyped here
    return exc


def _is_missing(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound")
