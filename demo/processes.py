"""The demo's worker processes: the platform's own entry points, started with the demo's
settings in their environment and stopped (SIGTERM, then SIGKILL) when it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from headwater.core.settings import ENV_PREFIX, HeadwaterSettings


def settings_environment(settings: HeadwaterSettings) -> dict[str, str]:
    """Every setting as its ``HEADWATER_*`` variable, so a child sees exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    for name, value in settings.model_dump().items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"{ENV_PREFIX}{name.upper()}"] = str(value)
    return env


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

    def dead(self) -> dict[str, str]:
        """Workers that exited, with the tail of their log."""
        return {
            name: (self.logs / f"{name}.log").read_text(errors="replace")[-1500:]
            for name, process in self.processes.items()
            if process.poll() is not None
        }

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
