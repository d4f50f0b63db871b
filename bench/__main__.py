"""``python -m bench all [--json]``: every benchmark of the project at a small size, and one
table of the ratios each measured against its own baseline in the same run.

Each benchmark is a module ``bench.bench_<name>`` with ``run(...) -> dict``. The runner passes
the small sizes below to the parameters ``run`` has (``events=4000`` …), a running local Apache
Kafka as ``settings`` to a ``run`` that takes one, and ``demo_summary`` when given. From the
result it reports every number whose key ends in ``_ratio``, ``speedup`` or ``overhead`` (at
any depth), or the entries of a ``ratios`` dict when the module returns one. A module that
does not exist yet is reported as missing; one that fails, as failed with its error.

The ratios cancel what a run's machine does to both sides of each, but not all of it: where
one side is Python-bound (the feature worker's scoring, say) and the other is not (the broker's
one-hop floor), a slower or busier machine moves the ratio. So the report also gives the
machine's pace before and after the benchmarks (:func:`machine_pace`): a fixed pure-Python
workload's best time and the load average, to tell two runs' machines apart.

>>> ratios_of({"events": 10, "drift_to_scoring_ratio": 0.04, "target_ratio": 0.1,
...            "time_to_mitigate": {"speedup": 12.5}})
{'drift_to_scoring_ratio': 0.04, 'time_to_mitigate.speedup': 12.5}
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCHMARKS = (
    "bench_features",
    "bench_serving",
    "bench_training",
    "bench_loop",
    "bench_sink",
)

# Sizes that fit a few minutes on 2 cores for the whole report; a run() gets those it names.
SMALL_SIZES: dict[str, float] = {
    "events": 4_000,
    "records": 4_000,
    "messages": 4_000,
    "rows": 20_000,
    "requests": 400,
    "http_requests": 400,
    "seconds": 3.0,
    "samples": 4_000,
    "large_samples": 100_000,
    "trials": 4,
    "epochs": 2,
}
RATIO_SUFFIXES = ("_ratio", "speedup", "overhead")


@dataclass
class Outcome:
    """One benchmark's run: ``ok``, ``missing`` or ``failed``."""

    name: str
    status: str
    seconds: float = 0.0
    ratios: dict[str, float] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def ratios_of(result: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The ratios in a benchmark's result: its ``ratios`` dict if it has one, else every number
    under a key ending in one of :data:`RATIO_SUFFIXES` (targets are not measured: skipped)."""
    explicit = result.get("ratios")
    if isinstance(explicit, Mapping):
        return {f"{prefix}{k}": float(v) for k, v in explicit.items() if _number(v)}
    found: dict[str, float] = {}
    for key, value in result.items():
        if isinstance(value, Mapping):
            found.update(ratios_of(value, f"{prefix}{key}."))
        elif _number(value) and key.endswith(RATIO_SUFFIXES) and not key.startswith("target"):
            found[f"{prefix}{key}"] = float(value)
    return found


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _arguments(run: Callable[..., Any], context: Mapping[str, Any]) -> dict[str, Any]:
    parameters = inspect.signature(run).parameters
    return {name: value for name, value in context.items() if name in parameters}


def needs_broker(run: Callable[..., Any]) -> bool:
    return "settings" in inspect.signature(run).parameters


def run_one(name: str, context: Callable[[Callable[..., Any]], Mapping[str, Any]]) -> Outcome:
    """Import ``bench.<name>`` and run it with the arguments ``context`` gives for its run()."""
    try:
        module = importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError as error:
        if error.name in (f"bench.{name}", "bench"):
            return Outcome(name, "missing", error=f"bench/{name}.py does not exist yet")
        return Outcome(name, "failed", error=f"import failed: {error}")
    run = getattr(module, "run", None)
    if not callable(run):
        return Outcome(name, "missing", error=f"bench/{name}.py has no run() function")
    started = time.perf_counter()
    try:
        result = run(**_arguments(run, context(run)))
    except Exception as error:  # one failing benchmark must not hide the others
        return Outcome(name, "failed", time.perf_counter() - started, error=f"{error!r}")
    seconds = time.perf_counter() - started
    if not isinstance(result, Mapping):
        return Outcome(name, "failed", seconds, error=f"run() returned {type(result).__name__}")
    ratios = ratios_of(result)
    return Outcome(name, "ok", seconds, ratios, json.loads(json.dumps(result, default=str)))


@contextmanager
def local_broker() -> Iterator[Callable[[], Any]]:
    """A lazily started local Apache Kafka on bench ports under a temporary home, stopped at the
    end; ``HEADWATER_BENCH_PORT_BASE`` moves the ports (default 31000: 31292, 31293; the +92
    ports stay free for benchmarks that start a platform of their own on the same base)."""
    from headwater.core.settings import HeadwaterSettings
    from headwater.infra.kafka_clients import ensure_topics
    from headwater.infra.local_kafka import LocalKafka

    base = int(os.environ.get("HEADWATER_BENCH_PORT_BASE", "31000"))
    started: list[LocalKafka] = []
    with tempfile.TemporaryDirectory(prefix="hw-bench-") as home:
        bench = HeadwaterSettings(
            home=Path(home),
            kafka_local_port=base + 292,
            kafka_local_controller_port=base + 293,
            warehouse_host_port=base + 323,
        )

        def settings() -> HeadwaterSettings:
            if not started:
                broker = LocalKafka(bench)
                broker.start()
                started.append(broker)
                ensure_topics(bench)
            return bench

        try:
            yield settings
        finally:
            for broker in started:
                broker.stop()


def machine_pace(repeats: int = 5) -> dict[str, float]:
    """How fast this machine runs Python now: the best of ``repeats`` timings of a fixed
    workload (a million additions in a loop), with the core count and the 1-minute load average.

    >>> sorted(machine_pace(1))
    ['cpus', 'load_average_1m', 'python_reference_ms']
    """
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return {
        "python_reference_ms": round(best * 1000, 2),
        "cpus": float(os.cpu_count() or 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def run_all(names: tuple[str, ...], demo_summary: Mapping[str, Any] | None = None) -> list[Outcome]:
    outcomes = []
    with local_broker() as broker:

        def context(run: Callable[..., Any]) -> dict[str, Any]:
            values: dict[str, Any] = dict(SMALL_SIZES)
            if demo_summary is not None:
                values["demo_summary"] = demo_summary
            if needs_broker(run):
                values["settings"] = broker()
            return values

        for name in names:
            print(f"bench: running {name}…", file=sys.stderr, flush=True)
            outcomes.append(run_one(name, context))
    return outcomes


def table(outcomes: list[Outcome]) -> str:
    """One table: a row per ratio, and one row for each benchmark without ratios."""
    rows = [("benchmark", "ratio", "value", "status")]
    for o in outcomes:
        if o.status == "ok" and o.ratios:
            rows.extend(
                (o.name, k, f"{v:.4g}", f"ok {o.seconds:.0f} s") for k, v in o.ratios.items()
            )
        elif o.status == "ok":
            rows.append((o.name, "-", "-", "ok, but it reported no ratio"))
        else:
            rows.append((o.name, "-", "-", f"{o.status.upper()}: {o.error}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r[:3], widths, strict=True)) + "  " + r[3]
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def pace_line(machine: Mapping[str, Mapping[str, float]]) -> str:
    """The table's last line: the machine's pace around the run.

    >>> pace_line({"before": {"python_reference_ms": 41.0, "cpus": 2.0, "load_average_1m": 0.1},
    ...            "after": {"python_reference_ms": 44.5, "cpus": 2.0, "load_average_1m": 2.3}})
    'machine: 2 cpus; Python reference 41 ms before, 44.5 ms after; load 0.1 before, 2.3 after'
    """
    before, after = machine["before"], machine["after"]
    return (
        f"machine: {before['cpus']:g} cpus; Python reference {before['python_reference_ms']:g} ms"
        f" before, {after['python_reference_ms']:g} ms after; load"
        f" {before['load_average_1m']:g} before, {after['load_average_1m']:g} after"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("which", nargs="?", default="all", help="all, or one benchmark's name")
    parser.add_argument("--json", action="store_true", help="JSON on stdout; the table on stderr")
    parser.add_argument("--demo-summary", type=Path, help="a `headwater demo --json` summary")
    args = parser.parse_args(argv)
    names: tuple[str, ...] = BENCHMARKS
    if args.which != "all":
        names = (args.which if args.which.startswith("bench_") else f"bench_{args.which}",)
    summary = json.loads(args.demo_summary.read_text()) if args.demo_summary else None
    machine = {"before": machine_pace()}
    outcomes = run_all(names, summary)
    machine["after"] = machine_pace()
    report = table(outcomes) + "\n" + pace_line(machine)
    if args.json:
        print(report, file=sys.stderr)
        benchmarks = [asdict(o) for o in outcomes]
        document = {"benchmarks": benchmarks, "table": report, "machine": machine}
        print(json.dumps(document, indent=2))
    else:
        print(report)
    return 1 if any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
