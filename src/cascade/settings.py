"""Runtime settings: one frozen dataclass, read from the environment, validated at start.

Every variable is listed in docs/runtime.md. ``Settings.from_env()`` raises
:class:`SettingsError` naming the variable and the value it could not use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cascade.codec import is_attribute_name

__all__ = ["Settings", "SettingsError"]

_MIB = 1024 * 1024


class SettingsError(ValueError):
    """A setting has a value the runtime cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Everything the runtime reads from the environment. Build with :meth:`from_env`."""

    # Where state lives: SQLite under data_dir unless database_url is set.
    data_dir: Path = Path(".cascade")
    database_url: str | None = None
    # Dedupe (source, id) in the store; "off" only for benchmarks or stateless experiments.
    idempotency: bool = True
    dedupe_ttl_seconds: float = 7 * 24 * 3600.0
    # Binding.
    max_body_bytes: int = _MIB
    source: str | None = None  # reply/publish source; default "/<function name>"
    # Publishing (Knative SinkBinding conventions).
    sink: str | None = None
    ce_overrides: Mapping[str, str] = field(default_factory=dict)
    publish_retries: int = 5
    publish_backoff_seconds: float = 0.1
    publish_backoff_max_seconds: float = 5.0
    publish_timeout_seconds: float = 10.0
    # How often the outbox relay looks for due events besides being woken by commits.
    outbox_poll_seconds: float = 2.0
    # Routes declared with admin=True (operator state, private data) answer 404 unless on.
    admin_routes: bool = False
    # Logging.
    log_level: str = "INFO"
    # Serving (gunicorn).
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    threads: int = 4  # gthread's pool: health checks keep answering while a client trickles
    graceful_timeout_seconds: float = 30.0
    timeout_seconds: float = 60.0
    # Sender identity (cascade.identity): unset audience = no token needed.
    oidc_audience: str | None = None
    oidc_issuer: str | None = None
    oidc_jwks_url: str | None = None
    oidc_allowed_subjects: tuple[str, ...] = ()
    oidc_leeway_seconds: float = 30.0
    publish_token_file: Path | None = None  # bearer token sent with every publish

    def __post_init__(self) -> None:
        _check(self.max_body_bytes > 0, "CASCADE_MAX_BODY_BYTES", self.max_body_bytes, "> 0")
        _check(self.dedupe_ttl_seconds > 0, "CASCADE_DEDUPE_TTL", self.dedupe_ttl_seconds, "> 0")
        _check(self.publish_retries >= 0, "CASCADE_PUBLISH_RETRIES", self.publish_retries, ">= 0")
        _check(
            self.publish_backoff_seconds > 0,
            "CASCADE_PUBLISH_BACKOFF",
            self.publish_backoff_seconds,
            "> 0",
        )
        _check(
            self.publish_backoff_max_seconds >= self.publish_backoff_seconds,
            "CASCADE_PUBLISH_BACKOFF_MAX",
            self.publish_backoff_max_seconds,
            ">= CASCADE_PUBLISH_BACKOFF",
        )
        _check(
            self.publish_timeout_seconds > 0,
            "CASCADE_PUBLISH_TIMEOUT",
            self.publish_timeout_seconds,
            "> 0",
        )
        _check(self.outbox_poll_seconds > 0, "CASCADE_OUTBOX_POLL", self.outbox_poll_seconds, "> 0")
        _check(1 <= self.port <= 65535, "PORT", self.port, "in 1..65535")
        _check(self.workers >= 1, "CASCADE_WORKERS", self.workers, ">= 1")
        _check(self.threads >= 1, "CASCADE_THREADS", self.threads, ">= 1")
        _check(
            self.graceful_timeout_seconds > 0,
            "CASCADE_GRACEFUL_TIMEOUT",
            self.graceful_timeout_seconds,
            "> 0",
        )
        _check(self.timeout_seconds > 0, "CASCADE_TIMEOUT", self.timeout_seconds, "> 0")
        self._check_oidc()
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise SettingsError(
                f"CASCADE_LOG_LEVEL={self.log_level!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL"
            )
        if self.sink is not None:
            parts = urlsplit(self.sink)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise SettingsError(f"K_SINK={self.sink!r}: must be an http(s):// URL")
        if self.database_url is not None:
            scheme = self.database_url.split("://", 1)[0] if "://" in self.database_url else ""
            if not scheme.startswith(("sqlite", "postgresql", "postgres")):
                raise SettingsError(
                    f"DATABASE_URL={_redact(self.database_url)!r}: use sqlite:///path or "
                    "postgresql+psycopg://user@host/db"
                )
        if self.source is not None and not self.source:
            raise SettingsError("CASCADE_SOURCE must not be empty")
        for name, value in self.ce_overrides.items():
            if not is_attribute_name(name) or not isinstance(value, str):
                raise SettingsError(
                    f"K_CE_OVERRIDES: extension {name!r} must be a lowercase [a-z0-9] name "
                    "with a string value"
                )

    def _check_oidc(self) -> None:
        _check(
            0 <= self.oidc_leeway_seconds <= 300,
            "CASCADE_OIDC_LEEWAY",
            self.oidc_leeway_seconds,
            "in 0..300 seconds",
        )
        for name, url in (
            ("CASCADE_OIDC_ISSUER", self.oidc_issuer),
            ("CASCADE_OIDC_JWKS_URL", self.oidc_jwks_url),
        ):
            if url is not None:
                parts = urlsplit(url)
                if parts.scheme not in ("http", "https") or not parts.netloc:
                    raise SettingsError(f"{name}={url!r}: must be an http(s):// URL")
        configured = self.oidc_issuer or self.oidc_jwks_url or self.oidc_allowed_subjects
        if self.oidc_audience is None and configured:
            raise SettingsError(
                "CASCADE_OIDC_ISSUER, _JWKS_URL or _ALLOWED_SUBJECTS is set but "
                "CASCADE_OIDC_AUDIENCE is not: set the audience to require tokens"
            )
        if self.oidc_audience is not None and not (self.oidc_issuer or self.oidc_jwks_url):
            raise SettingsError(
                "CASCADE_OIDC_AUDIENCE is set: also set CASCADE_OIDC_ISSUER (keys found by "
                "OIDC discovery) or CASCADE_OIDC_JWKS_URL"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every setting from ``environ`` (default ``os.environ``); ``overrides`` win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        reader = _Reader(env)
        values["data_dir"] = Path(reader.text("CASCADE_DATA_DIR") or ".cascade")
        values["database_url"] = reader.text("DATABASE_URL")
        values["idempotency"] = reader.flag("CASCADE_IDEMPOTENCY", True)
        values["dedupe_ttl_seconds"] = reader.number("CASCADE_DEDUPE_TTL", 7 * 24 * 3600.0)
        values["max_body_bytes"] = reader.integer("CASCADE_MAX_BODY_BYTES", _MIB)
        values["source"] = reader.text("CASCADE_SOURCE")
        values["sink"] = reader.text("K_SINK")
        values["ce_overrides"] = _ce_overrides(reader.text("K_CE_OVERRIDES"))
        values["publish_retries"] = reader.integer("CASCADE_PUBLISH_RETRIES", 5)
        values["publish_backoff_seconds"] = reader.number("CASCADE_PUBLISH_BACKOFF", 0.1)
        values["publish_backoff_max_seconds"] = reader.number("CASCADE_PUBLISH_BACKOFF_MAX", 5.0)
        values["publish_timeout_seconds"] = reader.number("CASCADE_PUBLISH_TIMEOUT", 10.0)
        values["outbox_poll_seconds"] = reader.number("CASCADE_OUTBOX_POLL", 2.0)
        values["admin_routes"] = reader.flag("CASCADE_ADMIN_ROUTES", False)
        values["log_level"] = (reader.text("CASCADE_LOG_LEVEL") or "INFO").upper()
        values["host"] = reader.text("CASCADE_HOST") or "127.0.0.1"
        values["port"] = reader.integer("PORT", 8080)
        values["workers"] = reader.integer("CASCADE_WORKERS", 2)
        values["threads"] = reader.integer("CASCADE_THREADS", 4)
        values["graceful_timeout_seconds"] = reader.number("CASCADE_GRACEFUL_TIMEOUT", 30.0)
        values["timeout_seconds"] = reader.number("CASCADE_TIMEOUT", 60.0)
        values["oidc_audience"] = reader.text("CASCADE_OIDC_AUDIENCE")
        values["oidc_issuer"] = reader.text("CASCADE_OIDC_ISSUER")
        values["oidc_jwks_url"] = reader.text("CASCADE_OIDC_JWKS_URL")
        values["oidc_allowed_subjects"] = reader.items("CASCADE_OIDC_ALLOWED_SUBJECTS")
        values["oidc_leeway_seconds"] = reader.number("CASCADE_OIDC_LEEWAY", 30.0)
        token_file = reader.text("CASCADE_PUBLISH_TOKEN_FILE")
        values["publish_token_file"] = None if token_file is None else Path(token_file)
        values.update(overrides)
        return cls(**values)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def database_url_for(self, function_name: str) -> str:
        """The SQLAlchemy URL of the function's store (psycopg 3 for plain postgresql://)."""
        if self.database_url is None:
            return f"sqlite:///{self.data_dir / f'{function_name}.sqlite3'}"
        url = self.database_url
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+psycopg://" + url[len(plain) :]
        return url

    def source_for(self, function_name: str) -> str:
        return self.source or f"/{function_name}"


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def integer(self, name: str, default: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r}: not an integer") from None

    def number(self, name: str, default: float) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r}: not a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise SettingsError(f"{name}={raw!r}: not a finite number")
        return value

    def items(self, name: str) -> tuple[str, ...]:
        raw = self.text(name)
        return () if raw is None else tuple(i.strip() for i in raw.split(",") if i.strip())

    def flag(self, name: str, default: bool) -> bool:
        raw = self.text(name)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name}={raw!r}: use on/off (or true/false, 1/0)")


def _ce_overrides(raw: str | None) -> dict[str, str]:
    # Knative SinkBinding: K_CE_OVERRIDES='{"extensions": {"name": "value"}}'.
    if raw is None:
        return {}
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise SettingsError(f"K_CE_OVERRIDES is not valid JSON: {exc}") from None
    extensions = document.get("extensions", {}) if isinstance(document, dict) else None
    if not isinstance(extensions, dict):
        raise SettingsError('K_CE_OVERRIDES must look like {"extensions": {"name": "value"}}')
    return {str(k): v for k, v in extensions.items()}


def _check(ok: bool, name: str, value: object, rule: str) -> None:
    if not ok:
        raise SettingsError(f"{name}={value!r}: must be {rule}")


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
