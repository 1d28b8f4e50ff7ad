"""How a model runs: each format loads its artifact into a ``Runtime`` that predicts.

Only this package imports machine-learning frameworks.
"""

from __future__ import annotations

from pathlib import Path

from model_manager.errors import InvalidArtifact, UnsupportedFormat
from model_manager.runtimes.archive import check_archive
from model_manager.runtimes.base import LoadOptions, ModelFormat, Runtime
from model_manager.runtimes.huggingface import HuggingFaceFormat
from model_manager.runtimes.keras import KerasFormat
from model_manager.runtimes.lightgbm import LightGBMFormat
from model_manager.runtimes.onnx import OnnxFormat
from model_manager.runtimes.signature import DATATYPES, Signature, TensorSpec, datatype_of
from model_manager.runtimes.sklearn import SklearnFormat
from model_manager.runtimes.torch import TorchFormat
from model_manager.runtimes.xgboost import XGBoostFormat

__all__ = [
    "DATATYPES",
    "FORMATS",
    "LoadOptions",
    "ModelFormat",
    "Runtime",
    "Signature",
    "TensorSpec",
    "check_archive",
    "datatype_of",
    "detect_format",
    "format_table",
    "get_format",
]


def format_table() -> list[dict[str, object]]:
    """Every format, its file endings, the extra that installs it and whether it is installed."""
    return [{"format": f.name, "platform": f.platform, "suffixes": list(f.suffixes),
             "extra": f.extra, "available": f.is_available()} for f in FORMATS.values()]

# Sniffing tries them in this order; frameworks are imported only when a model of theirs loads.
FORMATS: dict[str, ModelFormat] = {f.name: f for f in (
    OnnxFormat(), SklearnFormat(), KerasFormat(), TorchFormat(), XGBoostFormat(), LightGBMFormat(),
    HuggingFaceFormat())}


def get_format(name: str) -> ModelFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise UnsupportedFormat(
            f"unknown format {name!r}; known formats: {', '.join(sorted(FORMATS))}") from None


def detect_format(path: Path, filename: str, declared: str | None) -> ModelFormat:
    """The format an upload declares, else the one its file name or first bytes show."""
    if declared:
        return get_format(declared)
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        raise InvalidArtifact("the uploaded file is empty")
    suffix = Path(filename).suffix.lower()
    for fmt in FORMATS.values():
        if suffix in fmt.suffixes:
            return fmt
    for fmt in FORMATS.values():
        if fmt.sniff(path, head):
            return fmt
    raise UnsupportedFormat(f"cannot tell the format of {filename!r}; pass the 'format' field "
                            f"(one of {', '.join(sorted(FORMATS))})")
