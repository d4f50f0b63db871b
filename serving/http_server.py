"""Running the HTTP scoring app with uvicorn, bound to loopback unless configured otherwise.

:class:`HttpServer` runs it on a background thread (tests, the benchmark); ``python -m
headwater.serving.http_server`` runs it in the foreground with the streams' online feature lookup (a
replica of the feature worker's changelog, opened once that exists).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import torch
import uvicorn
from fastapi import FastAPI

from headwater.core.errors import BrokerUnavailable, HeadwaterError, PortInUse
from headwater.core.logs import configure_logging
from headwater.core.settings import HeadwaterSettings, load_settings
from headwater.infra.local_processes import port_is_free
from headwater.infra.metrics import serve_process_metrics
from headwater.serving.http_app import OnlineLookup, create_app
from headwater.serving.runtime import start_runtime


class HttpServer:
    """A uvicorn server on ``host:port`` on a background thread."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.host = host
        self.port = port
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, wait_s: float = 30.0) -> HttpServer:
        self._thread.start()
        deadline = time.monotonic() + wait_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise PortInUse(f"HTTP scoring did not start on {self.url} (is the port taken?)")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


def online_lookup(settings: HeadwaterSettings) -> OnlineLookup:
    """The streams' changelog replica of the configured feature set, opened on first use: the
    feature worker may create its changelog topic after this server starts (``headwater up``
    starts both at once). Until the topic exists a lookup raises :class:`BrokerUnavailable`
    naming it (the request gets a 503 saying so) and the next lookup tries again."""
    from headwater.infra.kafka_clients import cluster_metadata
    from headwater.streams.feature_module import load_feature_module
    from headwater.streams.lookup import ChangelogReplica, OnlineFeatures
    from headwater.streams.worker import changelog_topic

    guard = threading.Lock()  # the replica is one consumer: one caller at a time
    replicas: list[ChangelogReplica] = []
    refreshed = [0.0]

    def lookup(entity_id: str) -> OnlineFeatures | None:
        with guard:
            if not replicas:
                feature_set = load_feature_module(settings.features).feature_set
                topic = changelog_topic(settings, feature_set)
                if topic not in cluster_metadata(settings).topics:
                    raise BrokerUnavailable(
                        f"changelog topic {topic} does not exist yet: has the feature worker "
                        "(python -m headwater.streams.worker) run?"
                    )
                replicas.append(ChangelogReplica(settings, feature_set))
            replica = replicas[0]
            if time.monotonic() - refreshed[0] > 0.1:  # fresh to 100 ms, not a round trip each
                replica.refresh()
                refreshed[0] = time.monotonic()
            return replica.lookup(entity_id)

    return lookup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve /predict over HTTP.")
    parser.add_argument("--model", default=None, help="default: HEADWATER_SERVING_MODEL")
    args = parser.parse_args(argv)
    configure_logging("http_server")
    torch.set_num_threads(1)  # small batches: intra-op threads only contend for the cores
    settings = load_settings()
    if not port_is_free(settings.http_port, settings.bind_host):
        print(
            f"headwater.serving.http_server: port {settings.http_port} on {settings.bind_host} "
            "is in use; stop what holds it or set HEADWATER_HTTP_PORT",
            file=sys.stderr,
        )
        return 1
    try:
        runtime = start_runtime(settings, args.model)
    except HeadwaterError as error:
        print(f"headwater.serving.http_server: {error}", file=sys.stderr)
        return 1
    serve_process_metrics(settings, "http-scorer", serving=runtime)
    try:
        app = create_app(runtime, lookup=online_lookup(settings))
        uvicorn.run(
            app,
            host=settings.bind_host,
            port=settings.http_port,
            log_level="warning",
            access_log=False,  # every request is already logged, as a prediction event
        )
    finally:
        runtime.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
