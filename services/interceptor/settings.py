"""Interceptor settings (``TFW_*`` environment variables or the ``TFW_CONFIG`` file).

Every timeout, cap and switch of the proxy lives here with its default. List settings
given as one string are split on newlines or ``;;`` (never on commas, which regexes in
``map_remote`` specs need).
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from services.common.settings import ServiceSettings

FAIL_MODES = ("block", "allow")

# The action classes a fail mode can be chosen for. They come from the method and
# the path shape only (see scope.action_class); "typing" also peeks at the body for
# one JSON key, because a typing indicator is the same POST as a message.
ACTION_CLASSES = (
    "message",
    "typing",
    "reaction",
    "receipt",
    "membership",
    "thread",
    "search",
    "read",
    "other",
)

_LIST_SEPARATOR = re.compile(r"\n|;;")


def split_list(value: str) -> list[str]:
    """Split a one-string list on newlines or ``;;``, dropping empty parts."""
    return [part.strip() for part in _LIST_SEPARATOR.split(value) if part.strip()]


class InterceptorSettings(ServiceSettings):
    listen_host: str = Field(default="127.0.0.1", description="proxy listen address")
    listen_port: int = Field(default=8080, ge=0, le=65535)
    confdir: str = Field(default=".data/mitmproxy", description="mitmproxy CA and state")

    # --- deciding -------------------------------------------------------------------
    decide_timeout_s: float = Field(default=2.0, gt=0, le=60)
    decide_reads: bool = Field(
        default=False,
        description="also decide GET/HEAD on the chat service (the middle-tier "
        "external-user search is always decided)",
    )
    body_cap_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="bytes of a body sent for the decision; the whole body still "
        "reaches Teams when allowed",
    )
    block_status: int = Field(default=403, ge=400, le=599)
    fail_mode: str = Field(
        default="block", pattern=r"^(block|allow)$", description="when no verdict can be had"
    )
    fail_mode_overrides: dict[str, str] = Field(
        default_factory=dict,
        description="per action class, e.g. 'typing=allow;;receipt=allow' "
        f"(classes: {', '.join(ACTION_CLASSES)})",
    )
    consumer_hosts: bool = Field(
        default=False,
        description="also control Teams free (teams.live.com, msgapi.teams.live.com)",
    )
    x_forwarded_for: bool = Field(
        default=False, description="add the client address as X-Forwarded-For upstream"
    )
    decision_header: bool = Field(
        default=False,
        description="put X-TeamsFirewall-Decision on responses to allowed controlled "
        "requests too (blocks always carry it); the demo turns it on",
    )

    # --- observations -----------------------------------------------------------------
    observe: bool = Field(
        default=True,
        description="publish tokens and lookup responses the client receives for the resolver",
    )
    observe_body_cap_bytes: int = Field(default=512 * 1024, ge=1024, le=16 * 1024 * 1024)
    observe_queue: int = Field(
        default=1000, ge=1, le=100_000, description="observations waiting to be published"
    )
    token_reobserve_s: float = Field(
        default=300.0, ge=0, le=86_400, description="publish the same token again after this"
    )

    # --- the proxy --------------------------------------------------------------------
    tls_passthrough: bool = Field(
        default=True,
        description="tunnel every host that is not controlled or observed without TLS interception",
    )
    allow_only_teams: bool = Field(
        default=True, description="refuse to proxy hosts outside the Teams host families"
    )
    block_global: bool = Field(
        default=True, description="refuse clients with public IP addresses (open-proxy guard)"
    )
    map_remote: list[str] = Field(
        default_factory=list,
        description="mitmproxy map_remote specs separated by newlines or ';;', "
        "e.g. |https://([a-z0-9.-]+)/|http://127.0.0.1:9443/_host/\\1/",
    )
    ssl_insecure: bool = Field(default=False, description="do not verify upstream certificates")
    proxyauth: str | None = Field(default=None, description="user:pass, as mitmproxy's proxyauth")

    @field_validator("map_remote", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_list(value) if isinstance(value, str) else value

    @field_validator("fail_mode_overrides", mode="before")
    @classmethod
    def _parse_overrides(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        pairs: dict[str, str] = {}
        for part in split_list(value.replace(",", ";;")):
            name, sep, mode = part.partition("=")
            if not sep:
                raise ValueError(f"{part!r} is not class=mode")
            pairs[name.strip().lower()] = mode.strip().lower()
        return pairs

    @field_validator("fail_mode_overrides")
    @classmethod
    def _known_classes(cls, value: dict[str, str]) -> dict[str, str]:
        for name, mode in value.items():
            if name not in ACTION_CLASSES:
                known = ", ".join(ACTION_CLASSES)
                raise ValueError(f"unknown action class {name!r} (known: {known})")
            if mode not in FAIL_MODES:
                raise ValueError(f"fail mode for {name!r} must be block or allow, not {mode!r}")
        return value

    @model_validator(mode="after")
    def _proxyauth_shape(self) -> InterceptorSettings:
        auth = self.proxyauth
        if auth and auth != "any" and ":" not in auth and not auth.startswith("@"):
            raise ValueError("proxyauth must be user:pass, @htpasswd-file, an ldap spec or any")
        if self.is_production and not self.block_global and auth in (None, "", "any"):
            raise ValueError(
                "block_global=false needs proxyauth when environment=production: "
                "the proxy would serve anyone on the internet"
            )
        return self

    def fail_mode_for(self, action_class: str) -> str:
        """The fail mode of one action class: its override, else the default."""
        return self.fail_mode_overrides.get(action_class, self.fail_mode)
