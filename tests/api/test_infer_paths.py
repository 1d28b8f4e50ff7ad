"""Which paths the infer endpoint takes for itself; everything else goes on to the framework."""

from __future__ import annotations

import pytest

from model_manager.api.infer import _infer_target


@pytest.mark.parametrize(("path", "target"), [
    ("/v2/models/iris/infer", ("iris", None)),
    ("/v2/models/iris/versions/3/infer", ("iris", "3")),
    ("/v2/models/iris/versions/production/infer", ("iris", "production")),
    ("/v2/models/iris", None),
    ("/v2/models/iris/ready", None),
    ("/v2/models//infer", None),
    ("/v2/models/iris/versions//infer", None),
    ("/v2/models/iris/extra/3/infer", None),
    ("/v2/models/a/b/c/d/infer", None),
    ("/api/models/iris/infer", None),
])
def test_infer_paths(path: str, target: tuple[str, str | None] | None) -> None:
    assert _infer_target(path) == target
