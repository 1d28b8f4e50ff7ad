"""Domain type aliases shared across the package."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.generic]
"""A tensor as numpy holds it; BYTES tensors are object arrays of ``bytes``."""

Tensors = Mapping[str, Array]
"""Named tensors: a model's inputs or outputs."""

ModelName = str
VersionNumber = int
Digest = str
"""A lowercase hex sha256 of an artifact's bytes."""
VersionKey = tuple[ModelName, VersionNumber]
"""A loaded version's identity: (model name, version number)."""
