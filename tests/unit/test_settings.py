"""Settings: read once from HEADWATER_*; a wrong value fails naming the variable."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from headwater.core.errors import ConfigError
from headwater.core.settings import HeadwaterSettings, load_settings


def test_defaults_are_the_embedded_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_HOME", "/tmp/hw-settings")
    settings = load_settings()
    assert settings.kafka_mode == "local" and settings.warehouse_mode == "embedded"
    assert settings.bootstrap_servers == "127.0.0.1:19092"
    assert settings.bind_host == "127.0.0.1"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("HEADWATER_KAFKA_SECURITY_PROTOCOL", "TLS", "'PLAINTEXT', 'SSL'"),
        ("HEADWATER_KAFKA_BOOTSTRAP", "broker-without-port", "host:port"),
        ("HEADWATER_TOPIC_PARTITIONS", "0", "greater than or equal to 1"),
        ("HEADWATER_CLICKHOUSE_URL", "tcp://x:9000", "http:// or https://"),
        ("HEADWATER_KAFKA_LOCAL_PORT", "many", "valid integer"),
        ("HEADWATER_SERVING_MODEL", "", "at least 1 character"),
    ],
)
def test_bad_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    message = str(raised.value)
    assert variable in message and expected in message and repr(value) in message


def test_unknown_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_KAFKA_BOOTSTRAPS", "x:1")
    with pytest.raises(ConfigError, match="HEADWATER_KAFKA_BOOTSTRAPS"):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "meant"),
    [
        ("HEADWATER_KAFKA_BOOTSTRAPS", "HEADWATER_KAFKA_BOOTSTRAP"),
        ("HEADWATER_BOOTSTRAP_SERVERS", "HEADWATER_KAFKA_BOOTSTRAP"),  # another tool's name
        ("HEADWATER_SERVING_TIMEOUT", "HEADWATER_SERVING_TIMEOUT_S"),
        ("HEADWATER_PARTITIONS", "HEADWATER_TOPIC_PARTITIONS"),
    ],
)
def test_an_unknown_setting_says_which_one_was_meant(
    monkeypatch: pytest.MonkeyPatch, variable: str, meant: str
) -> None:
    monkeypatch.setenv(variable, "1")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert f"unknown setting {variable} (did you mean {meant}?)" in str(raised.value)


def test_settings_are_frozen() -> None:
    settings = HeadwaterSettings()
    with pytest.raises(ValueError, match="frozen"):
        settings.topic_prefix = "x"


def test_sasl_and_tls_reach_librdkafka() -> None:
    settings = HeadwaterSettings(
        kafka_bootstrap="b1:9093,b2:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc",
        kafka_sasl_password=SecretStr("s3cret"),
        kafka_ssl_ca_location="/etc/ca.pem",
    )
    assert settings.kafka_mode == "external"
    assert settings.librdkafka_config() == {
        "bootstrap.servers": "b1:9093,b2:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc",
        "sasl.password": "s3cret",
        "ssl.ca.location": "/etc/ca.pem",
    }
    assert "s3cret" not in repr(settings)


def test_topic_prefix_applies_to_every_topic() -> None:
    assert HeadwaterSettings(topic_prefix="team-a.").topic("routing") == "team-a.routing"
