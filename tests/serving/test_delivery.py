"""The delivery ledger: offsets are released in order, only when every send was acknowledged."""

from __future__ import annotations

import pytest

from headwater.serving.delivery import DeliveryFailed, DeliveryLedger


def test_release_waits_for_the_head_batch() -> None:
    ledger = DeliveryLedger()
    first = ledger.open({("f", 0): 5, ("f", 1): 3})
    second = ledger.open({("f", 0): 9})
    first.expect(2)
    second.expect(1)
    second.delivered(None)
    assert ledger.releasable() == []
    first.delivered(None)
    assert ledger.releasable() == []
    first.delivered(None)
    assert ledger.releasable() == [{("f", 0): 5, ("f", 1): 3}, {("f", 0): 9}]
    assert len(ledger) == 0


def test_a_batch_without_sends_is_released_at_once() -> None:
    ledger = DeliveryLedger()
    ledger.open({("f", 2): 7})
    assert ledger.releasable() == [{("f", 2): 7}]


def test_a_failed_send_blocks_its_offsets_for_good() -> None:
    ledger = DeliveryLedger()
    ticket = ledger.open({("f", 0): 5})
    ticket.expect(2)
    ticket.delivered("Broker: message too large")
    ticket.delivered(None)
    with pytest.raises(DeliveryFailed, match="too large"):
        ledger.releasable()
    with pytest.raises(DeliveryFailed):
        ledger.releasable()
