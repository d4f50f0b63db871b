"""Headwater's configuration: one frozen object read from ``HEADWATER_*`` environment variables.

Read it once with :func:`load_settings`; a wrong value fails there with a message that names the
environment variable and the values it accepts.

>>> s = HeadwaterSettings(home=Path("/tmp/hw-doc"))
>>> s.kafka_mode, s.warehouse_mode
('local', 'embedded')
>>> s.topic("events")
'events'
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from headwater.core.errors import ConfigError
from headwater.core.redaction import redacted_url

ENV_PREFIX = "HEADWATER_"


def _default_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "headwater"


class HeadwaterSettings(BaseSettings):
    """Every setting of the platform. Constructor arguments override the environment."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="forbid", validate_default=True
    )

    home: Path = Field(default_factory=_default_home, description="state directory")

    # Kafka: empty bootstrap means "start the local Apache Kafka under HEADWATER_HOME".
    kafka_bootstrap: str = ""
    kafka_local_port: int = Field(default=19092, ge=1024, le=65535)
    kafka_local_controller_port: int = Field(default=19093, ge=1024, le=65535)
    kafka_local_heap_mb: int = Field(default=768, ge=256)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", ""] = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_ca_location: str = ""
    kafka_timeout_s: float = Field(default=10.0, gt=0)
    # The largest record the platform produces (librdkafka's and the broker's default limit):
    # an event whose output would be larger goes to `deadletter` (RECORD_TOO_LARGE).
    kafka_max_record_bytes: int = Field(default=1_000_000, ge=1024)

    # Topics: names of DESIGN.md, with an optional prefix.
    topic_prefix: str = ""
    topic_partitions: int = Field(default=3, ge=1)
    topic_replication: int = Field(default=1, ge=1)
    topic_retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=-1)

    # Warehouse: empty URL means the embedded chDB engine under HEADWATER_HOME. URLs may carry
    # credentials, so they are secrets: shown only through core.redaction.redacted_url.
    clickhouse_url: SecretStr = SecretStr("")
    clickhouse_database: str = "headwater"
    warehouse_host_port: int = Field(default=18123, ge=1024, le=65535)
    # The longest a caller's query may run on the warehouse host before it is stopped.
    warehouse_query_timeout_s: float = Field(default=60.0, gt=0)

    schema_registry_url: SecretStr = SecretStr("")
    # Content-addressed artifact store: empty means HEADWATER_HOME/artifacts; or a directory path.
    artifact_store: str = ""
    # For an s3://bucket/prefix artifact store: endpoint (empty: AWS), region and keys.
    artifact_s3_endpoint: str = ""
    artifact_s3_region: str = "us-east-1"
    artifact_s3_access_key: str = ""
    artifact_s3_secret_key: SecretStr = SecretStr("")

    event_schema_file: str = ""
    features: str = "headwater.demo.features"
    # The feature worker's consumer: librdkafka (batched, the default) or Faust's stream. Both
    # keep entity state in the same changelog topic, so a worker can switch between them.
    stream_engine: Literal["librdkafka", "faust"] = "librdkafka"
    # An event time further ahead of the worker's clock than this is rejected (FUTURE_EVENT):
    # one such event would make every later event of its entity late.
    max_future_skew_ms: int = Field(default=5 * 60 * 1000, ge=0)
    # An entity with no event for this long is forgotten: its state leaves the feature worker's
    # memory and gets a tombstone on the changelog, and its next event starts afresh (0: never).
    # Measured in event time (the newest event time on the entity's partition), not wall time:
    # the offline computation then expires exactly the states the worker did, and a replay or
    # restart gives the same features; a wall-clock TTL would make them depend on when the
    # events were processed.
    entity_idle_ttl_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=0)
    bind_host: str = "127.0.0.1"
    http_port: int = Field(default=8088, ge=1, le=65535)
    dashboard_port: int = Field(default=8089, ge=1, le=65535)
    dashboard_refresh_s: float = Field(default=5.0, gt=0)
    # First port of /metrics; each long-running process on one host takes the next free one.
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    admin_token: SecretStr = SecretStr("")

    # Serving: the model a scorer serves, its fault tolerance (Hystrix's defaults) and batching.
    serving_model: str = Field(default="fraud", min_length=1)
    # The feature worker scores serving_model in its own process, and the predictions leave with
    # the features (one broker hop less); the standalone scorer answers only what it did not.
    inline_scoring: bool = True
    serving_default_output: float = 0.0
    serving_timeout_s: float = Field(default=1.0, gt=0)
    serving_max_concurrency: int = Field(default=4, ge=1)
    serving_breaker_error_threshold: float = Field(default=0.5, gt=0, le=1)
    serving_breaker_volume: int = Field(default=20, ge=1)
    serving_breaker_window_s: float = Field(default=10.0, gt=0)
    serving_breaker_sleep_s: float = Field(default=5.0, gt=0)
    serving_batch_max: int = Field(default=64, ge=1)
    serving_batch_latency_ms: float = Field(default=10.0, gt=0)
    # HTTP requests waiting for a batch beyond this many are answered 503 at once.
    serving_http_queue_max: int = Field(default=1024, ge=1)
    serving_model_cache: int = Field(default=4, ge=1)

    # Training sets: a label joined to its entity's offline features (none logged for its
    # request) takes the latest vector at or before its event time, if at most this old
    # (0: any age; a label with only older ones is left out, counted as stale).
    training_max_feature_age_ms: int = Field(default=0, ge=0)
    # Retraining after a detected change: wait for this many labelled rows after the change
    # (at most retrain_wait_s), then train on them only.
    retrain_min_rows: int = Field(default=2000, ge=2)
    retrain_wait_s: float = Field(default=1800.0, gt=0)
    # The loop's retraining policy (docs/loop.md): alarms needed within the sustain window, the
    # quiet time after a request, the most requests a day, trials per retrain; and the outcomes
    # a canary needs at each traffic step.
    retrain_min_alarms: int = Field(default=3, ge=1)
    retrain_sustain_s: float = Field(default=300.0, gt=0)
    retrain_cooldown_s: float = Field(default=3600.0, ge=0)
    retrain_max_requests: int = Field(default=3, ge=1)
    retrain_trials: int = Field(default=3, ge=0)
    canary_min_outcomes_per_step: int = Field(default=100, ge=1)

    # The supervisor `headwater up` runs: a crashed process is restarted after a backoff that
    # doubles from supervisor_backoff_s up to supervisor_backoff_max_s, and given up on after
    # supervisor_max_crashes crashes within supervisor_crash_window_s.
    supervisor_backoff_s: float = Field(default=1.0, gt=0)
    supervisor_backoff_max_s: float = Field(default=30.0, gt=0)
    supervisor_max_crashes: int = Field(default=5, ge=1)
    supervisor_crash_window_s: float = Field(default=300.0, gt=0)
    supervisor_stop_timeout_s: float = Field(default=30.0, gt=0)
    # Standing trial workers `headwater up` runs: hyperparameter searches' trials (the retrain
    # worker's too) go to them. None: as many as this machine takes (trial_budget).
    trial_workers: int | None = Field(default=None, ge=0)

    # Hyperparameter-search trials on this machine (headwater.trainers.trial_budget). With a
    # GPU: several trial processes share each one (small networks leave it mostly idle), as
    # many as fit in its free memory at trial_gpu_memory_mb each (or trial_workers_per_gpu),
    # at most trial_max_workers_per_gpu. Without one: trials take at most trial_cpu_share of
    # the cores, trial_threads torch threads each, at nice level trial_nice (the nice level, not
    # fewer processes, is what keeps the stream's processes their share of the cores).
    trial_workers_per_gpu: int = Field(default=0, ge=0)
    trial_gpu_memory_mb: int = Field(default=4096, ge=64)
    trial_max_workers_per_gpu: int = Field(default=8, ge=1)
    trial_cpu_share: float = Field(default=1.0, gt=0, le=1)
    trial_threads: int = Field(default=1, ge=1)
    trial_nice: int = Field(default=10, ge=0, le=19)

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        for address in filter(None, value.split(",")):
            host, sep, port = address.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {address!r}")
        return value

    @field_validator("clickhouse_url", "schema_registry_url")
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {redacted_url(url)!r}")
        return value

    @property
    def kafka_mode(self) -> Literal["local", "external"]:
        return "external" if self.kafka_bootstrap else "local"

    @property
    def warehouse_mode(self) -> Literal["embedded", "server"]:
        return "server" if self.clickhouse_url.get_secret_value() else "embedded"

    @property
    def bootstrap_servers(self) -> str:
        """The address clients connect to, local or external."""
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_local_port}"

    def topic(self, name: str) -> str:
        """The full topic name of one of DESIGN.md's topics."""
        return f"{self.topic_prefix}{name}"

    def librdkafka_config(self) -> dict[str, str]:
        """Connection settings for confluent-kafka clients (librdkafka property names)."""
        config = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
            config["sasl.username"] = self.kafka_sasl_username
            config["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_ca_location:
            config["ssl.ca.location"] = self.kafka_ssl_ca_location
        return config


def settings_environment(settings: HeadwaterSettings) -> dict[str, str]:
    """The environment that makes a child process load exactly ``settings``: this process's
    environment with every ``HEADWATER_*`` setting replaced by its value in ``settings``
    (``HEADWATER_TEST_*`` and ``HEADWATER_BENCH_*`` variables pass through). The one way every
    launcher starts a child with the platform's settings.

    >>> env = settings_environment(HeadwaterSettings(home=Path("/tmp/x"), topic_prefix="t-"))
    >>> env["HEADWATER_HOME"], env["HEADWATER_TOPIC_PREFIX"], env["HEADWATER_METRICS_PORT"]
    ('/tmp/x', 't-', '9464')
    >>> "HEADWATER_TRIAL_WORKERS" in env  # unset (None): the child chooses the same default
    False
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(ENV_PREFIX) or k.startswith(("HEADWATER_TEST_", "HEADWATER_BENCH_"))
    }
    for name in HeadwaterSettings.model_fields:
        value = getattr(settings, name)
        if value is None:  # unset optional settings stay unset: the child takes the default
            continue
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        env[f"{ENV_PREFIX}{name.upper()}"] = text
    return env


def _describe(error: dict[str, object]) -> str:
    location = error.get("loc", ())
    parts = location if isinstance(location, tuple) else ()
    field = ".".join(str(part) for part in parts) or "?"
    variable = f"{ENV_PREFIX}{field.upper()}"
    message = str(error.get("msg", "invalid"))
    ctx = error.get("ctx")
    if isinstance(ctx, dict) and "expected" in ctx:
        message += f" (accepted: {ctx['expected']})"
    given = error.get("input")
    if field in HeadwaterSettings.model_fields and (
        HeadwaterSettings.model_fields[field].annotation is SecretStr
    ):
        given = redacted_url(given) if isinstance(given, str) else "**********"
    return f"{variable}: {message}; got {given!r}"


def _unknown_setting(key: str, known: list[str]) -> str:
    """An unknown variable, and the known one its author most likely meant: a typo, or a name
    taken from another tool (a close spelling, else the one setting that shares a word).

    >>> known = ["KAFKA_BOOTSTRAP", "HOME", "TOPIC_PREFIX", "CLICKHOUSE_URL"]
    >>> _unknown_setting("HEADWATER_BOOTSTRAP_SERVERS", known)
    'unknown setting HEADWATER_BOOTSTRAP_SERVERS (did you mean HEADWATER_KAFKA_BOOTSTRAP?)'
    >>> _unknown_setting("HEADWATER_TOPIC_PREFX", known)
    'unknown setting HEADWATER_TOPIC_PREFX (did you mean HEADWATER_TOPIC_PREFIX?)'
    >>> _unknown_setting("HEADWATER_NOPE", known)
    'unknown setting HEADWATER_NOPE'
    """
    name = key[len(ENV_PREFIX) :]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
    if not close:
        words = {word for word in name.split("_") if len(word) >= 5}
        close = [k for k in known if words & set(k.split("_"))]
    meant = f" (did you mean {ENV_PREFIX}{close[0]}?)" if len(close) == 1 else ""
    return f"unknown setting {key}{meant}"


def load_settings(**overrides: object) -> HeadwaterSettings:
    """Read the settings from the environment, failing with a :class:`ConfigError` that names
    every bad ``HEADWATER_*`` variable.

    >>> import os
    >>> os.environ["HEADWATER_KAFKA_SECURITY_PROTOCOL"] = "TLS"
    >>> try:
    ...     load_settings()
    ... except ConfigError as error:
    ...     print(str(error).splitlines()[1].split(":")[0], "TLS" in str(error))
    HEADWATER_KAFKA_SECURITY_PROTOCOL True
    >>> del os.environ["HEADWATER_KAFKA_SECURITY_PROTOCOL"]
    """
    unknown = sorted(
        key
        for key in os.environ
        if key.startswith(ENV_PREFIX)
        and key[len(ENV_PREFIX) :].lower() not in HeadwaterSettings.model_fields
        and not key.startswith(("HEADWATER_TEST_", "HEADWATER_BENCH_"))
    )
    if unknown:
        known = [name.upper() for name in HeadwaterSettings.model_fields]
        named = "; ".join(_unknown_setting(key, known) for key in unknown)
        listed = ", ".join(ENV_PREFIX + name for name in known)
        raise ConfigError(f"{named}; known settings: {listed}")
    try:
        return HeadwaterSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        lines = [_describe(dict(e)) for e in error.errors()]
        raise ConfigError("invalid settings:\n" + "\n".join(lines)) from None
