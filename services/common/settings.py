"""Settings: one frozen object per service, read once at start.

Values come from (lowest to highest precedence) the field defaults, an optional YAML
file named by ``TFW_CONFIG`` (or passed explicitly), and environment variables
``TFW_<FIELD>`` (upper case). Every value is validated; a bad one raises
:class:`SettingsError` naming the key, the value and the reason, and the service
exits non-zero rather than half-running.

All timeouts and other I/O defaults live here, together.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV_PREFIX = "TFW_"
SECRET_HINTS = ("key", "password", "token", "secret", "uri", "auth", "creds")


class SettingsError(Exception):
    """A configuration value the service refuses to run with."""

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        self.problems = problems
        lines = [f"{key}={value}: {reason}" for key, value, reason in problems]
        super().__init__("invalid configuration:\n  " + "\n  ".join(lines))


def _shown(key: str, value: Any) -> str:
    if any(hint in key.lower() for hint in SECRET_HINTS) and value not in (None, ""):
        return "'<redacted>'"
    return repr(value)


class ServiceSettings(BaseModel):
    """Settings every service shares."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    environment: str = Field(
        default="development",
        pattern=r"^(development|production)$",
        description="development relaxes secret requirements; production refuses them",
    )
    nats_url: str = Field(default="nats://127.0.0.1:4222", min_length=1)
    nats_user: str | None = None
    nats_password: str | None = None
    nats_creds: str | None = Field(default=None, description="path to a NATS .creds file")
    nats_tls_ca: str | None = None
    nats_connect_timeout_s: float = Field(default=5.0, gt=0, le=120)
    subject_prefix: str = Field(default="tfw", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
    http_host: str = Field(default="127.0.0.1")
    http_port: int = Field(default=0, ge=0, le=65535, description="health/metrics port; 0 = any")
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    log_format: str = Field(default="auto", pattern=r"^(auto|json|text)$")
    drain_timeout_s: float = Field(default=10.0, gt=0, le=300)
    event_loop: str = Field(
        default="auto",
        pattern=r"^(auto|uvloop|asyncio)$",
        description="auto: uvloop when installed (less latency per bus hop), else asyncio",
    )

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @classmethod
    def load(
        cls,
        env: dict[str, str] | None = None,
        file: str | Path | None = None,
        **overrides: Any,
    ) -> Self:
        """Read file and environment, validate, and return the frozen settings."""
        env = dict(os.environ) if env is None else env
        values: dict[str, Any] = {}
        path = file or env.get(ENV_PREFIX + "CONFIG")
        if path:
            values.update(_read_file(Path(path), cls))
        for name in cls.model_fields:
            key = ENV_PREFIX + name.upper()
            if key in env:
                values[name] = env[key]
        values.update(overrides)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise SettingsError(_problems(exc, values)) from None


def _read_file(path: Path, model: type[BaseModel]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError([("TFW_CONFIG", str(path), exc.strerror or "cannot read")]) from None
    except yaml.YAMLError as exc:
        raise SettingsError([("TFW_CONFIG", str(path), f"not YAML: {exc}")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError([("TFW_CONFIG", str(path), "must be a mapping of settings")])
    unknown = [key for key in data if key not in model.model_fields]
    if unknown:
        raise SettingsError(
            [(f"{path}:{key}", repr(data[key]), "unknown setting") for key in unknown]
        )
    return data


def _problems(exc: ValidationError, values: dict[str, Any]) -> list[tuple[str, str, str]]:
    problems = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "(settings)"
        key = ENV_PREFIX + name.upper()
        problems.append((key, _shown(name, values.get(name)), error["msg"]))
    return problems
