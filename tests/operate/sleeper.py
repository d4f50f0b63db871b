"""A stand-in long-running process for supervisor tests: it sleeps until killed."""

from __future__ import annotations

import time

if __name__ == "__main__":
    time.sleep(300)
