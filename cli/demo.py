"""``headwater demo``: the closed loop end to end on the demo domain (headwater.demo.run)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

from headwater.core.human_output import render
from headwater.core.settings import load_settings


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run the closed loop live: drift, retrain with search, canary, promotion",
        description="Start the platform and the processes `headwater up` starts, train the "
        "first model, stream the demo's card transactions at a constant rate with a drift "
        "injected part-way, and show the platform notice, retrain, canary and promote (or roll "
        "back an operator's bad model with --bad-candidate).",
    )
    demo.add_argument("--events", type=int, default=20_000, help="transactions to stream")
    demo.add_argument(
        "--max-events",
        type=int,
        default=0,
        help="stream on past --events, at the same rate, while a retrain or canary is in "
        "flight, up to this many events (default: three times --events)",
    )
    demo.add_argument("--seed", type=int, default=7, help="the stream's seed (reproducible)")
    demo.add_argument("--rate", type=float, default=300.0, help="events per second")
    demo.add_argument(
        "--bad-candidate",
        action="store_true",
        help="push a model trained on inverted labels into canary: it must be rolled back",
    )
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.set_defaults(handler=_demo)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _demo(args: argparse.Namespace) -> int:
    from headwater.demo.run import DemoOptions, DemoRun

    if args.events < 1000:
        print("headwater demo: --events must be at least 1000", file=sys.stderr)
        return 2
    if args.max_events and args.max_events < args.events:
        print("headwater demo: --max-events must be at least --events", file=sys.stderr)
        return 2
    options = DemoOptions(
        events=args.events,
        seed=args.seed,
        rate=args.rate,
        max_events=args.max_events,
        bad_candidate=args.bad_candidate,
    )
    signal.signal(signal.SIGTERM, _interrupt)  # stop the demo's workers on `kill` too
    # progress goes to stderr with --json, so stdout stays one JSON document
    out = sys.stderr if args.json else sys.stdout
    summary = DemoRun(
        load_settings(), options, lambda line: print(line, file=out, flush=True)
    ).run()
    print(json.dumps(summary) if args.json else render(summary))
    expected = "rolled_back" if args.bad_candidate else "promoted"
    return 0 if summary["decision"] == expected and summary["lost_records"] == 0 else 1
