"""``skops.io``, imported without PyTorch: ``from model_manager.runtimes.skops_io import sio``.

skops lists scikit-learn's estimators when it is imported (its trusted types), with
scikit-learn's ``all_estimators``, which imports every scikit-learn package on its way,
``sklearn.externals.array_api_compat.torch`` included: that imports PyTorch where it is
installed, half of skops' import time (1 s of 2). The walk passes over a package that fails
to import, and it lists no estimator from ``externals``, so that package is hidden while skops
imports: the same trusted types, a second sooner, and no PyTorch in the fork server (and so in
every model process) unless a model needs it.
"""

from __future__ import annotations

import sys
from typing import Any

_WALKED_INTO = "sklearn.externals.array_api_compat.torch"


def _import() -> Any:  # skops has no type hints
    hide = "skops.io" not in sys.modules and _WALKED_INTO not in sys.modules
    if hide:
        sys.modules[_WALKED_INTO] = None  # type: ignore[assignment]  # its import fails at once
    try:
        import skops.io
    finally:
        if hide and sys.modules.get(_WALKED_INTO, False) is None:
            del sys.modules[_WALKED_INTO]
    return skops.io


sio = _import()
