"""Running a worker as a process's foreground work until SIGTERM: ``/metrics`` served, SIGTERM
asking the worker to stop (it finishes what it holds, commits, leaves its group), and the exit
code said once for every worker: 0 stopped, 1 failed (the error printed, naming the worker),
130 interrupted.

>>> class Once:
...     def run(self) -> int:
...         return 1
...     def stop(self) -> None:
...         pass
>>> from headwater.core.settings import HeadwaterSettings
>>> run_until_sigterm(Once(), HeadwaterSettings(metrics_port=0), "doc worker")
0
"""

from __future__ import annotations

import signal
import sys
from typing import Protocol

from headwater.core.errors import HeadwaterError
from headwater.core.settings import HeadwaterSettings
from headwater.infra.metrics import serve_process_metrics


class StoppableWorker(Protocol):
    def run(self) -> int: ...

    def stop(self) -> None: ...


def run_until_sigterm(worker: StoppableWorker, settings: HeadwaterSettings, name: str) -> int:
    """Run ``worker`` until it ends or SIGTERM stops it; ``name`` (``retrain worker``) names
    its ``/metrics`` role and its errors. Returns the process's exit code."""
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    serve_process_metrics(settings, name.replace(" ", "-"))
    try:
        worker.run()
    except HeadwaterError as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
