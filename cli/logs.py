"""``headwater logs [PROCESS] [-f]``: the output of the processes ``headwater up`` runs.

Each process writes to ``<home>/logs/<name>[.<topic prefix>].log``
(:mod:`headwater.infra.supervision`), the supervisor included (its restarts and give-ups are
also written into the log of the process concerned). Without a PROCESS every log of this topic
prefix is shown, each line after its process's name; ``-f`` keeps following them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from headwater.core.settings import HeadwaterSettings, load_settings
from headwater.infra.supervision import logs_dir, prefix_suffix, process_log

FOLLOW_POLL_S = 0.3
Label = Callable[[str], str]  # what goes before each line: the process's name, or nothing


def register(subparsers: Any) -> None:
    logs = subparsers.add_parser(
        "logs", help="show a process's log (or every process's), following with -f"
    )
    logs.add_argument("process", nargs="?", help="e.g. feature_worker, scorer, supervisor")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("-n", "--lines", type=int, default=50, help="lines of each log first")
    logs.set_defaults(handler=_logs)


def log_files(settings: HeadwaterSettings) -> dict[str, Path]:
    """Every process log of these settings' topic prefix, by process name."""
    suffix = f"{prefix_suffix(settings)}.log"
    found = {}
    for path in sorted(logs_dir(settings).glob(f"*{suffix}")):
        name = path.name.removesuffix(suffix)
        if name and "." not in name:  # not another prefix's log
            found[name] = path
    return found


def _tail(path: Path, lines: int) -> tuple[list[str], int]:
    """The last ``lines`` lines of a log, and where it ends."""
    data = path.read_bytes()
    text = data.decode(errors="replace").splitlines()
    return (text[-lines:] if lines > 0 else []), len(data)


def _logs(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    settings = load_settings()
    files = log_files(settings)
    if args.process:
        path = files.get(args.process, process_log(settings, args.process))
        if not path.exists():
            known = ", ".join(files) or "none yet (run `headwater up`)"
            print(f"headwater logs: no log for {args.process!r}; logs: {known}", file=sys.stderr)
            return 1
        files = {args.process: path}
    elif not files:
        print(f"headwater logs: no logs under {logs_dir(settings)} yet", file=sys.stderr)
        return 1
    label: Label = (lambda name: "") if args.process else (lambda name: f"{name:<16}| ")
    ends: dict[str, int] = {}
    for name, path in files.items():
        lines, ends[name] = _tail(path, args.lines)
        for line in lines:
            out.write(f"{label(name)}{line}\n")
    out.flush()
    if args.follow:
        _follow(settings, files, ends, out, bool(args.process), label)
    return 0


def _follow(
    settings: HeadwaterSettings,
    files: dict[str, Path],
    ends: dict[str, int],
    out: IO[str],
    one: bool,
    label: Label,
) -> None:
    """Print what is appended to each log until interrupted; logs that appear are followed too
    (all processes), and a log that shrank (replaced) is read from its start."""
    partial: dict[str, bytes] = {}
    while True:
        if not one:
            for name, path in log_files(settings).items():
                if name not in files:
                    files[name], ends[name] = path, 0
        for name, path in files.items():
            try:
                size = path.stat().st_size
            except OSError:
                continue
            if size < ends[name]:
                ends[name] = 0
            if size == ends[name]:
                continue
            with path.open("rb") as log:
                log.seek(ends[name])
                data = partial.pop(name, b"") + log.read(size - ends[name])
            ends[name] = size
            *complete, rest = data.split(b"\n")
            if rest:
                partial[name] = rest  # an unfinished line: printed once it ends
            for line in complete:
                out.write(f"{label(name)}{line.decode(errors='replace')}\n")
            out.flush()
        time.sleep(FOLLOW_POLL_S)
