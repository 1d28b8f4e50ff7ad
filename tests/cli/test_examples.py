"""Every command's --help ends with examples, and each example parses against the real commands."""

from __future__ import annotations

import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from model_manager.cli.examples import EXAMPLES, walk
from model_manager.cli.main import cli

PATHS = [path for path, _ in walk(cli)]


def test_every_command_has_examples_and_every_example_a_command() -> None:
    assert set(EXAMPLES) == set(PATHS)


@pytest.mark.parametrize("path", PATHS)
def test_help_ends_with_the_examples(path: str) -> None:
    result = CliRunner().invoke(cli, [*path.split(), "--help"], prog_name="model-manager")
    assert result.exit_code == 0, result.output
    shown = result.output.rstrip().splitlines()
    examples = EXAMPLES[path]
    assert shown[-len(examples) - 1].strip() == "Examples:"
    assert [line.strip() for line in shown[-len(examples):]] == list(examples)


def parse(words: list[str]) -> click.Context:
    """The context the example's command would run in: options, arguments and their types are
    checked, and nothing runs."""
    command: click.Command = cli
    name = "model-manager"
    while isinstance(command, click.Group):
        while words[0].startswith("--"):  # a group's own options, each with its value
            words = words[2:]
        name, words = words[0], words[1:]
        found = command.get_command(click.Context(command), name)
        assert found is not None, f"no command {name!r}"
        command = found
    return command.make_context(name, words)


@pytest.mark.parametrize("example", sorted({e for examples in EXAMPLES.values() for e in examples}))
def test_each_example_is_a_valid_command_line(example: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for file in ("iris.onnx", "model.skops", "meta.json"):
        (tmp_path / file).write_text("{}")
    (tmp_path / "var").mkdir()
    words = shlex.split(example)
    assert words[0] == "model-manager"
    parse(words[1:])


def test_a_flag_that_does_not_exist_is_caught() -> None:
    with pytest.raises(click.NoSuchOption):
        parse(["predict", "iris", "--inputs", "[[1]]"])
