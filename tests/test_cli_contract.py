"""What every ``headwater`` command shares: ``--version``, and ``--json`` meaning the same
everywhere (one JSON document on stdout; without it, text for people)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

import headwater
from headwater.cli.main import build_parser, main

# Commands that run in the foreground until stopped and print no result, or show a process's
# log as it was written.
NO_RESULT = {"dashboard", "logs"}


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found.update(leaves(child, (*path, name)))
            return found
    return {" ".join(path): parser}


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"headwater {headwater.__version__}"


def test_every_command_that_prints_a_result_takes_json() -> None:
    commands = leaves(build_parser())
    assert {"train", "runs list", "runs show", "retrain-worker", "models promote"} <= set(commands)
    missing = [
        name
        for name, parser in commands.items()
        if name not in NO_RESULT and not any("--json" in a.option_strings for a in parser._actions)
    ]
    assert missing == []


def test_train_defaults_to_the_serving_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import headwater.cli.train as train_cli
    import headwater.trainers.pipeline as pipeline

    requested: list[str] = []

    class Stop(Exception):
        pass

    def capture(settings: Any, request: Any, warehouse: Any) -> Any:
        requested.append(request.model)
        raise Stop

    class NoWarehouse:
        def close(self) -> None:
            pass

    monkeypatch.setattr(pipeline, "train_model", capture)
    monkeypatch.setattr(train_cli, "connect_warehouse", lambda settings: NoWarehouse())
    monkeypatch.setenv("HEADWATER_SERVING_MODEL", "rides")
    with pytest.raises(Stop):
        main(["train"])
    assert requested == ["rides"]


def test_produce_reads_stdin_without_a_file() -> None:
    args = build_parser().parse_args(["produce", "labels"])
    assert str(args.file) == "-"
