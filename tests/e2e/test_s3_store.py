"""The server with its artifacts in S3 (a local S3 API), the registry shared through the data dir."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.onnx_models import offset_model
from tests.s3 import S3Server
from tests.support import ServerProcess, push

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0]}]}


def test_models_stored_in_s3_are_served_and_deleted_there(s3: S3Server, tmp_path: Path) -> None:
    bucket = s3.new_bucket("artifacts")
    db = f"sqlite:///{tmp_path}/registry.db"
    args = ("--db-url", db, "--store-url", "s3://artifacts/models")
    first = ServerProcess(tmp_path / "one", *args, env=s3.env)
    try:
        with httpx.Client(base_url=first.url, timeout=60) as client:
            version = push(client, "cloud", offset_model(tmp_path / "m.onnx", 5.0)).json()
            assert client.post("/v2/models/cloud/infer", json=BODY).json()["outputs"][0]["data"][0] == 6.0
    finally:
        first.stop()
    key = f"models/sha256/{version['sha256'][:2]}/{version['sha256']}"
    s3.client().head_object(Bucket=bucket, Key=key)  # type: ignore[attr-defined]
    second = ServerProcess(tmp_path / "two", *args, env=s3.env)  # an empty local cache
    try:
        with httpx.Client(base_url=second.url, timeout=60) as client:
            assert client.post("/v2/models/cloud/infer", json=BODY).json()["outputs"][0]["data"][0] == 6.0
            assert client.get("/api/report").json()["totals"]["storage_bytes"] == version["size"]
            assert client.delete("/api/models/cloud/versions/1").status_code == 200
    finally:
        second.stop()
    listed = s3.client().list_objects_v2(Bucket=bucket)  # type: ignore[attr-defined]
    assert listed.get("KeyCount", 0) == 0
