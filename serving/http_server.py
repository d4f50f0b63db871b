"""Running the HTTP scoring app with uvicorn, bound to loopback unless configured otherwise.

:class:`HttpServer` runs it on a background thread (tests, the benchmark); ``python -m
serving.http_server`` runs it in the foreground with the streams' online feature lookup when the
feature worker's changelog exists.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import torch
import uvicorn
from fastapi import FastAPI

from infra.errors import HeadwaterError, PortInUse
from infra.metrics import serve_process_metrics
from infra.settings import HeadwaterSettings, load_settings
from serving.http_app import OnlineLookup, create_app
from serving.runtime import start_runtime


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


def online_lookup(settings: HeadwaterSettings) -> OnlineLookup | None:
    """The streams' changelog replica of the configured feature set, if its topic exists."""
    try:
        from streams.feature_module import load_feature_module
        from streams.lookup import ChangelogReplica, OnlineFeatures

        replica = ChangelogReplica(settings, load_feature_module(settings.features).feature_set)
    except HeadwaterError as error:
        print(f"serving.http_server: no online lookup ({error})", file=sys.stderr)
        return None

    guard = threading.Lock()  # the replica is one consumer: one caller at a time
    refreshed = [0.0]

    def lookup(entity_id: str) -> OnlineFeatures | None:
        with guard:
            if time.monotonic() - refreshed[0] > 0.1:  # fresh to 100 ms, not a round trip each
                replica.refresh()
                refreshed[0] = time.monotonic()
            return replica.lookup(entity_id)

    return lookup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve /predict over HTTP.")
    parser.add_argument("--model", default=None, help="default: HEADWATER_SERVING_MODEL")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small batches: intra-op threads only contend for the cores
    settings = load_settings()
    try:
        runtime = start_runtime(settings, args.model)
    except HeadwaterError as error:
        print(f"serving.http_server: {error}", file=sys.stderr)
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
