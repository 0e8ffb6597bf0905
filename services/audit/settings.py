"""Audit settings (``TFW_*`` environment variables or the ``TFW_CONFIG`` file)."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from services.common.settings import ServiceSettings


class AuditSettings(ServiceSettings):
    """The archive consumer, the query API, the syslog forwarder and retention."""

    mode: str = Field(
        default="archive",
        pattern=r"^(archive|forwarder|all)$",
        description="archive: store and serve; forwarder: ship to syslog only; all: both",
    )
    mongodb_uri: str = Field(
        default="mongodb://127.0.0.1:27017/?directConnection=true&retryWrites=false"
    )
    database: str = Field(default="teamsfirewall", min_length=1)
    consumer: str = Field(default="audit", pattern=r"^[A-Za-z0-9_-]+$")
    chain_partition: str = Field(
        default="main",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="the hash chain this replica extends; replicas sharing one take turns",
    )
    batch_size: int = Field(default=256, ge=1, le=10_000)
    fetch_timeout_s: float = Field(default=1.0, gt=0, le=60)
    batch_linger_s: float = Field(
        default=0.1,
        ge=0,
        le=5,
        description="after a partial batch, wait this long for more records so they are "
        "archived in one insert (the database's cost is mostly per call); 0: never wait",
    )
    ack_wait_s: float = Field(default=30.0, gt=0, le=3600)
    max_deliver: int = Field(default=-1, ge=-1, description="-1: redeliver for ever")
    mongo_timeout_s: float = Field(default=5.0, gt=0, le=120)
    retry_delay_s: float = Field(default=1.0, gt=0, le=60)
    stream_max_age_s: float = Field(default=30 * 86400, gt=0)
    stream_max_bytes: int = Field(default=10 * 1024**3, gt=0)
    stream_replicas: int = Field(default=1, ge=1, le=5)
    retention_days: float = Field(
        default=0, ge=0, description="archive retention; 0 keeps records for ever"
    )
    purge_interval_s: float = Field(default=3600.0, gt=0)
    # --- query API ---
    api_enabled: bool = True
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=0, ge=0, le=65535, description="0: any free port (logged)")
    api_allow_anonymous: bool = Field(
        default=False,
        validate_default=True,
        description="read access without a key; only in development",
    )
    api_page_max: int = Field(default=1000, ge=1, le=100_000)
    # --- syslog forwarder ---
    syslog_consumer: str = Field(default="audit-syslog", pattern=r"^[A-Za-z0-9_-]+$")
    syslog_host: str = Field(default="", validate_default=True)
    syslog_port: int = Field(default=6514, ge=1, le=65535)
    syslog_tls: bool = False
    syslog_tls_ca: str | None = Field(default=None, description="CA file to verify the SIEM")
    syslog_format: str = Field(default="cef", pattern=r"^(cef|json)$")
    syslog_app_name: str = Field(default="teamsfirewall", pattern=r"^[!-~]{1,48}$")
    syslog_timeout_s: float = Field(default=5.0, gt=0, le=120)

    @field_validator("api_allow_anonymous")
    @classmethod
    def _anonymous_only_in_development(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("environment") == "production":
            raise ValueError("anonymous API access is refused in production")
        return value

    @field_validator("syslog_host")
    @classmethod
    def _forwarder_needs_a_host(cls, value: str, info: ValidationInfo) -> str:
        mode = info.data.get("mode")
        if mode in ("forwarder", "all") and not value:
            raise ValueError(f"mode {mode} needs a syslog host")
        return value

    @property
    def archives(self) -> bool:
        return self.mode in ("archive", "all")

    @property
    def forwards(self) -> bool:
        return self.mode in ("forwarder", "all")
