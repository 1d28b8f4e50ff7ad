"""Each format gives back what it loads: over 20 load/infer/unload cycles on a fresh server the
RSS does not grow, and for Keras and PyTorch the size the cache accounts is the RSS a load adds,
measured from outside the process."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.e2e.test_model_cache import server_rss
from tests.onnx_models import weights_model
from tests.support import ServerProcess, push

MB = 1_000_000
CYCLES = 20
WIDE = (2000, 4000)  # a 2000x4000 FP32 weight matrix: 32 MB
WEIGHTS = WIDE[0] * WIDE[1] * 4

pytestmark = [
    # Keras 3 on JAX saving weights: numpy 2 warns about a jax-side __array__ without `copy`.
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"
                               ":DeprecationWarning:keras.src.backend.jax.core"),
]


def keras_model(folder: Path) -> Path:
    os.environ["KERAS_BACKEND"] = "jax"
    import keras

    inputs = keras.Input(shape=(WIDE[0],), name="x")
    hidden = keras.layers.Dense(WIDE[1], activation="relu", name="wide")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4, name="y")(hidden))
    path = folder / "wide.keras"
    model.save(path)
    return path


def torch_model(folder: Path) -> Path:
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(*WIDE), torch.nn.ReLU(), torch.nn.Linear(WIDE[1], 4))
    batch = torch.export.Dim("batch")
    program = torch.export.export(net.eval(), (torch.zeros(2, WIDE[0]),),
                                  dynamic_shapes=({0: batch},))
    path = folder / "wide.pt2"
    torch.export.save(program, str(path))
    return path


def random_data(rows: int, columns: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((rows, columns))
    return x, x @ rng.random(columns) + rng.normal(0, 0.1, rows)


def xgboost_model(folder: Path) -> Path:
    import xgboost

    x, y = random_data(5000, 20)
    model = xgboost.XGBRegressor(n_estimators=200, max_depth=8, random_state=0).fit(x, y)
    path = folder / "trees.ubj"
    model.save_model(path)
    return path


def lightgbm_model(folder: Path) -> Path:
    import lightgbm

    x, y = random_data(5000, 20)
    model = lightgbm.LGBMRegressor(n_estimators=200, num_leaves=127, min_child_samples=5,
                                   verbose=-1, random_state=0).fit(x, y)
    path = folder / "trees.txt"
    model.booster_.save_model(path)
    return path


def onnx_model(folder: Path) -> Path:
    return weights_model(folder / "table.onnx", 32)


def sklearn_model(folder: Path) -> Path:
    import skops.io as sio
    from sklearn.ensemble import RandomForestRegressor

    x, y = random_data(4000, 10)
    model = RandomForestRegressor(n_estimators=10, random_state=0).fit(x, y)
    path = folder / "forest.skops"
    sio.dump(model, path)
    return path


MAKERS: dict[str, Callable[[Path], Path]] = {
    "keras": keras_model, "torch": torch_model, "xgboost": xgboost_model,
    "lightgbm": lightgbm_model, "onnx": onnx_model, "sklearn": sklearn_model,
}
# Formats whose accounted size is checked against the RSS a load adds.
ACCOUNTED = {"keras", "torch"}


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "var")
    yield server
    server.stop()


def zeros_request(metadata: dict[str, Any]) -> dict[str, Any]:
    """One row of zeros for every input of the model's signature."""
    inputs = []
    for spec in metadata["inputs"]:
        shape = [1 if d == -1 else d for d in spec["shape"]]
        inputs.append({"name": spec["name"], "datatype": spec["datatype"], "shape": shape,
                       "data": [0] * int(np.prod(shape))})
    return {"inputs": inputs}


def cycle(client: httpx.Client, name: str, body: dict[str, Any]) -> None:
    assert client.post(f"/v2/repository/models/{name}/load").status_code == 200
    response = client.post(f"/v2/models/{name}/infer", json=body)
    assert response.status_code == 200, response.text
    assert client.post(f"/v2/repository/models/{name}/unload").status_code == 200


@pytest.mark.parametrize("fmt", list(MAKERS))
def test_load_unload_cycles_give_memory_back(fmt: str, fresh_server: ServerProcess,
                                             tmp_path: Path) -> None:
    path = MAKERS[fmt](tmp_path)
    with httpx.Client(base_url=fresh_server.url, timeout=120) as client:
        response = push(client, fmt, path)
        assert response.status_code == 201, response.text
        assert response.json()["format"] == fmt
        body = zeros_request(client.get(f"/v2/models/{fmt}").json())
        cycle(client, fmt, body)  # the framework's import and first-use costs

        before = server_rss(fresh_server)
        assert client.post(f"/v2/repository/models/{fmt}/load").status_code == 200
        added = server_rss(fresh_server) - before
        accounted = client.get(f"/api/models/{fmt}/versions/1").json()["loaded_bytes"]
        assert client.post(f"/v2/models/{fmt}/infer", json=body).status_code == 200
        assert client.post(f"/v2/repository/models/{fmt}/unload").status_code == 200
        rss = [server_rss(fresh_server)]
        for _ in range(CYCLES - 1):
            cycle(client, fmt, body)
            rss.append(server_rss(fresh_server))

    summary = (f"{fmt}: file {path.stat().st_size / MB:.1f} MB, load added {added / MB:.1f} MB, "
               f"accounted {accounted / MB:.1f} MB; RSS after each cycle (MB): "
               f"{[round(r / MB, 1) for r in rss]}")
    print(summary)
    assert rss[-1] <= 1.10 * rss[0], summary
    if fmt in ACCOUNTED:
        assert added >= 0.75 * WEIGHTS, summary  # else the load measured is not this model's alone
        assert abs(accounted - added) <= 0.25 * added, summary
