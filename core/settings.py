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

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from headwater.core.errors import ConfigError

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

    # Topics: names of DESIGN.md, with an optional prefix.
    topic_prefix: str = ""
    topic_partitions: int = Field(default=3, ge=1)
    topic_replication: int = Field(default=1, ge=1)
    topic_retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=-1)

    # Warehouse: empty URL means the embedded chDB engine under HEADWATER_HOME.
    clickhouse_url: str = ""
    clickhouse_database: str = "headwater"
    warehouse_host_port: int = Field(default=18123, ge=1024, le=65535)

    schema_registry_url: str = ""
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
    bind_host: str = "127.0.0.1"
    http_port: int = Field(default=8088, ge=1, le=65535)
    dashboard_port: int = Field(default=8089, ge=1, le=65535)
    dashboard_refresh_s: float = Field(default=5.0, gt=0)
    # First port of /metrics; each long-running process on one host takes the next free one.
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    admin_token: SecretStr = SecretStr("")

    # Serving: the model a scorer serves, its fault tolerance (Hystrix's defaults) and batching.
    serving_model: str = "fraud"
    serving_default_output: float = 0.0
    serving_timeout_s: float = Field(default=1.0, gt=0)
    serving_max_concurrency: int = Field(default=4, ge=1)
    serving_breaker_error_threshold: float = Field(default=0.5, gt=0, le=1)
    serving_breaker_volume: int = Field(default=20, ge=1)
    serving_breaker_window_s: float = Field(default=10.0, gt=0)
    serving_breaker_sleep_s: float = Field(default=5.0, gt=0)
    serving_batch_max: int = Field(default=64, ge=1)
    serving_batch_latency_ms: float = Field(default=10.0, gt=0)
    serving_model_cache: int = Field(default=4, ge=1)

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
    retrain_trials: int = Field(default=8, ge=0)
    canary_min_outcomes_per_step: int = Field(default=100, ge=1)

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
    def _check_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value

    @property
    def kafka_mode(self) -> Literal["local", "external"]:
        return "external" if self.kafka_bootstrap else "local"

    @property
    def warehouse_mode(self) -> Literal["embedded", "server"]:
        return "server" if self.clickhouse_url else "embedded"

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


def _describe(error: dict[str, object]) -> str:
    location = error.get("loc", ())
    parts = location if isinstance(location, tuple) else ()
    field = ".".join(str(part) for part in parts) or "?"
    variable = f"{ENV_PREFIX}{field.upper()}"
    message = str(error.get("msg", "invalid"))
    ctx = error.get("ctx")
    if isinstance(ctx, dict) and "expected" in ctx:
        message += f" (accepted: {ctx['expected']})"
    return f"{variable}: {message}; got {error.get('input')!r}"


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
        known = ", ".join(ENV_PREFIX + name.upper() for name in HeadwaterSettings.model_fields)
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known settings: {known}")
    try:
        return HeadwaterSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        lines = [_describe(dict(e)) for e in error.errors()]
        raise ConfigError("invalid settings:\n" + "\n".join(lines)) from None
