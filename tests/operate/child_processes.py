"""Platform processes started by name for a test (``python -m``), with the settings under test
in their environment and a log each; stopped with SIGTERM (then SIGKILL), as a supervisor
would."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from headwater.core.settings import HeadwaterSettings, settings_environment


@dataclass
class Workers:
    """Child processes by name, with their logs."""

    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, module: str, settings: HeadwaterSettings) -> int:
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as out:  # the child keeps its descriptor
            process = subprocess.Popen(
                [sys.executable, "-m", module],
                env=settings_environment(settings),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.processes[name] = process
        return process.pid

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
