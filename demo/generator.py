"""The demo domain's event generator: card transactions with fraud labels, deterministic per seed.

Cards have habits (home country, typical amount, favourite merchants); fraud comes in short
bursts on a compromised card. Two kinds of change can be injected at chosen event indices:

* **distribution shift** (``shift_at``): amounts inflate and the channel mix moves online — the
  inputs change, the rule that makes a transaction fraud does not;
* **concept drift** (``drift_at``): fraud changes its pattern from large foreign online spends
  to small domestic "card testing" — the same inputs now mean something else.

Labels go to ``labels`` ``label_delay_ms`` after their transaction's time, interleaved in
event-time order as a real feedback loop would deliver them.

>>> stream = DemoStream(DemoConfig(seed=3, cards=20, fraud_rate=0.1, label_delay_ms=5_000))
>>> records = list(stream.records(200))
>>> sum(isinstance(r, Transaction) for r in records), sum(isinstance(r, Label) for r in records)
(200, 200)
>>> records == list(DemoStream(DemoConfig(seed=3, cards=20, fraud_rate=0.1,
...                                       label_delay_ms=5_000)).records(200))
True
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from headwater.core.settings import HeadwaterSettings, load_settings
from headwater.demo.features import CHANNELS, MERCHANT_CATEGORIES
from headwater.infra.event_bus import EventBus
from headwater.schemas.models import Label, Transaction

COUNTRIES = ("NL", "DE", "FR", "BE", "ES", "IT", "GB", "US", "PL", "SE")
FOREIGN_FRAUD = ("RU", "NG", "BR", "CN", "US", "GB")
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@dataclass(frozen=True)
class DemoConfig:
    """What the generator makes; event indices count transactions from 0."""

    seed: int = 7
    cards: int = 500
    start_ms: int = START_MS
    mean_gap_ms: float = 2_000.0
    fraud_rate: float = 0.01
    shift_at: int | None = None
    drift_at: int | None = None
    label_delay_ms: int = 60_000


@dataclass(frozen=True)
class _Card:
    card_id: str
    home: str
    amount_mu: float
    favourites: tuple[str, ...]


@dataclass(frozen=True)
class DemoTransaction:
    """One generated transaction with its ground truth."""

    index: int
    transaction: Transaction
    fraud: bool


class TransactionGenerator:
    """Transactions in event-time order; the same seed gives the same stream."""

    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._cards = [self._card(i) for i in range(config.cards)]
        self._clock = float(config.start_ms)
        self._burst: list[_Card] = []  # compromised cards with fraud still to come

    def _card(self, i: int) -> _Card:
        rng = self._rng
        favourites = tuple(rng.sample(MERCHANT_CATEGORIES[:8], 3))
        return _Card(f"card-{i:05d}", rng.choice(COUNTRIES), rng.uniform(2.5, 4.2), favourites)

    def __iter__(self) -> Iterator[DemoTransaction]:
        index = 0
        while True:
            yield self.next(index)
            index += 1

    def next(self, index: int) -> DemoTransaction:
        rng, config = self._rng, self.config
        if self._burst:
            self._clock += rng.uniform(5_000, 60_000)
            card, fraud = self._burst.pop(), True
        else:
            self._clock += rng.expovariate(1.0 / config.mean_gap_ms)
            card = rng.choice(self._cards)
            fraud = rng.random() < config.fraud_rate
            if fraud:
                self._burst = [card] * rng.randint(0, 3)
        shifted = config.shift_at is not None and index >= config.shift_at
        drifted = config.drift_at is not None and index >= config.drift_at
        t = int(self._clock)
        if fraud:
            fields = self._small_domestic(card) if drifted else self._large_foreign(card)
        else:
            fields = self._habitual(card, shifted)
        transaction = Transaction(
            event_id=f"tx-{config.seed}-{index:08d}",
            card_id=card.card_id,
            event_time_ms=t,
            hour_of_day=(t // 3_600_000) % 24,
            **fields,  # type: ignore[arg-type]
        )
        return DemoTransaction(index, transaction, fraud)

    def _habitual(self, card: _Card, shifted: bool) -> dict[str, object]:
        rng = self._rng
        amount = rng.lognormvariate(card.amount_mu, 0.6) * (1.7 if shifted else 1.0)
        weights = (0.15, 0.55, 0.25, 0.05) if shifted else (0.5, 0.15, 0.3, 0.05)
        channel = rng.choices(CHANNELS, weights)[0]
        category = (
            rng.choice(card.favourites) if rng.random() < 0.8 else rng.choice(MERCHANT_CATEGORIES)
        )
        if channel == "atm":
            category = "cash"
        abroad = rng.random() < 0.04
        return {
            "amount": round(amount, 2),
            "merchant_category": category,
            "country": rng.choice(COUNTRIES) if abroad else card.home,
            "channel": channel,
            "distance_km": round(rng.expovariate(1 / (400.0 if abroad else 6.0)), 2),
        }

    def _large_foreign(self, card: _Card) -> dict[str, object]:
        rng = self._rng
        return {
            "amount": round(math.exp(card.amount_mu) * rng.uniform(4, 15), 2),
            "merchant_category": rng.choice(("electronics", "digital_goods", "travel")),
            "country": rng.choice(FOREIGN_FRAUD),
            "channel": "online",
            "distance_km": round(rng.uniform(800, 9_000), 2),
        }

    def _small_domestic(self, card: _Card) -> dict[str, object]:
        rng = self._rng
        return {
            "amount": round(rng.uniform(0.5, 4.0), 2),
            "merchant_category": rng.choice(card.favourites),
            "country": card.home,
            "channel": rng.choice(("online", "contactless")),
            "distance_km": round(rng.expovariate(1 / 6.0), 2),
        }


class DemoStream:
    """Transactions and their delayed labels, merged in event-time order."""

    def __init__(self, config: DemoConfig) -> None:
        self.config = config

    def records(self, n_events: int) -> Iterator[Transaction | Label]:
        pending: list[tuple[int, int, Label]] = []
        generator = iter(TransactionGenerator(self.config))
        for _ in range(n_events):
            item = next(generator)
            tx = item.transaction
            while pending and pending[0][0] <= tx.event_time_ms:
                yield heapq.heappop(pending)[2]
            yield tx
            due = tx.event_time_ms + self.config.label_delay_ms
            label = Label(
                entity_id=tx.card_id,
                event_id=tx.event_id,
                label=1.0 if item.fraud else 0.0,
                event_time_ms=tx.event_time_ms,
                labeled_at_ms=due,
            )
            heapq.heappush(pending, (due, item.index, label))
        while pending:
            yield heapq.heappop(pending)[2]


def produce_demo(settings: HeadwaterSettings, config: DemoConfig, n_events: int) -> dict[str, int]:
    """Send ``n_events`` transactions to ``events.raw`` and their labels to ``labels``."""
    bus = EventBus(settings)
    counts = {"events.raw": 0, "labels": 0}
    for record in DemoStream(config).records(n_events):
        if isinstance(record, Transaction):
            bus.send_raw(record.to_avro())
            counts["events.raw"] += 1
        else:
            bus.send("labels", record)
            counts["labels"] += 1
    bus.flush()
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="produce the demo's card transactions")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cards", type=int, default=500)
    parser.add_argument("--fraud-rate", type=float, default=0.01)
    parser.add_argument("--shift-at", type=int, default=None)
    parser.add_argument("--drift-at", type=int, default=None)
    parser.add_argument("--label-delay-ms", type=int, default=60_000)
    args = parser.parse_args(argv)
    config = DemoConfig(
        seed=args.seed,
        cards=args.cards,
        fraud_rate=args.fraud_rate,
        shift_at=args.shift_at,
        drift_at=args.drift_at,
        label_delay_ms=args.label_delay_ms,
    )
    print(produce_demo(load_settings(), config, args.events))


if __name__ == "__main__":
    main()
