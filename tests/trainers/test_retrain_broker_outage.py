"""The retrain worker waits for a broker that is away at its start instead of exiting."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from headwater.core.settings import HeadwaterSettings
from headwater.infra.kafka_clients import ensure_topics
from headwater.infra.local_processes import port_is_free
from headwater.infra.warehouse import ChdbWarehouse
from headwater.trainers.retrain import RetrainWorker

pytestmark = pytest.mark.integration


class Forwarder:
    """A TCP port that forwards every connection to the real broker, once :meth:`open`: until
    then nothing listens there, as with a broker that is down. (The broker's metadata names its
    own address, so only the bootstrap connection goes through here.)"""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port, self.target = port, target
        self._server: socket.socket | None = None

    def open(self) -> None:
        server = socket.create_server(("127.0.0.1", self.port))
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:  # the broker itself is gone (the session ending)
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            sink.close()

    def close(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            self._server.close()


@pytest.fixture
def broker_later(kafka: HeadwaterSettings) -> Iterator[Forwarder]:
    host, _, port = kafka.bootstrap_servers.split(",")[0].rpartition(":")
    free = next(p for p in range(kafka.kafka_local_port + 50, 65000) if port_is_free(p))
    forwarder = Forwarder(free, (host, int(port)))
    yield forwarder
    forwarder.close()


def test_the_retrain_worker_waits_for_the_broker_at_its_start(
    kafka: HeadwaterSettings,
    warehouse: ChdbWarehouse,
    broker_later: Forwarder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Topics of its own: other tests' retrain requests on the session's topics are not its work.
    own = kafka.model_copy(update={"topic_prefix": f"outage-{uuid.uuid4().hex[:8]}-"})
    ensure_topics(own)
    settings = own.model_copy(
        update={"kafka_bootstrap": f"127.0.0.1:{broker_later.port}", "kafka_timeout_s": 2.0}
    )
    # no local trial workers: this is about the broker, and `up` runs standing ones anyway
    worker = RetrainWorker(settings, warehouse=warehouse, trial_workers=0)
    ran: list[int | BaseException] = []

    def run() -> None:
        try:
            ran.append(worker.run(idle_exit_s=3.0))
        except BaseException as error:
            ran.append(error)

    caplog.set_level(logging.WARNING, logger="headwater.trainers.retrain")
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while "retrying in" not in caplog.text and time.monotonic() < deadline and not ran:
        time.sleep(0.5)
    assert not ran, f"the worker ended while the broker was away: {ran}"
    assert "did not answer" in caplog.text and "retrying in" in caplog.text

    broker_later.open()  # the broker is back: the worker opens its registry and consumes
    thread.join(timeout=180)
    assert not thread.is_alive(), "the worker did not get going once the broker was back"
    assert ran == [0]  # no retrain requests: it consumed, went idle and returned normally
