"""Decider settings (``TFW_*`` environment variables or the ``TFW_CONFIG`` file)."""

from __future__ import annotations

from pydantic import Field

from services.common.settings import ServiceSettings


class DeciderSettings(ServiceSettings):
    rules_file: str | None = Field(
        default=None, description="a rule file to use until one is pushed to the KV bucket"
    )
    block_status: int = Field(default=403, ge=400, le=599)
    publish_timeout_s: float = Field(default=2.0, gt=0, le=30)
    stream_max_age_s: float = Field(default=30 * 86400, gt=0)
    stream_max_bytes: int = Field(default=10 * 1024**3, gt=0)
    stream_replicas: int = Field(default=1, ge=1, le=5)
    max_in_flight: int = Field(default=512, ge=1, le=10_000)
    record_check_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="how often the decision stream is checked; while it cannot take "
        "records, every decision waits for its record and is blocked at once if it fails",
    )
