"""A model past its concurrency and queue limits gets 429 with Retry-After; others are served."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

from tests.onnx_models import offset_model, slow_model
from tests.support import ServerProcess, push


def body(rows: int) -> dict[str, object]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [rows, 4],
                        "data": np.ones((rows, 4)).ravel().tolist()}]}


def test_a_saturated_model_sheds_with_429_while_another_is_served(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "var", "--model-concurrency", "1", "--model-queue", "1")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            push(client, "heavy", slow_model(tmp_path / "slow.onnx"))
            push(client, "light", offset_model(tmp_path / "fast.onnx", 1.0))
            assert client.post("/v2/models/heavy/infer", json=body(1)).status_code == 200  # loaded

        async def burst() -> tuple[list[httpx.Response], list[httpx.Response]]:
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:

                async def light_one_by_one() -> list[httpx.Response]:
                    answers = []
                    for _ in range(5):  # another model, and the health checks, answer throughout
                        answers.append(await client.post("/v2/models/light/infer", json=body(1)))
                        answers.append(await client.get("/v2/health/ready"))
                    return answers

                # 4x what the model can hold (one running, one queued)
                heavy = [client.post("/v2/models/heavy/infer", json=body(20)) for _ in range(8)]
                *answers, light = await asyncio.gather(*heavy, light_one_by_one())
            return answers, light

        heavy, light = asyncio.run(burst())
        usage = httpx.get(f"{server.url}/api/models/heavy/usage").json()["versions"][0]
    finally:
        server.stop()
    statuses = Counter(a.status_code for a in heavy)
    assert set(statuses) == {200, 429} and statuses[200] >= 2
    refused = next(a for a in heavy if a.status_code == 429)
    assert refused.headers["retry-after"] == "1" and "--model-queue" in refused.json()["error"]
    assert {a.status_code for a in light} == {200}
    assert usage["errors_by_kind"]["overloaded"] == statuses[429]
