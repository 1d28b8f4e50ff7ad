"""Text models: texts/s of a tiny BERT classifier served by our server (huggingface format:
tokenizers + onnxruntime) against ``transformers``' pipeline behind a plain ASGI app (PyTorch,
as MLServer's Hugging Face runtime serves it).

Both servers run on the first core, side by side, and wrk on the last (1 thread, c=8, one V2
JSON request of --texts texts each); they alternate --reps times so that host drift hits both.
Every answer is checked once against the pipeline before the load. Reports median texts/s,
p50 and p99, and the ratio; appends the points to bench/results/text_models.jsonl.

    .venv/bin/python bench/text_models.py [--reps 3] [--duration 10] [--texts 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import peers_env

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.support import ServerProcess, free_port, push  # noqa: E402
from tests.text_models import build  # noqa: E402

LUA = HERE / "v2.lua"
TEXT = "the quick brown fox jumps over the lazy dog, said alice in paris"
SYSTEMS = ("ours", "pipeline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--texts", type=int, default=1, help="texts per request")
    args = parser.parse_args()
    peers_env.ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="bench-text-"))
    model = build("text-classification", work / "classifier")
    model.model.save_pretrained(work / "pretrained")
    model.tokenizer.save_pretrained(work / "pretrained")
    body = work / "body.json"
    texts = [TEXT] * args.texts
    body.write_bytes(json.dumps({"inputs": [{"name": "text", "datatype": "BYTES",
                                             "shape": [len(texts)], "data": texts}]}).encode())
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})  # the servers inherit the first core
    try:
        ours = ServerProcess(work / "var")
        baseline = Pipeline(work / "pretrained")
    finally:
        os.sched_setaffinity(0, cores)
    urls = {"ours": f"{ours.url}/v2/models/classifier/infer",
            "pipeline": f"{baseline.url}/v2/models/classifier/infer"}
    points: list[dict] = []
    try:
        with httpx.Client(base_url=ours.url, timeout=60) as client:
            assert push(client, "classifier", model.zip_path).status_code == 201
        check(urls, body, model)
        for system in SYSTEMS:  # warm
            wrk(urls[system], body, 8, 2)
        for rep in range(args.reps):
            for system in SYSTEMS:
                result = wrk(urls[system], body, 8, args.duration)
                points.append({"system": system, "rep": rep, "texts_per_request": args.texts,
                               "texts_per_s": result["rps"] * args.texts, **result})
                print(json.dumps(points[-1]), flush=True)
    finally:
        ours.stop()
        baseline.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(points)


class Pipeline:
    """bench/pipeline_app.py under uvicorn (httptools, uvloop), on a free port."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PIPELINE_MODEL": str(folder), "TOKENIZERS_PARALLELISM": "false",
               "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "pipeline_app:app", "--port", str(self.port),
             "--http", "httptools", "--loop", "uvloop", "--no-access-log", "--log-level",
             "warning"], cwd=HERE, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("the pipeline app did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)


def check(urls: dict[str, str], body: Path, model: object) -> None:
    """Both answer the pipeline's label and probabilities (within 1e-4) for the request."""
    request = json.loads(body.read_bytes())
    answers = {}
    for system, url in urls.items():
        response = httpx.post(url, json=request, timeout=60)
        assert response.status_code == 200, response.text
        answers[system] = {o["name"]: o["data"] for o in response.json()["outputs"]}
    assert answers["ours"]["label"] == answers["pipeline"]["label"]
    assert np.allclose(answers["ours"]["probabilities"], answers["pipeline"]["probabilities"],
                       atol=1e-4)


def wrk(url: str, body: Path, connections: int, seconds: int) -> dict[str, float]:
    env = {**os.environ, "V2_BODY_FILE": str(body), "V2_CONTENT_TYPE": "application/json",
           "V2_HEADER_LENGTH": ""}
    last = str(max(os.sched_getaffinity(0)))
    out = subprocess.run(["taskset", "-c", last, "wrk", "-t1", f"-c{connections}",
                          f"-d{seconds}s", "--timeout", "10s", "-s", str(LUA), url],
                         capture_output=True, text=True, env=env, check=True)
    result = json.loads(next(line for line in out.stdout.splitlines()
                             if line.startswith("RESULT "))[len("RESULT "):])
    return {"rps": result["rps"], "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"],
            "errors": result["errors"]}


def report(points: list[dict]) -> None:
    def median(system: str, key: str) -> float:
        return statistics.median(p[key] for p in points if p["system"] == system)

    print(f"\n{'system':>9} {'texts/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for system in SYSTEMS:
        print(f"{system:>9} {median(system, 'texts_per_s'):>9.0f} {median(system, 'p50_ms'):>8.2f} "
              f"{median(system, 'p99_ms'):>8.2f}")
    ratio = median("ours", "texts_per_s") / median("pipeline", "texts_per_s")
    print(f"ours / pipeline: {ratio:.2f}x texts/s; errors: {sum(p['errors'] for p in points)}")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    with open(results / "text_models.jsonl", "a") as f:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        for point in points:
            f.write(json.dumps({"at": stamp, **point}) + "\n")


if __name__ == "__main__":
    main()
