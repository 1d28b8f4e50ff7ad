"""Signatures: a model's named input and output tensors with their v2 datatypes and shapes.

Open Inference Protocol datatypes map one-to-one onto numpy dtypes, except BYTES, which numpy
holds as an object array of ``bytes``. A dimension of ``-1`` accepts any size.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from model_manager.errors import InvalidArtifact

DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_BY_DTYPE = {dtype: name for name, dtype in DATATYPES.items() if name != "BYTES"}


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The v2 datatype of a numpy dtype; strings and objects are BYTES."""
    if dtype.kind in "OSU":
        return "BYTES"
    try:
        return _BY_DTYPE[dtype]
    except KeyError:
        raise InvalidArtifact(f"numpy dtype {dtype} has no Open Inference Protocol datatype") from None


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One named tensor of a signature."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def fits(self, shape: tuple[int, ...]) -> bool:
        """Whether a tensor of ``shape`` fits this one's (-1: any size)."""
        rule, dims = self._fit_rule
        if rule == "exact":
            return shape == dims
        if rule == "rows":  # one comparison rather than a loop: most tensors are a batch of rows
            return len(shape) == len(self.shape) and shape[1:] == dims
        return len(shape) == len(dims) and all(
            wanted in (-1, actual) for wanted, actual in zip(dims, shape, strict=True))

    @functools.cached_property
    def _fit_rule(self) -> tuple[str, tuple[int, ...]]:
        """How ``fits`` compares, decided once: ``exact`` (no -1: the dimensions themselves),
        ``rows`` (only the first is -1: the dimensions after it), else ``each`` dimension."""
        dims = tuple(self.shape)
        if -1 not in dims:
            return "exact", dims
        if dims[0] == -1 and -1 not in dims[1:]:
            return "rows", dims[1:]
        return "each", dims

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TensorSpec:
        try:
            name, datatype, shape = str(data["name"]), str(data["datatype"]), data["shape"]
            dims = tuple(int(d) for d in shape)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArtifact(
                f"a signature tensor needs name, datatype and an integer shape: {data!r}"
            ) from exc
        if datatype not in DATATYPES:
            raise InvalidArtifact(f"tensor {name!r}: unknown datatype {datatype!r}, "
                                  f"expected one of {', '.join(DATATYPES)}")
        if any(d < -1 for d in dims):
            raise InvalidArtifact(f"tensor {name!r}: dimensions are sizes or -1, got {list(dims)}")
        return cls(name, datatype, dims)


@dataclasses.dataclass(frozen=True)
class Signature:
    """A model's inputs and outputs, in the order the model declares them."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parameters: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)
    """What else a format says of the model (a text model's task and labels), as JSON values."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"inputs": [t.to_json() for t in self.inputs],
                                "outputs": [t.to_json() for t in self.outputs]}
        if self.parameters:
            data["parameters"] = dict(self.parameters)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], parameters_only: bool = False) -> Signature:
        """``parameters_only``: also take a signature of parameters and no tensors (a load's
        options, passed to a process of its own)."""
        if not isinstance(data, Mapping):
            raise InvalidArtifact("a signature is an object with 'inputs' and 'outputs' lists")
        parameters = data.get("parameters") or {}
        if not isinstance(parameters, Mapping):
            raise InvalidArtifact("a signature's 'parameters' must be an object")
        if parameters_only and not data.get("inputs") and not data.get("outputs"):
            return cls((), (), dict(parameters))
        return cls(_specs(data.get("inputs", []), "inputs"),
                   _specs(data.get("outputs", []), "outputs"), dict(parameters))

    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    @functools.cached_property
    def inputs_by_name(self) -> dict[str, TensorSpec]:
        """The inputs by name, built once (the request path asks for them every time)."""
        return {t.name: t for t in self.inputs}

    @functools.cached_property
    def outputs_by_name(self) -> dict[str, TensorSpec]:
        return {t.name: t for t in self.outputs}

    @functools.cached_property
    def all_outputs(self) -> tuple[str, ...]:
        """The output names, built once (what a request that names none computes)."""
        return tuple(t.name for t in self.outputs)


def _specs(items: Iterable[Any] | Any, key: str) -> tuple[TensorSpec, ...]:
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        raise InvalidArtifact(f"signature {key!r} must be a list of tensors")
    specs = tuple(TensorSpec.from_json(item) for item in items)
    if not specs:
        raise InvalidArtifact(f"signature {key!r} names no tensor")
    return specs
