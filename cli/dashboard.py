"""``headwater dashboard``: the dashboard, ``/metrics`` and lag sampling in the foreground."""

from __future__ import annotations

import argparse
from typing import Any

from headwater.core.settings import load_settings
from headwater.infra.dashboard.service import main


def register(subparsers: Any) -> None:
    dashboard = subparsers.add_parser(
        "dashboard",
        help="serve the dashboard and /metrics in the foreground (`up` runs it in the background)",
    )
    dashboard.add_argument("--port", type=int, help="override HEADWATER_DASHBOARD_PORT")
    dashboard.set_defaults(handler=_dashboard)


def _dashboard(args: argparse.Namespace) -> int:
    overrides = {"dashboard_port": args.port} if args.port else {}
    main(load_settings(**overrides))
    return 0
