"""Each format is told apart by its file name, and without one by its contents."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from model_manager.runtimes import FORMATS, detect_format, format_table
from tests.conftest import IrisFiles

# TorchScript is deprecated upstream in favour of torch.export, yet most PyTorch models in use
# are TorchScript files: making one here is the point.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, iris: IrisFiles) -> dict[str, Path]:
    """One real file per format, written by its own library."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras
    import lightgbm
    import torch
    import xgboost

    folder = tmp_path_factory.mktemp("formats")
    x, y = iris.x, iris.model.predict(iris.x)
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(3)(inputs)).save(folder / "k.keras")
    keras.Model(inputs, keras.layers.Dense(3)(inputs)).save(folder / "k.h5")
    linear = torch.nn.Linear(4, 3).eval()
    torch.jit.save(torch.jit.trace(linear, torch.zeros(1, 4)), folder / "t.pt")
    torch.export.save(torch.export.export(linear, (torch.zeros(2, 4),)), folder / "t.pt2")
    booster = xgboost.XGBClassifier(n_estimators=2).fit(x, y)
    booster.save_model(folder / "x.json")
    booster.save_model(folder / "x.ubj")
    lgbm = lightgbm.LGBMRegressor(n_estimators=2, min_child_samples=1, verbose=-1)
    lgbm.fit(x, np.arange(len(x), dtype=float)).booster_.save_model(str(folder / "l.txt"))
    return {"keras": folder / "k.keras", "keras-h5": folder / "k.h5", "torch": folder / "t.pt",
            "torch-pt2": folder / "t.pt2", "xgboost": folder / "x.json",
            "xgboost-ubj": folder / "x.ubj", "lightgbm": folder / "l.txt", "onnx": iris.onnx,
            "sklearn": iris.skops}


@pytest.mark.parametrize("kind", ["keras", "keras-h5", "torch", "torch-pt2", "xgboost",
                                  "xgboost-ubj", "lightgbm", "onnx", "sklearn"])
def test_format_from_name_and_from_contents(files: dict[str, Path], kind: str,
                                            tmp_path: Path) -> None:
    expected = kind.split("-")[0]
    path = files[kind]
    assert detect_format(path, path.name, None).name == expected
    neutral = tmp_path / "upload.bin"
    shutil.copyfile(path, neutral)
    assert detect_format(neutral, "upload.bin", None).name == expected


def test_format_table_lists_every_format_with_its_extra() -> None:
    table = {row["format"]: row for row in format_table()}
    assert set(table) == set(FORMATS) == {"onnx", "sklearn", "keras", "torch", "xgboost", "lightgbm",
                                          "huggingface"}
    assert table["keras"]["extra"] == "keras" and table["onnx"]["extra"] is None
    assert all(row["available"] for row in table.values())
