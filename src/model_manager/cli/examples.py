"""Examples at the end of ``--help``, one or two per command, as ``git`` and ``kubectl`` show them.

They live in one table, keyed by the command's path (``"alias set"``), and ``attach`` writes them
into each command's epilog; a test parses every example against the real commands, so an example
cannot name a flag that does not exist.
"""

from __future__ import annotations

import click

EXAMPLES: dict[str, tuple[str, ...]] = {
    "": ("model-manager push iris.onnx --name iris --alias production",
         "model-manager --url http://models:8080 ls"),
    "serve": ("model-manager serve --demo",
              "model-manager serve --host 0.0.0.0 --memory-budget 4GiB --preload production",
              "model-manager serve --workers auto --memory-budget 8GiB"),
    "push": ("model-manager push iris.onnx --name iris",
             "model-manager push model.skops --name churn --alias staging --metadata @meta.json"),
    "ls": ("model-manager ls", "model-manager ls iris --json"),
    "replicas": ("model-manager replicas", "model-manager --url http://lb:8080 replicas --json"),
    "show": ("model-manager show iris production", "model-manager show iris 3"),
    "rm": ("model-manager rm iris 1",),
    "pin": ("model-manager pin iris 2",),
    "unpin": ("model-manager unpin iris 2",),
    "alias": ("model-manager alias set iris production 2", "model-manager alias rm iris staging"),
    "alias set": ("model-manager alias set iris production 2",
                  "model-manager alias set iris production 3 --force"),
    "alias rm": ("model-manager alias rm iris staging",),
    "predict": ("model-manager predict iris --input '[[5.1,3.5,1.4,0.2]]'",
                "model-manager predict iris --version staging --input '[[5.1,3.5,1.4,0.2]]'"),
    "usage": ("model-manager usage iris", "model-manager usage iris --days 7 --daily"),
    "health": ("model-manager health", "model-manager health iris --json"),
    "formats": ("model-manager formats",),
    "traffic": ("model-manager traffic set iris 1=90 2=10",
                "model-manager traffic clear iris"),
    "traffic set": ("model-manager traffic set iris 1=90 2=10",
                    "model-manager traffic set iris 1=100 --shadow 2@0.5 --sticky-key user"),
    "traffic show": ("model-manager traffic show iris",),
    "traffic clear": ("model-manager traffic clear iris",),
    "promote": ("model-manager promote iris 2",),
    "rollback": ("model-manager rollback iris",),
    "shadow": ("model-manager shadow iris", "model-manager shadow iris --days 7 --daily"),
    "outcomes": ("model-manager outcomes add iris '[{\"id\": \"p1\", \"value\": 0}]'",
                 "model-manager outcomes show iris"),
    "outcomes add": ("model-manager outcomes add iris '[{\"id\": \"p1\", \"value\": 0}]'",),
    "outcomes show": ("model-manager outcomes show iris --json",),
    "settings": ("model-manager settings iris --log-rate 0.05",
                 "model-manager settings iris --auto-rollback max_error_rate=0.05",
                 "model-manager settings iris --owner team-risk --notify https://hooks.example/ml "
                 "--notify-events unhealthy,crashed --notify-secret $HOOK_SECRET"),
    "notify": ("model-manager notify test iris", "model-manager notify log iris"),
    "drift": ("model-manager drift iris", "model-manager drift iris --json"),
    "reference": ("model-manager reference iris 3 training-sample.csv",),
    "notify test": ("model-manager notify test iris",),
    "notify log": ("model-manager notify log iris --json",),
    "report": ("model-manager report", "model-manager report --model iris --stale-after 30d"),
    "cleanup": ("model-manager cleanup", "model-manager cleanup --apply --finding STALE"),
    "archive": ("model-manager archive iris 1",),
    "unarchive": ("model-manager unarchive iris 1",),
    "keys": ("model-manager keys create --name ops --role admin", "model-manager keys ls"),
    "keys create": ("model-manager keys create --name svc-a --role predict",
                    "model-manager keys create --name ops --role admin --data-dir ./var"),
    "keys ls": ("model-manager keys ls",),
    "keys revoke": ("model-manager keys revoke svc-a",),
    "doctor": ("model-manager doctor", "model-manager doctor --data-dir ./var --repair"),
}


def attach(group: click.Group) -> None:
    """Give ``group`` and every command under it the epilog of its examples."""
    for path, command in walk(group):
        examples = EXAMPLES.get(path)
        if examples:
            command.epilog = "\b\nExamples:\n" + "\n".join(f"  {e}" for e in examples)


def walk(command: click.Command, path: str = "") -> list[tuple[str, click.Command]]:
    """(path, command) for ``command`` and every command under it."""
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            found += walk(sub, f"{path} {name}".strip())
    return found
