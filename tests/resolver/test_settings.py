"""Resolver settings: defaults together, secrets required in production."""

from __future__ import annotations

import base64

import pytest

from services.common.settings import SettingsError
from services.resolver.settings import ResolverSettings

KEY = base64.b64encode(bytes(range(32))).decode()


def test_the_2021_lifetimes_are_the_defaults() -> None:
    settings = ResolverSettings.load(env={})
    assert settings.conversation_ttl_s == 600
    assert settings.user_ttl_s == 300 * 60
    assert settings.token_key is None and settings.mongodb_uri == ""


def test_production_refuses_to_start_without_a_token_key() -> None:
    with pytest.raises(SettingsError) as error:
        ResolverSettings.load(
            env={"TFW_ENVIRONMENT": "production", "TFW_MONGODB_URI": "mongodb://127.0.0.1:1"}
        )
    assert "TFW_TOKEN_KEY" in str(error.value)


def test_production_starts_with_a_key_and_a_store() -> None:
    settings = ResolverSettings.load(
        env={
            "TFW_ENVIRONMENT": "production",
            "TFW_TOKEN_KEY": KEY,
            "TFW_MONGODB_URI": "mongodb://127.0.0.1:1",
        }
    )
    assert settings.token_key_bytes() == bytes(range(32))


@pytest.mark.parametrize(
    ("value", "reason"), [("not base64!", "must be base64"), ("c2hvcnQ=", "32 bytes")]
)
def test_a_bad_token_key_names_the_key_and_the_reason_but_not_the_value(
    value: str, reason: str
) -> None:
    with pytest.raises(SettingsError) as error:
        ResolverSettings.load(env={"TFW_TOKEN_KEY": value})
    text = str(error.value)
    assert "TFW_TOKEN_KEY" in text and reason in text and value not in text


def test_the_teams_redirect_must_be_a_bare_base_url() -> None:
    with pytest.raises(SettingsError) as error:
        ResolverSettings.load(env={"TFW_TEAMS_REDIRECT": "http://127.0.0.1:9/_host"})
    assert "TFW_TEAMS_REDIRECT" in str(error.value)
    ok = ResolverSettings.load(env={"TFW_TEAMS_REDIRECT": "http://127.0.0.1:9"})
    assert ok.teams_redirect == "http://127.0.0.1:9"


def test_a_development_box_never_asks_the_real_teams_unless_told_to() -> None:
    assert not ResolverSettings.load(env={}).lookups_enabled
    assert ResolverSettings.load(env={"TFW_TEAMS_REDIRECT": "http://127.0.0.1:9"}).lookups_enabled
    assert ResolverSettings.load(env={"TFW_TEAMS_LOOKUPS": "on"}).lookups_enabled
    production = ResolverSettings.load(
        env={"TFW_ENVIRONMENT": "production", "TFW_TOKEN_KEY": KEY, "TFW_MONGODB_URI": "m://x"}
    )
    assert production.lookups_enabled
