"""Reads of records framed in Headwater's pre-standard byte order, counted and logged.

Until 0.2, Headwater wrote the single-object header's CRC-64-AVRO fingerprint with its eight
bytes reversed (big-endian), so no conforming Avro library could read it. Writers now follow the
specification (little-endian). For one release, decoders still accept the old order, so records
already on the topics read; every such read is counted here, per schema, and the first one of
each schema is logged. ``infra/metrics`` exports the counts as
``headwater_legacy_fingerprint_reads_total``, so an operator sees when the old bytes are gone.

>>> reads = LegacyReads()
>>> reads.record("dev.headwater.Label")
>>> reads.record("dev.headwater.Label")
>>> reads.counts()
{'dev.headwater.Label': 2}
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("headwater.schemas")


class LegacyReads:
    """Counts of records read with the old (reversed) fingerprint byte order, by schema."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def record(self, schema: str) -> None:
        """One record of ``schema`` was read in the old byte order; the first one is logged."""
        with self._lock:
            seen = self._counts.get(schema, 0)
            self._counts[schema] = seen + 1
        if not seen:
            log.warning(
                "read a %s record whose single-object fingerprint is in the old reversed byte "
                "order (written by Headwater before 0.2); it decodes for this release only. "
                "Re-write such records in the standard order (further reads are counted in "
                "headwater_legacy_fingerprint_reads_total, not logged)",
                schema,
            )

    def counts(self) -> dict[str, int]:
        """Reads so far, by schema full name."""
        with self._lock:
            return dict(self._counts)


# One per process: every codec and catalogue of the process reports here.
LEGACY_READS = LegacyReads()
