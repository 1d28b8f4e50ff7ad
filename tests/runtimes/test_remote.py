"""Models in a process of their own: the same answers as in-process, tensors through shared
memory, the process gone after unload, and a death reported as ModelCrashed."""

from __future__ import annotations

import faulthandler
import os
from pathlib import Path

import joblib
import numpy as np
import pytest

from model_manager.errors import InvalidArtifact, ModelCrashed
from model_manager.runtimes import LoadOptions, Signature, TensorSpec, get_format
from model_manager.runtimes.remote import Isolation, check_upload, load_remote
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
