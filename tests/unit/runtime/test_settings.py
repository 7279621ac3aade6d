"""Settings come from the environment and fail early with a message naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascade.settings import Settings, SettingsError


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.data_dir == Path(".cascade")
    assert settings.database_url is None
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.idempotency is True
    assert (settings.host, settings.port, settings.workers, settings.threads) == (
        "127.0.0.1",
        8080,
        2,
        4,
    )
    assert settings.database_url_for("greeter") == "sqlite:///.cascade/greeter.sqlite3"
    assert settings.source_for("greeter") == "/greeter"


def test_every_variable_is_read() -> None:
    env = {
        "CASCADE_DATA_DIR": "/tmp/x",
        "DATABASE_URL": "postgresql://u@h/db",
        "CASCADE_IDEMPOTENCY": "off",
        "CASCADE_DEDUPE_TTL": "60",
        "CASCADE_MAX_BODY_BYTES": "10",
        "CASCADE_SOURCE": "//shop/x",
        "K_SINK": "http://127.0.0.1:1/ns/b",
        "K_CE_OVERRIDES": '{"extensions": {"a": "b"}}',
        "CASCADE_PUBLISH_RETRIES": "0",
        "CASCADE_PUBLISH_BACKOFF": "0.5",
        "CASCADE_PUBLISH_BACKOFF_MAX": "1",
        "CASCADE_PUBLISH_TIMEOUT": "2",
        "CASCADE_LOG_LEVEL": "debug",
        "CASCADE_HOST": "0.0.0.0",
        "PORT": "9000",
        "CASCADE_WORKERS": "3",
        "CASCADE_THREADS": "4",
        "CASCADE_GRACEFUL_TIMEOUT": "5",
        "CASCADE_TIMEOUT": "6",
    }
    s = Settings.from_env(env)
    assert s.data_dir == Path("/tmp/x")
    assert s.database_url_for("x") == "postgresql+psycopg://u@h/db"
    assert s.idempotency is False
    assert s.dedupe_ttl_seconds == 60
    assert s.max_body_bytes == 10
    assert s.source_for("x") == "//shop/x"
    assert s.sink == "http://127.0.0.1:1/ns/b"
    assert s.ce_overrides == {"a": "b"}
    assert (s.publish_retries, s.publish_backoff_seconds, s.publish_backoff_max_seconds) == (
        0,
        0.5,
        1.0,
    )
    assert s.publish_timeout_seconds == 2
    assert s.log_level == "DEBUG"
    assert (s.host, s.port, s.workers, s.threads) == ("0.0.0.0", 9000, 3, 4)
    assert (s.graceful_timeout_seconds, s.timeout_seconds) == (5, 6)


def test_overrides_win_over_env() -> None:
    assert Settings.from_env({"PORT": "1"}, port=2).port == 2


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]
    assert settings.with_overrides(port=1).port == 1


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"PORT": "http"}, "PORT='http': not an integer"),
        ({"PORT": "70000"}, "PORT=70000"),
        ({"CASCADE_WORKERS": "0"}, "CASCADE_WORKERS=0"),
        ({"CASCADE_MAX_BODY_BYTES": "-1"}, "CASCADE_MAX_BODY_BYTES"),
        ({"CASCADE_PUBLISH_TIMEOUT": "nan"}, "not a finite number"),
        ({"CASCADE_PUBLISH_BACKOFF": "2", "CASCADE_PUBLISH_BACKOFF_MAX": "1"}, "BACKOFF_MAX"),
        ({"CASCADE_IDEMPOTENCY": "maybe"}, "CASCADE_IDEMPOTENCY='maybe'"),
        ({"CASCADE_LOG_LEVEL": "loud"}, "CASCADE_LOG_LEVEL"),
        ({"K_SINK": "ftp://x"}, "K_SINK"),
        ({"K_SINK": "http://"}, "K_SINK"),
        ({"K_CE_OVERRIDES": "{"}, "K_CE_OVERRIDES is not valid JSON"),
        ({"K_CE_OVERRIDES": '{"extensions": 1}'}, "K_CE_OVERRIDES must look like"),
        ({"K_CE_OVERRIDES": '{"extensions": {"Bad": "x"}}'}, "K_CE_OVERRIDES"),
        ({"DATABASE_URL": "mysql://u:secret@h/db"}, "DATABASE_URL"),
    ],
)
def test_invalid_values_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle) as info:
        Settings.from_env(env)
    assert "secret" not in str(info.value)


def test_blank_values_mean_unset() -> None:
    assert Settings.from_env({"PORT": "  ", "DATABASE_URL": ""}).port == 8080
