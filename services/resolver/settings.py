"""Resolver settings (``TFW_*`` environment variables or the ``TFW_CONFIG`` file).

Every lifetime, timeout and limit of the resolver lives here, with its default. The
lifetimes default to the 2021 tool's (conversation map 10 min, users 300 min).
"""

from __future__ import annotations

import base64
import binascii

from pydantic import Field, field_validator, model_validator

from services.common.settings import ServiceSettings

TOKEN_KEY_BYTES = 32


class ResolverSettings(ServiceSettings):
    internal_tenants: list[str] = Field(
        default_factory=list,
        description="tenant ids that count as internal when no rule set names them",
    )
    max_in_flight: int = Field(default=256, ge=1, le=10_000)

    # --- the shared store -------------------------------------------------------------
    mongodb_uri: str = Field(
        default="",
        description="MongoDB shared by every replica; empty keeps the cache in-process "
        "only (development)",
    )
    database: str = Field(default="teamsfirewall", min_length=1)
    mongo_timeout_s: float = Field(default=2.0, gt=0, le=60)

    # --- tokens -------------------------------------------------------------------------
    token_key: str | None = Field(
        default=None,
        description="base64 of 32 bytes: the AES-GCM key tokens are stored under",
    )
    token_purge_interval_s: float = Field(default=60.0, gt=0, le=86_400)

    # --- lifetimes ----------------------------------------------------------------------
    conversation_ttl_s: float = Field(default=600.0, gt=0, le=7 * 86_400)
    user_ttl_s: float = Field(default=18_000.0, gt=0, le=30 * 86_400)
    cache_max_entries: int = Field(default=100_000, ge=100, le=10_000_000)

    # --- Teams lookups ------------------------------------------------------------------
    teams_redirect: str | None = Field(
        default=None,
        pattern=r"^https?://[^/?#\s]+$",
        description="send every Teams lookup for https://{host}{path} to "
        "{teams_redirect}/_host/{host}{path} (the Teams simulator)",
    )
    teams_lookups: str = Field(
        default="auto",
        pattern=r"^(auto|on|off)$",
        description="ask Teams on a cache miss: auto = in production, or wherever "
        "teams_redirect points; never towards the real Teams from a development box",
    )
    lookup_timeout_s: float = Field(default=2.0, gt=0, le=60, description="one HTTP call")
    resolve_timeout_s: float = Field(
        default=1.5, gt=0, le=60, description="a request waits this long for its context"
    )
    lookup_concurrency: int = Field(default=16, ge=1, le=1_000)
    member_page_size: int = Field(default=100, ge=1, le=1_000)
    max_member_pages: int = Field(default=200, ge=1, le=10_000)
    profile_batch_size: int = Field(default=900, ge=1, le=900)
    max_retries: int = Field(default=2, ge=0, le=10, description="retries after a 429 or 5xx")
    max_retry_after_s: float = Field(default=5.0, ge=0, le=300)

    @field_validator("internal_tenants", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().lower() for part in value.split(",") if part.strip()]
        return value

    @field_validator("token_key")
    @classmethod
    def _key_is_32_bytes(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        try:
            raw = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("must be base64") from None
        if len(raw) != TOKEN_KEY_BYTES:
            raise ValueError(f"must decode to {TOKEN_KEY_BYTES} bytes, not {len(raw)}")
        return value.strip()

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> ResolverSettings:
        if self.is_production and self.token_key is None:
            raise ValueError("token_key (TFW_TOKEN_KEY) is required when environment=production")
        if self.is_production and not self.mongodb_uri:
            raise ValueError(
                "mongodb_uri (TFW_MONGODB_URI) is required when environment=production"
            )
        return self

    @property
    def lookups_enabled(self) -> bool:
        """Whether cache misses are looked up in Teams (see ``teams_lookups``)."""
        if self.teams_lookups == "auto":
            return self.is_production or self.teams_redirect is not None
        return self.teams_lookups == "on"

    def token_key_bytes(self) -> bytes | None:
        """The decoded AES-GCM key, or None when none is configured."""
        return base64.b64decode(self.token_key) if self.token_key else None
