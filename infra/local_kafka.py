"""The local Apache Kafka broker: KRaft mode, one combined broker+controller node on 127.0.0.1.

Its jars come from Maven Central through the machine's Maven (``infra/kafka/pom.xml``); Maven's
local repository caches them and the resolved classpath is kept under ``HEADWATER_HOME``, so a
warm start downloads nothing and runs no Maven at all. Storage is formatted on the first start.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from headwater.core.errors import BrokerStartFailed, DependencyMissing, PortInUse
from headwater.core.settings import HeadwaterSettings
from headwater.infra.local_processes import pid_alive, port_answers, port_is_free

POM = Path(__file__).parent / "kafka" / "pom.xml"
# Brokers this process started: kept so their Popen objects live until stop() reaps them.
_STARTED: dict[int, subprocess.Popen[bytes]] = {}
_OTHER_WAY = "or run the platform with docker-compose (see README, 'Production')"


def require_program(name: str, install_hint: str) -> str:
    """The path of a program on PATH, or a :class:`DependencyMissing` saying what to install."""
    found = shutil.which(name)
    if found is None:
        raise DependencyMissing(f"{name} is not installed: {install_hint}; {_OTHER_WAY}")
    return found


@dataclass(frozen=True)
class LocalKafka:
    """Starts, checks and stops the broker whose data lives under ``settings.home``."""

    settings: HeadwaterSettings

    @property
    def root(self) -> Path:
        return self.settings.home / "kafka"

    @property
    def pid_file(self) -> Path:
        return self.root / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "broker.log"

    @property
    def port(self) -> int:
        return self.settings.kafka_local_port

    def running_pid(self) -> int | None:
        """The broker's pid when our broker process is alive, else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def classpath(self) -> str:
        """The broker's classpath, resolved once with Maven and then read from the cache."""
        cached = self.root / "classpath.txt"
        if cached.exists():
            jars = cached.read_text().strip()
            if jars and all(Path(jar).exists() for jar in jars.split(os.pathsep)):
                return jars
        mvn = require_program("mvn", "install Maven (apt-get install maven)")
        self.root.mkdir(parents=True, exist_ok=True)
        command = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:build-classpath",
            f"-Dmdep.outputFile={cached}",
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0 or not cached.exists():
            raise BrokerStartFailed(
                f"Maven could not resolve the Kafka jars from {POM}: "
                f"{(done.stdout + done.stderr)[-2000:]}"
            )
        return cached.read_text().strip()

    def _write_properties(self) -> Path:
        data = self.root / "data"
        ctrl = self.settings.kafka_local_controller_port
        cores = os.cpu_count() or 2
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{ctrl}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{ctrl}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": str(self.settings.topic_partitions),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            # The registry fences its writers with transactions (trainers/registry_log.py); the
            # default 50 partitions of the transaction log make the first fence slow to start.
            "transaction.state.log.num.partitions": "3",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.segment.bytes": str(64 * 1024 * 1024),
            # No more request and background threads than cores: Kafka's defaults (8 I/O,
            # 3 network, 10 background) are for servers. On 2 cores, with the scorer and its
            # load beside it (bench_serving, interleaved runs), event -> prediction p99 was
            # 47-374 ms (median 82, 11 runs) with 2/2/2 against 103-285 ms (median 249, 7 runs)
            # with the defaults; p50 12-20 ms against 18-31 ms.
            "num.io.threads": str(min(8, cores)),
            "num.network.threads": str(min(3, cores)),
            "background.threads": str(min(10, cores)),
        }
        path = self.root / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in lines.items()))
        return path

    def _format_storage(self, java: str, classpath: str, properties: Path) -> None:
        if (self.root / "data" / "meta.properties").exists():
            return
        cluster_id = "-"
        while cluster_id.startswith("-"):  # the storage tool would read it as an option
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22]
        command = [
            java,
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(properties),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise BrokerStartFailed(f"formatting Kafka storage failed: {done.stderr[-2000:]}")

    def start(self, timeout_s: float = 90.0) -> int:
        """Start the broker (or find it running) and wait until it accepts connections."""
        pid = self.running_pid()
        if pid is not None:
            return pid
        java = require_program("java", "install Java 17 (apt-get install openjdk-17-jre-headless)")
        for port in (self.port, self.settings.kafka_local_controller_port):
            if not port_is_free(port):
                raise PortInUse(
                    f"port {port} on 127.0.0.1 is in use by another process; stop it or set "
                    "HEADWATER_KAFKA_LOCAL_PORT / HEADWATER_KAFKA_LOCAL_CONTROLLER_PORT"
                )
        classpath = self.classpath()
        properties = self._write_properties()
        self._format_storage(java, classpath, properties)
        heap = self.settings.kafka_local_heap_mb
        command = [
            java,
            # The whole heap from the start, as Kafka's own start script sets it. From 256 MB
            # the heap grew slowly while the broker's live set (about 160 MB, 128 of them the
            # log cleaner's dedupe buffer) stayed over G1's occupancy threshold, so every
            # other young collection began a concurrent mark that took a core for 50-220 ms:
            # the three largest of the eight slow bursts in a timed bench_serving run began at
            # one (matched against a GC log). Now a young collection comes every 15 s or so, in
            # 7-10 ms, and no concurrent mark.
            f"-Xmx{heap}m",
            f"-Xms{heap}m",
            "-XX:+UseG1GC",
            # The full JIT (C1 then C2), not C1 alone: the broker's hot paths compiled by C2
            # cut event -> prediction p50 from 12-16 to 7.4-8.1 ms and p99 from 31-55 to
            # 18-26 ms, and the one-hop floor's p50 from 2.6 to 2.3 ms (bench_serving,
            # interleaved runs on 2 cores). C2's compiling takes CPU for the first minute or so
            # of load; a broker runs far longer than that.
            "-Xshare:auto",
            "-Djava.awt.headless=true",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(properties),
        ]
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _STARTED[process.pid] = process
        self.pid_file.write_text(str(process.pid))
        self._wait_until_ready(process, timeout_s)
        return process.pid

    def _wait_until_ready(self, process: subprocess.Popen[bytes], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise BrokerStartFailed(
                    f"the local Kafka broker exited with code {process.returncode}; "
                    f"last lines of {self.log_file}:\n{self._log_tail()}"
                )
            if port_answers(self.port):
                return
            time.sleep(0.2)
        self.stop()
        raise BrokerStartFailed(
            f"the local Kafka broker did not listen on 127.0.0.1:{self.port} within {timeout_s:.0f}"
            f" s; last lines of {self.log_file}:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker and wait for its process to end; True if one was running."""
        pid = self.running_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if pid_alive(pid):
            _signal_group(pid, signal.SIGKILL)
            while pid_alive(pid):
                _reap(pid)
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        child = _STARTED.pop(pid, None)
        if child is not None:
            child.wait()
        return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _reap(pid: int) -> None:
    """Collect our own child's exit status so it doesn't linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
