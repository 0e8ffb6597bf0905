"""Audit settings (``TFW_*`` environment variables or the ``TFW_CONFIG`` file)."""

from __future__ import annotations

from pydantic import Field

from services.common.settings import ServiceSettings


class AuditSettings(ServiceSettings):
    mongodb_uri: str = Field(
        default="mongodb://127.0.0.1:27017/?directConnection=true&retryWrites=false"
    )
    database: str = Field(default="teamsfirewall", min_length=1)
    consumer: str = Field(default="audit", pattern=r"^[A-Za-z0-9_-]+$")
    batch_size: int = Field(default=256, ge=1, le=10_000)
    fetch_timeout_s: float = Field(default=1.0, gt=0, le=60)
    ack_wait_s: float = Field(default=30.0, gt=0, le=3600)
    mongo_timeout_s: float = Field(default=5.0, gt=0, le=120)
    stream_max_age_s: float = Field(default=30 * 86400, gt=0)
    stream_max_bytes: int = Field(default=10 * 1024**3, gt=0)
    stream_replicas: int = Field(default=1, ge=1, le=5)
