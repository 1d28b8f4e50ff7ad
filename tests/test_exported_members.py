"""The public surface of each package is pinned: a change to it is a deliberate one."""

from __future__ import annotations

import pytest

import model_manager
import model_manager.registry
import model_manager.runtimes
import model_manager.serving
import model_manager.store
import model_manager.telemetry


@pytest.mark.parametrize(("module", "names"), [
    (model_manager, ["__version__"]),
    (model_manager.registry, ["NAME_PATTERN", "EventRecord", "ModelRecord", "Registry", "VersionRecord",
                              "acting_as", "check_alias_name", "check_model_name",
                              "create_registry_engine"]),
    (model_manager.runtimes, ["DATATYPES", "FORMATS", "LoadOptions", "ModelFormat", "Runtime",
                              "Signature", "TensorSpec", "check_archive", "datatype_of", "detect_format",
                              "format_table", "get_format"]),
    (model_manager.serving, ["InferInput", "InferOutput", "InferenceRequest", "InferenceResponse",
                             "LoadedModel", "ModelCache", "PredictionRouter", "RequestedOutput",
                             "State", "VersionLifecycle", "VersionState"]),
    (model_manager.telemetry, ["CONTENT_TYPE", "ERROR_KINDS", "OUTCOMES", "CacheHistory",
                               "Comparison", "EventLog",
                               "Metrics", "PairStats", "PredictionLog", "ShadowStats", "UsageCounts",
                               "UsageRecorder", "UsageStore", "WindowStats", "compare",
                               "parse_outcomes", "prediction_of", "usage_report",
                               "worker_exited"]),
    (model_manager.store, ["ArtifactStore", "LocalStore", "MemoryStore", "StagedFile", "iter_file",
                           "open_store", "stage_stream"]),
])
def test_exported_members(module: object, names: list[str]) -> None:
    assert sorted(module.__all__) == sorted(names)  # type: ignore[attr-defined]
    for name in names:
        assert getattr(module, name) is not None
