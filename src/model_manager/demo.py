"""Demo models registered on a first start: the iris classifier as ONNX and as scikit-learn.

Both are trained here from scikit-learn's bundled iris data, so nothing is downloaded.
``iris`` (ONNX, FP32 input) and ``iris-sklearn`` (skops, FP64 input) give the same labels.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from model_manager.catalog import Catalog
from model_manager.settings import Settings
from model_manager.store import iter_file

log = logging.getLogger(__name__)

DEMO_METADATA = {"description": "Iris species classifier (logistic regression), demo model",
                 "classes": ["setosa", "versicolor", "virginica"]}


def train_iris() -> Any:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=1000).fit(x, y)


def write_skops(model: Any, path: Path) -> Path:
    from model_manager.runtimes.skops_io import sio

    sio.dump(model, path)
    return path


def write_onnx(model: Any, path: Path, n_features: int) -> Path:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(model, initial_types=[("input", FloatTensorType([None, n_features]))],
                  options={"zipmap": False}, target_opset=17)
    path.write_bytes(onx.SerializeToString())
    return path


def register_demo_models_from(settings: Settings) -> None:
    """Register the demo models into the registry and store ``settings`` name (a process of
    its own calls this)."""
    from model_manager.clock import Clock
    from model_manager.registry import Registry
    from model_manager.runtimes import LoadOptions
    from model_manager.runtimes.remote import Isolation
    from model_manager.store import open_store

    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    registry = Registry.from_url(settings.resolved_db_url, Clock(settings.clock_file))
    try:
        options = LoadOptions(allow_pickle=settings.allow_pickle,
                              allow_custom_code=settings.allow_custom_code,
                              threads=settings.model_threads, device=settings.device)
        store = open_store(settings.resolved_store_url, settings.data_dir / "cache")
        register_demo_models(Catalog(registry, store, options, settings.max_upload_size,
                                     max_unpacked_size=settings.unpacked_limit,
                                     isolation=Isolation.from_settings(settings)))
    finally:
        registry.close()


def register_demo_models(catalog: Catalog) -> None:
    model = train_iris()
    with tempfile.TemporaryDirectory() as tmp:
        files = {"iris-sklearn": write_skops(model, Path(tmp) / "iris.skops")}
        try:
            files["iris"] = write_onnx(model, Path(tmp) / "iris.onnx", 4)
        except ImportError:
            log.warning("skl2onnx is not installed (pip install 'ml-model-manager[demo]'); "
                        "registering only the scikit-learn demo model")
        for name, path in files.items():
            with open(path, "rb") as f:
                catalog.add_version(name, iter_file(f), filename=path.name,
                                    metadata=DEMO_METADATA, actor="demo")
            catalog.registry.set_alias(name, "production", 1, actor="demo")
            log.info("registered demo model %s", name)
