"""A version's drift reference from a sample of its inputs: the version answers the sample once,
so that its outputs get a reference too (``telemetry.drift``)."""

from __future__ import annotations

from collections.abc import Mapping

import anyio.to_thread
import numpy as np

from model_manager.errors import InvalidInput, ModelManagerError
from model_manager.registry import VersionRecord
from model_manager.runtimes import DATATYPES
from model_manager.serving.cache import ModelCache
from model_manager.telemetry.drift import FIRST_INPUT, DriftMonitor, Profile
from model_manager.types import Array

MAX_ROWS = 10_000
"""Rows of a sample that make the reference (the first ones)."""


async def set_reference(cache: ModelCache, drift: DriftMonitor, version: VersionRecord,
                        sample: Mapping[str, Array]) -> Profile:
    inputs = _inputs(version, sample)
    async with cache.acquire(version) as model:
        try:
            outputs = await anyio.to_thread.run_sync(
                model.runtime.predict, inputs, version.signature.output_names())
        except ModelManagerError as exc:
            raise InvalidInput(f"version {version.number} cannot answer its reference sample: "
                               f"{exc.message}") from None
        except Exception as exc:  # the model's own code raises anything
            raise InvalidInput(f"version {version.number} cannot answer its reference sample: "
                               f"{type(exc).__name__}: {exc}"[:500]) from None
    return await anyio.to_thread.run_sync(drift.set_reference, (version.model, version.number),
                                          inputs, outputs)


def _inputs(version: VersionRecord, sample: Mapping[str, Array]) -> dict[str, Array]:
    """The sample's arrays named and typed as the version's inputs."""
    specs = version.signature.inputs
    named = {specs[0].name if name == FIRST_INPUT else name: values
             for name, values in sample.items()}
    wanted = {spec.name for spec in specs}
    if set(named) != wanted:
        raise InvalidInput(f"the reference sample gives {sorted(named)}; the version takes "
                           f"{sorted(wanted)} (an .npz holds one array per input, by name)")
    inputs = {}
    for spec in specs:
        values = np.asarray(named[spec.name])[:MAX_ROWS]
        try:
            inputs[spec.name] = values.astype(DATATYPES[spec.datatype], copy=False) \
                if spec.datatype != "BYTES" else values.astype(object)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"reference input {spec.name!r} is not {spec.datatype}: "
                               f"{exc}") from None
        if len(spec.shape) != values.ndim:
            raise InvalidInput(f"reference input {spec.name!r} has shape {list(values.shape)}; "
                               f"the version takes {list(spec.shape)}")
    return inputs
