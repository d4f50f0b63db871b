"""One log format for every long-running process: one line per decision, readable by operators.

Each process calls :func:`configure_logging` once with its name; modules log through
``logging.getLogger(__name__)``. Lines go to standard error, which ``headwater up`` sends to
the process's log file (``headwater logs PROCESS`` shows it).

>>> import io, logging
>>> out = io.StringIO()
>>> configure_logging("doc", stream=out)
>>> logging.getLogger("headwater.doc").info("retrain requested: %s", "drift on amount")
>>> line = out.getvalue()
>>> "INFO doc headwater.doc: retrain requested: drift on amount" in line
True
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s {process} %(name)s: %(message)s"


def configure_logging(
    process: str, level: int = logging.INFO, stream: TextIO | None = None
) -> None:
    """Send INFO and above of every logger to ``stream`` (stderr), each line naming ``process``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT.format(process=process)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # librdkafka's and the web servers' chatter stays at WARNING
    for noisy in ("kafka", "aiokafka", "uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
