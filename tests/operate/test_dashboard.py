"""The built-in dashboard end to end: real warehouse, real HTTP server, headless Chromium.

Chromium runs Debian's system browser with ``--dump-dom`` after a virtual-time budget long
enough for the first live refresh; console messages reach its stderr as ``CONSOLE`` lines.
Set ``HEADWATER_TEST_SCREENSHOT=docs/dashboard.png`` to refresh the README's screenshot.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from headwater.infra.dashboard.panels import PANELS
from headwater.infra.dashboard.server import DashboardServer
from headwater.infra.warehouse import ChdbWarehouse
from tests.operate.chromium import chromium, panel_attributes
from tests.operate.story import loop_story, write_story

pytestmark = pytest.mark.integration

MODEL = f"dash-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def dashboard(warehouse: ChdbWarehouse) -> Iterator[DashboardServer]:
    start = int(time.time() * 1000) - 60_000
    write_story(warehouse, loop_story(start, MODEL), start, MODEL)
    server = DashboardServer(warehouse, "127.0.0.1", 0, refresh_s=1.0).start()
    yield server
    server.close()


def test_every_panel_draws_data_without_console_errors(
    dashboard: DashboardServer, tmp_path: Path
) -> None:
    run = chromium(tmp_path, "--enable-logging=stderr", "--v=0", "--dump-dom", dashboard.url)

    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    assert 'data-ready="true"' in run.stdout
    panels = panel_attributes(run.stdout)
    assert set(panels) == {p.key for p in PANELS}
    for panel in PANELS:
        assert int(panels[panel.key]["data-points"]) > 0, f"panel {panel.key} has no data"
        if panel.kind != "table":
            assert panels[panel.key].get("data-drawn") == "true", f"{panel.key} not drawn"
    assert re.search(r"updated \d\d:\d\d:\d\d UTC", run.stdout)


def test_every_asset_the_page_loads_is_served_locally(dashboard: DashboardServer) -> None:
    page = httpx.get(dashboard.url, timeout=10).text
    assets = re.findall(r'(?:src|href)="(/[^"]*)"', page)
    assert "/static/chart.umd.min.js" in assets
    for asset in assets:
        assert httpx.get(dashboard.url.rstrip("/") + asset, timeout=10).status_code == 200
    assert "http://" not in page and "https://" not in page


def test_loop_timeline_links_to_its_evidence(dashboard: DashboardServer) -> None:
    page = httpx.get(dashboard.url, timeout=10).text
    link = re.search(rf'href="(/evidence\?table=drift&amp;id={MODEL}-a1)"', page)
    assert link is not None
    evidence = httpx.get(dashboard.url.rstrip("/") + link.group(1).replace("&amp;", "&"))
    assert evidence.status_code == 200
    assert f"{MODEL}-a1" in evidence.text and "psi" in evidence.text
    missing = httpx.get(dashboard.url.rstrip("/") + "/evidence?table=events&id=x", timeout=10)
    assert missing.status_code == 404


def test_screenshot_of_the_dashboard(dashboard: DashboardServer, tmp_path: Path) -> None:
    shot = tmp_path / "dashboard.png"
    chromium(tmp_path, "--window-size=1400,1800", f"--screenshot={shot}", dashboard.url)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    target = os.environ.get("HEADWATER_TEST_SCREENSHOT")
    if target:
        shutil.copyfile(shot, target)
