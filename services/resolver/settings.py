"""Resolver settings (``TFW_*`` environment variables or the ``TFW_CONFIG`` file)."""

from __future__ import annotations

from pydantic import Field, field_validator

from services.common.settings import ServiceSettings


class ResolverSettings(ServiceSettings):
    internal_tenants: list[str] = Field(
        default_factory=list,
        description="tenant ids that count as internal when no rule set names them",
    )
    max_in_flight: int = Field(default=256, ge=1, le=10_000)

    @field_validator("internal_tenants", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().lower() for part in value.split(",") if part.strip()]
        return value
