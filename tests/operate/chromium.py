"""Debian's system Chromium, headless, for the dashboard's end-to-end tests: ``--dump-dom``
after a virtual-time budget long enough for the first live refresh; console messages reach its
stderr as ``CONSOLE`` lines."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Debian's headless Chromium on ``args`` with a fresh profile (also the demo's test)."""
    profile = tmp_path / "profile"
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=3000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def panel_attributes(dom: str) -> dict[str, dict[str, str]]:
    panels = {}
    for tag in re.findall(r"<section [^>]*>", dom):
        attributes = dict(re.findall(r'([\w-]+)="([^"]*)"', tag))
        panels[attributes["id"].removeprefix("panel-")] = attributes
    return panels
