"""Headwater: an event-driven machine-learning platform on Apache Kafka and ClickHouse.

Every top-level folder of the repository is a subpackage of this one, in layers that import
only downward (``docs/architecture.md``): ``core`` → ``schemas`` → ``infra`` → ``streams``,
``trainers``, ``serving`` → ``loop`` → ``operate``, ``demo`` → ``cli``.
"""

from __future__ import annotations

__version__ = "0.1.0"
