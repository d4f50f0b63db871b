"""``headwater logs``: one process's log or all of them, and ``-f`` following new lines."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from headwater.cli.main import main
from headwater.core.settings import HeadwaterSettings, settings_environment
from headwater.infra.supervision import process_log


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HeadwaterSettings:
    settings = HeadwaterSettings(home=tmp_path, topic_prefix="lg-")
    for name, key in settings_environment(settings).items():
        if name.startswith("HEADWATER_"):
            monkeypatch.setenv(name, key)
    for name in ("scorer", "feature_worker"):
        path = process_log(settings, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{name} line {i}\n" for i in range(80)))
    # Another prefix's log, which this prefix's `logs` must not show.
    (tmp_path / "logs" / "scorer.other.log").write_text("not mine\n")
    return settings


def test_one_process_shows_its_last_lines(
    home: HeadwaterSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["logs", "scorer", "-n", "3"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"scorer line {i}" for i in (77, 78, 79)]


def test_all_processes_are_labelled_and_other_prefixes_left_out(
    home: HeadwaterSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["logs", "-n", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{'feature_worker':<16}| feature_worker line 79",
        f"{'scorer':<16}| scorer line 79",
    ]


def test_an_unknown_process_names_the_known_ones(
    home: HeadwaterSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["logs", "sinq"]) == 1
    assert "no log for 'sinq'; logs: feature_worker, scorer" in capsys.readouterr().err


def test_follow_prints_lines_as_they_are_written(home: HeadwaterSettings) -> None:
    follower = subprocess.Popen(
        [sys.executable, "-m", "headwater.cli.main", "logs", "-f", "-n", "1"],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline().endswith("| feature_worker line 79\n")
        assert follower.stdout.readline().endswith("| scorer line 79\n")
        with process_log(home, "scorer").open("a") as log:
            log.write("restarted: pid 42\nhalf a li")
        time.sleep(0.5)
        with process_log(home, "scorer").open("a") as log:
            log.write("ne\n")
        new = process_log(home, "sink")  # a process that starts later is followed too
        new.write_text("sink up\n")
        got = {follower.stdout.readline() for _ in range(3)}
        assert got == {
            f"{'scorer':<16}| restarted: pid 42\n",
            f"{'scorer':<16}| half a line\n",
            f"{'sink':<16}| sink up\n",
        }
    finally:
        follower.terminate()
        follower.wait(timeout=10)
        if follower.stdout is not None:
            follower.stdout.close()
