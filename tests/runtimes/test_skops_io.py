"""skops imported without PyTorch, trusting the same scikit-learn types as a plain import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")  # without it there is nothing to keep out

REPORT = ("import json, sys; from skops.io._trusted_types import SKLEARN_ESTIMATOR_TYPE_NAMES "
          "as names; print(json.dumps({'torch': 'torch' in sys.modules, 'names': names}))")


def imported(first: str) -> dict[str, object]:
    """What a fresh interpreter holds after ``first`` and the report's own import."""
    out = subprocess.run([sys.executable, "-c", f"{first}; {REPORT}"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def test_skops_comes_without_torch_and_trusts_the_same_estimators() -> None:
    ours = imported("from model_manager.runtimes.skops_io import sio")
    plain = imported("import skops.io")
    assert plain["torch"] is True  # a plain import walks into sklearn's torch support
    assert ours["torch"] is False
    assert ours["names"] == plain["names"] and len(plain["names"]) > 100  # type: ignore[arg-type]


def test_sklearn_torch_support_still_imports_afterwards() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from model_manager.runtimes.skops_io import sio; "
         "import sklearn.externals.array_api_compat.torch as t; print(t.__name__)"],
        check=True, capture_output=True, text=True).stdout
    assert out.strip() == "sklearn.externals.array_api_compat.torch"
