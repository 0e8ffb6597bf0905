"""Interceptor settings (``TFW_*`` environment variables or the ``TFW_CONFIG`` file)."""

from __future__ import annotations

from pydantic import Field, field_validator

from services.common.settings import ServiceSettings


class InterceptorSettings(ServiceSettings):
    listen_host: str = Field(default="127.0.0.1", description="proxy listen address")
    listen_port: int = Field(default=8080, ge=0, le=65535)
    confdir: str = Field(default=".data/mitmproxy", description="mitmproxy CA and state")
    decide_timeout_s: float = Field(default=2.0, gt=0, le=60)
    body_cap_bytes: int = Field(default=256 * 1024, ge=1024, le=64 * 1024 * 1024)
    block_status: int = Field(default=403, ge=400, le=599)
    fail_mode: str = Field(default="block", pattern=r"^(block|allow)$")
    map_remote: list[str] = Field(
        default_factory=list,
        description="mitmproxy map_remote specs, e.g. |//teams.microsoft.com|//127.0.0.1:9443",
    )
    ssl_insecure: bool = Field(default=False, description="do not verify upstream certificates")
    proxyauth: str | None = Field(default=None, description="user:pass, as mitmproxy's proxyauth")

    @field_validator("map_remote", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
