"""The baseline for text models: ``transformers``' own pipeline behind a plain ASGI app, the way
MLServer's Hugging Face runtime serves a model (PyTorch, the pipeline called per request).

POST .../infer takes a V2 request whose ``text`` input holds the texts and answers ``label`` and
``probabilities`` for each; GET /v2/health/* answers 200. The model folder (``save_pretrained``
of a model and its tokenizer) is in PIPELINE_MODEL.

    PIPELINE_MODEL=dir uvicorn pipeline_app:app --http httptools --loop uvloop --no-access-log
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
import torch
from transformers import pipeline

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

torch.set_num_threads(1)  # one core, as the server under comparison gets
CLASSIFY = pipeline("text-classification", model=os.environ["PIPELINE_MODEL"], device="cpu")
LABELS = [CLASSIFY.model.config.id2label[i] for i in range(CLASSIFY.model.config.num_labels)]


async def app(scope: Message, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    status, body = 404, b'{"error":"not found"}'
    if scope["method"] == "POST" and scope["path"].endswith("/infer"):
        status, body = _infer(await _body(receive))
    elif scope["method"] == "GET" and scope["path"].startswith("/v2/health/"):
        status, body = 200, b'{"ready":true}'
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _infer(raw: bytes) -> tuple[int, bytes]:
    try:
        texts = orjson.loads(raw)["inputs"][0]["data"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return 400, b'{"error":"not a V2 request of texts"}'
    ranked = CLASSIFY(texts, top_k=None)
    scores = [{r["label"]: r["score"] for r in row} for row in ranked]
    labels = [max(row, key=row.__getitem__) for row in scores]
    probabilities = [row[label] for row in scores for label in LABELS]
    return 200, orjson.dumps({"model_name": "pipeline", "outputs": [
        {"name": "label", "datatype": "BYTES", "shape": [len(texts)], "data": labels},
        {"name": "probabilities", "datatype": "FP32", "shape": [len(texts), len(LABELS)],
         "data": probabilities}]})


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)
