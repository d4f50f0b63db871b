"""The one way to build a ``deadletter`` record: bounded, whatever was rejected.

A dead letter must always fit on its topic, or rejecting a record could itself fail (a 900 KB
original plus a ``repr`` of it in the reason crosses the broker's 1 MB limit). So the original
key and value are kept up to :data:`MAX_ORIGINAL_BYTES` each; the value's full size and SHA-256
are recorded, so a truncated original can still be matched against its source. The reason is cut
to :data:`MAX_REASON_CHARS`. The excess bytes are dropped, never the record.

>>> letter = dead_letter("events.raw", 1, 2, "BAD_ENCODING", "not JSON", b"k", b"x" * 70_000, 5)
>>> len(letter.original_value), letter.original_size, letter.original_sha256[:12]
(65536, 70000, 'bca09f4a757d')
>>> dead_letter("t", 0, 0, "X", "why " * 1000, None, None, 5).reason[-24:]
'… (4000 characters, cut)'
>>> dead_letter("t", 0, 0, "X", "why", None, None, 5).original_size
-1
"""

from __future__ import annotations

import hashlib
import time

from headwater.schemas.models import DeadLetter

MAX_ORIGINAL_BYTES = 64 * 1024  # per original key or value: far below any broker's limit
MAX_REASON_CHARS = 2000


def bounded_reason(reason: str) -> str:
    """``reason``, cut to :data:`MAX_REASON_CHARS` with a note saying how long it was."""
    if len(reason) <= MAX_REASON_CHARS:
        return reason
    return f"{reason[:MAX_REASON_CHARS]}… ({len(reason)} characters, cut)"


def dead_letter(
    source_topic: str,
    source_partition: int,
    source_offset: int,
    reason_code: str,
    reason: str,
    original_key: bytes | None,
    original_value: bytes | None,
    failed_at_ms: int | None = None,
) -> DeadLetter:
    """The ``deadletter`` record of one rejected record (``failed_at_ms`` defaults to now)."""
    return DeadLetter(
        source_topic=source_topic or "?",
        source_partition=source_partition,
        source_offset=source_offset,
        reason_code=reason_code or "UNKNOWN",
        reason=bounded_reason(reason),
        original_key=None if original_key is None else original_key[:MAX_ORIGINAL_BYTES],
        original_value=None if original_value is None else original_value[:MAX_ORIGINAL_BYTES],
        original_size=-1 if original_value is None else len(original_value),
        original_sha256=""
        if original_value is None
        else hashlib.sha256(original_value).hexdigest(),
        failed_at_ms=int(time.time() * 1000) if failed_at_ms is None else failed_at_ms,
    )
