"""``headwater up | down | status``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from headwater.core.settings import load_settings
from headwater.operate import platform
from headwater.operate.operator_summary import OperatorSummary


def register(subparsers: Any) -> None:
    up = subparsers.add_parser("up", help="start Kafka, create topics, start the warehouse")
    up.add_argument("--json", action="store_true", help="print the platform's state as JSON")
    up.add_argument(
        "--bootstrap-only",
        action="store_true",
        help="topics and migrations only; start no process (compose runs each as a service)",
    )
    up.set_defaults(handler=_up)
    down = subparsers.add_parser("down", help="stop what `up` started; no process is left")
    down.add_argument("--json", action="store_true", help="print what was stopped as JSON")
    down.set_defaults(handler=_down)
    status = subparsers.add_parser(
        "status", help="broker, topics, tables, processes, lag, routing, alarms, loop decisions"
    )
    status.add_argument("--json", action="store_true", help="print as JSON")
    status.set_defaults(handler=_status)


def _print_report(report: platform.PlatformReport, as_json: bool) -> None:
    if as_json:
        print(report.to_json())
        return
    kafka = report.kafka
    state = "reachable" if kafka.get("reachable") else f"UNREACHABLE ({kafka.get('error')})"
    print(f"kafka      {kafka['mode']:<9} {kafka['bootstrap']:<24} {state}")
    warehouse = report.warehouse
    state = "reachable" if warehouse.get("reachable") else f"UNREACHABLE ({warehouse.get('error')})"
    print(f"warehouse  {warehouse['mode']:<9} {warehouse['database']:<24} {state}")
    for name, pid in report.processes.items():
        print(f"process    {name:<34} {'pid ' + str(pid) if pid else 'not running'}")
    if report.topics:
        print(f"\n{'topic':<20} {'partitions':>10} {'records':>10}")
        for topic in report.topics:
            print(f"{topic['topic']:<20} {topic['partitions']:>10} {topic['records']:>10}")
    if report.tables:
        print(f"\n{'table':<20} {'rows':>10}")
        for table in report.tables:
            print(f"{table['table']:<20} {table['rows']:>10}")
    if report.operations:
        print("\n" + OperatorSummary(**report.operations).render())


def _up(args: argparse.Namespace) -> int:
    report = platform.up(load_settings(), processes=not args.bootstrap_only)
    _print_report(report, args.json)
    return 0 if report.kafka.get("reachable") and report.warehouse.get("reachable") else 1


def _down(args: argparse.Namespace) -> int:
    stopped = platform.down(load_settings())
    if args.json:
        print(json.dumps({"stopped": stopped}))
    else:
        for name, was_running in stopped.items():
            print(f"{name}: {'stopped' if was_running else 'was not running'}")
    return 0


def _status(args: argparse.Namespace) -> int:
    report = platform.status(load_settings())
    _print_report(report, args.json)
    return 0 if report.kafka.get("reachable") else 1
