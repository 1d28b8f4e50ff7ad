"""Server settings: flag over environment over default, sizes and booleans."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_manager.settings import Settings, parse_bool, parse_size


def test_defaults_apply_with_an_empty_environment() -> None:
    settings = Settings.load(environ={})

    assert settings == Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.allow_pickle is False
    assert settings.max_upload_size == 2 * 1024**3


def test_flag_beats_environment_beats_default() -> None:
    environ = {"MODEL_MANAGER_PORT": "9000", "MODEL_MANAGER_HOST": "0.0.0.0"}

    assert Settings.load(environ={}).port == 8080
    assert Settings.load(environ=environ).port == 9000
    flagged = Settings.load({"port": 7000}, environ=environ)
    assert flagged.port == 7000
    assert flagged.host == "0.0.0.0"


def test_flag_left_unset_falls_back_to_environment() -> None:
    settings = Settings.load({"port": None, "log_level": None},
                             environ={"MODEL_MANAGER_PORT": "9000"})
    assert settings.port == 9000
    assert settings.log_level == "info"


def test_unprefixed_environment_variables_are_ignored() -> None:
    assert Settings.load(environ={"PORT": "9000", "MODEL_MANAGER_port": "9001"}).port == 8080


def test_environment_values_are_coerced_to_their_types() -> None:
    settings = Settings.load(environ={
        "MODEL_MANAGER_DATA_DIR": "/srv/models",
        "MODEL_MANAGER_MAX_UPLOAD_SIZE": "512MiB",
        "MODEL_MANAGER_MAX_REQUEST_SIZE": "1048576",
        "MODEL_MANAGER_DB_URL": "postgresql://db/models",
    })

    assert settings.data_dir == Path("/srv/models")
    assert settings.max_upload_size == 512 * 1024**2
    assert settings.max_request_size == 1048576
    assert settings.db_url == "postgresql://db/models"
    assert settings.resolved_db_url == "postgresql://db/models"


def test_flag_sizes_are_parsed_too() -> None:
    settings = Settings.load({"max_upload_size": "1MiB"}, environ={"MODEL_MANAGER_MAX_UPLOAD_SIZE": "2GiB"})
    assert settings.max_upload_size == 1024**2


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("0", False), ("YES", True), ("off", False)])
def test_booleans_from_environment(raw: str, expected: bool) -> None:
    settings = Settings.load(environ={"MODEL_MANAGER_ALLOW_PICKLE": raw, "MODEL_MANAGER_DEMO": raw})
    assert settings.allow_pickle is expected
    assert settings.demo is expected


def test_flag_boolean_overrides_environment() -> None:
    assert Settings.load({"demo": False}, environ={"MODEL_MANAGER_DEMO": "true"}).demo is False


@pytest.mark.parametrize(("key", "raw"), [
    ("MODEL_MANAGER_ALLOW_PICKLE", "maybe"),
    ("MODEL_MANAGER_PORT", "eighty"),
    ("MODEL_MANAGER_MAX_UPLOAD_SIZE", "lots"),
])
def test_bad_environment_values_raise(key: str, raw: str) -> None:
    with pytest.raises(ValueError):
        Settings.load(environ={key: raw})


@pytest.mark.parametrize(("text", "expected"), [
    ("512MiB", 512 * 1024**2),
    ("2GiB", 2 * 1024**3),
    ("100MB", 100_000_000),
    ("1048576", 1048576),
    ("1kib", 1024),
    ("1.5KiB", 1536),
    (" 10 MB ", 10_000_000),
    ("0", 0),
    (4096, 4096),
])
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MiB", "12XB", "-5", "1.5.2", "ten", "5 M i B"])
def test_parse_size_refuses_bad_values(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def test_parse_bool_refuses_bad_values() -> None:
    assert parse_bool(True) is True
    with pytest.raises(ValueError, match="not a boolean"):
        parse_bool("2")


def test_resolved_urls_default_to_the_data_dir(tmp_path: Path) -> None:
    settings = Settings.load({"data_dir": str(tmp_path / "var")}, environ={})

    assert settings.resolved_db_url == f"sqlite:///{(tmp_path / 'var' / 'registry.db').resolve()}"
    assert settings.resolved_store_url == str((tmp_path / "var" / "store").resolve())


def test_default_db_url_is_absolute() -> None:
    url = Settings().resolved_db_url
    assert url.startswith("sqlite:///")
    assert url.endswith("registry.db")
    assert Path(url[len("sqlite:///"):]).is_absolute()


def test_max_unpacked_size_defaults_to_four_uploads() -> None:
    assert Settings.load({"max_upload_size": "1MiB"}, environ={}).unpacked_limit == 4 * 1024**2
    given = Settings.load({}, environ={"MODEL_MANAGER_MAX_UNPACKED_SIZE": "1GiB"})
    assert given.max_unpacked_size == given.unpacked_limit == 1024**3


def test_the_device_is_named_as_frameworks_take_it_and_keeps_its_earlier_variable() -> None:
    assert Settings.load({"device": "CUDA"}).device == "cuda:0"
    assert Settings.load(environ={"MODEL_MANAGER_TORCH_DEVICE": "cuda:1"}).device == "cuda:1"
    both = {"MODEL_MANAGER_TORCH_DEVICE": "cuda:1", "MODEL_MANAGER_DEVICE": "cpu"}
    assert Settings.load(environ=both).device == "cpu"
    assert Settings.load({"gpu_memory_budget": "2GiB"}).gpu_memory_budget == 2 * 1024**3
    with pytest.raises(ValueError, match="not a device: 'tpu'"):
        Settings.load({"device": "tpu"})
