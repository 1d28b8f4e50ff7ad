"""Models in a process of their own: the same answers as in-process, tensors through shared
memory, the process gone after unload, and a death reported as ModelCrashed; awaited from the
event loop, each caller gets its own answer, whoever else calls and whoever gives up."""

from __future__ import annotations

import faulthandler
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import joblib
import numpy as np
import pytest

from model_manager.errors import InvalidArtifact, ModelCrashed, ModelError
from model_manager.runtimes import LoadOptions, Signature, TensorSpec, get_format
from model_manager.runtimes.remote import (
    Isolation,
    ModelProcess,
    ProcessDied,
    ProcessLimits,
    _private_bytes,
    _resident_bytes,
    check_upload,
    load_remote,
)
from model_manager.runtimes.tensors_shm import TensorReader, TensorWriter
from tests.conftest import IrisFiles

ISOLATED = Isolation("all", memory=2 * 1024**3, load_timeout=60, predict_timeout=30)


class SegfaultOnLoad:
    def __reduce__(self) -> tuple[object, tuple[()]]:
        return faulthandler._sigsegv, ()


def test_tensors_round_trip_through_shared_memory() -> None:
    writer, reader = TensorWriter(), TensorReader()
    tensors = {"x": np.arange(12, dtype=np.float32).reshape(3, 4),
               "text": np.array([b"a", b"bc"], dtype=object), "big": np.ones(100_000)}
    try:
        read = reader.read(*writer.write(tensors))
        grown = reader.read(*writer.write({"huge": np.ones(1_000_000)}))
    finally:
        reader.close()
        writer.close()
    for name, array in tensors.items():
        assert read[name].dtype == array.dtype and np.array_equal(read[name], array)
    assert grown["huge"].sum() == 1_000_000


def test_a_remote_model_answers_as_in_process_and_its_process_ends(iris: IrisFiles) -> None:
    local = get_format("sklearn").load(iris.skops, LoadOptions(), None)
    remote = load_remote(iris.skops, "sklearn", LoadOptions(), local.signature, ISOLATED, "iris")
    pid = remote._process.pid
    try:
        inputs = {"input": iris.x}
        want = local.predict(inputs, ["label", "probabilities"])
        got = remote.predict(inputs, ["label", "probabilities"])
        assert remote.resident_bytes() > 0
    finally:
        remote.unload()
    assert np.array_equal(got["label"], want["label"])
    assert np.allclose(got["probabilities"], want["probabilities"])
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_a_loader_that_crashes_fails_the_check(tmp_path: Path) -> None:
    path = tmp_path / "crash.joblib"
    joblib.dump(SegfaultOnLoad(), path)
    options = LoadOptions(allow_pickle=True)

    with pytest.raises(InvalidArtifact) as info:
        check_upload(path, "sklearn", options, None, None, None, ISOLATED)
    assert info.value.message.startswith("the model's loader was killed by SIGSEGV")

    with pytest.raises(ModelCrashed) as crashed:
        load_remote(path, "sklearn", options, SIGNATURE, ISOLATED, "crash")
    assert crashed.value.reason == "crashed: SIGSEGV during load"


SIGNATURE = Signature((TensorSpec("input", "FP64", (-1, 4)),), (TensorSpec("label", "INT64", (-1,)),))


def test_check_reads_the_signature_and_compiles_the_twin(iris: IrisFiles, tmp_path: Path) -> None:
    checked = check_upload(iris.skops, "sklearn", LoadOptions(), None,
                           ({"input": iris.x[:1]}, ["label"]), tmp_path, ISOLATED)
    assert [t.name for t in checked.signature.outputs] == ["label", "probabilities"]
    assert checked.compiled is not None
    twin, report = checked.compiled
    assert twin is not None and twin.exists() and report["format"] == "onnx"
    assert os.path.dirname(twin) == str(tmp_path)


class Sleepy:
    """Answers each row's first value after sleeping as many seconds as the largest second
    value; a negative one makes it raise, a second value of 99 makes it crash."""

    n_features_in_ = 2

    def predict(self, x: np.ndarray) -> np.ndarray:
        pause = float(x[:, 1].max())
        if pause == 99:
            faulthandler._sigsegv()
        if pause < 0:
            raise ValueError("asked to fail")
        time.sleep(pause)
        return x[:, 0].copy()


SLEEPY = Signature((TensorSpec("input", "FP64", (-1, 2)),),
                   (TensorSpec("prediction", "FP64", (-1,)),))


@pytest.fixture(params=[pytest.param(("asyncio", {}), id="asyncio"),
                        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def sleepy(tmp_path: Path) -> Iterator[object]:
    path = tmp_path / "sleepy.joblib"
    joblib.dump(Sleepy(), path)
    limits = Isolation("all", memory=2 * 1024**3, load_timeout=60, predict_timeout=1.5)
    remote = load_remote(path, "sklearn", LoadOptions(allow_pickle=True), SLEEPY, limits, "sleepy")
    yield remote
    remote.unload()  # a second unload is harmless


def row(value: float, pause: float = 0.0) -> dict[str, np.ndarray]:
    return {"input": np.array([[value, pause]])}


@pytest.mark.anyio
async def test_callers_on_the_loop_and_in_threads_each_get_their_own_answer(sleepy: Any) -> None:
    answers: dict[int, float] = {}

    async def awaited(i: int) -> None:
        answers[i] = float((await sleepy.predict_async(row(i, 0.002), ["prediction"]))
                           ["prediction"][0])

    def threaded(i: int) -> None:
        answers[i] = float(sleepy.predict(row(i, 0.002), ["prediction"])["prediction"][0])

    async with anyio.create_task_group() as group:
        for i in range(40):
            if i % 4:
                group.start_soon(awaited, i)
            else:
                group.start_soon(anyio.to_thread.run_sync, threaded, i)
    assert answers == {i: float(i) for i in range(40)}


@pytest.mark.anyio
async def test_a_caller_that_gives_up_leaves_the_next_one_its_own_answer(sleepy: Any) -> None:
    with anyio.move_on_after(0.1) as scope:
        await sleepy.predict_async(row(1, 0.5), ["prediction"])
    assert scope.cancelled_caught
    assert (await sleepy.predict_async(row(2), ["prediction"]))["prediction"].tolist() == [2.0]
    assert sleepy.predict(row(3), ["prediction"])["prediction"].tolist() == [3.0]


@pytest.mark.anyio
async def test_a_models_error_is_raised_and_the_next_call_is_answered(sleepy: Any) -> None:
    with pytest.raises(ModelError, match="asked to fail"):
        await sleepy.predict_async(row(1, -1), ["prediction"])
    assert (await sleepy.predict_async(row(2), ["prediction"]))["prediction"].tolist() == [2.0]


@pytest.mark.anyio
async def test_an_awaited_call_past_the_timeout_kills_the_process(sleepy: Any) -> None:
    pid = sleepy._process.pid
    with pytest.raises(ModelCrashed) as crashed:
        await sleepy.predict_async(row(1, 30), ["prediction"])
    assert crashed.value.reason == "crashed: no answer within 1.5s during predict"
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    with pytest.raises(ModelCrashed, match=r"no answer within 1\.5s"):
        await sleepy.predict_async(row(2), ["prediction"])


@pytest.mark.anyio
async def test_a_crash_during_an_awaited_call_is_reported_and_leaves_no_segment(
        sleepy: Any) -> None:
    await sleepy.predict_async(row(1), ["prediction"])
    segments = [Path("/dev/shm", sleepy._reader._segment.name),
                Path("/dev/shm", sleepy._writer._segment.name)]
    assert all(segment.exists() for segment in segments)
    with pytest.raises(ModelCrashed) as crashed:
        await sleepy.predict_async(row(1, 99), ["prediction"])
    assert crashed.value.reason == "crashed: SIGSEGV during predict"
    with pytest.raises(ModelCrashed, match="SIGSEGV"):
        sleepy.predict(row(2), ["prediction"])
    sleepy.unload()
    assert not any(segment.exists() for segment in segments)


def test_a_death_is_named_while_other_threads_ask_after_the_process(tmp_path: Path) -> None:
    """The exit status comes once through the fork server's pipe: threads asking after the
    process's memory while the caller learns of its death must not leave "exit code 255"."""
    path = tmp_path / "crash.joblib"
    joblib.dump(SegfaultOnLoad(), path)
    options = LoadOptions(allow_pickle=True)
    deaths = []
    for _ in range(10):
        process = ModelProcess(ProcessLimits(2 * 1024**3, 30))
        asking = threading.Event()

        def ask(process: ModelProcess = process, asking: threading.Event = asking) -> None:
            while not asking.is_set():
                process.resident_bytes()

        askers = [threading.Thread(target=ask) for _ in range(2)]
        for asker in askers:
            asker.start()
        try:
            with pytest.raises(ProcessDied) as died:
                process.call("load", str(path), "sklearn", options, None)
            deaths.append(died.value.death.cause)
        finally:
            asking.set()
            for asker in askers:
                asker.join()
            process.stop()
    assert deaths == ["SIGSEGV"] * 10


def test_resident_bytes_bound_private_bytes_so_the_cheap_count_can_stand_in() -> None:
    """The memory watch reads a process's private bytes only once its resident bytes pass the
    limit: that is safe because private pages are resident pages."""
    ballast = np.ones(20_000_000 // 8)  # 20 MB of private pages
    assert _private_bytes(os.getpid()) >= ballast.nbytes
    assert _resident_bytes(os.getpid()) >= _private_bytes(os.getpid())
    child = subprocess.Popen(["sleep", "0"])
    child.wait()
    assert _resident_bytes(child.pid) == 0
