"""Audit settings refuse what would weaken the archive or the API."""

from __future__ import annotations

import pytest

from services.audit.settings import AuditSettings
from services.common.settings import SettingsError


def test_anonymous_api_access_is_refused_in_production() -> None:
    with pytest.raises(SettingsError, match=r"TFW_API_ALLOW_ANONYMOUS=.*refused in production"):
        AuditSettings.load(env={"TFW_ENVIRONMENT": "production", "TFW_API_ALLOW_ANONYMOUS": "true"})


def test_anonymous_api_access_is_possible_in_development_when_asked_for() -> None:
    settings = AuditSettings.load(env={"TFW_API_ALLOW_ANONYMOUS": "true"})
    assert settings.api_allow_anonymous and not settings.is_production


def test_forwarding_without_a_syslog_host_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"TFW_SYSLOG_HOST=.*needs a syslog host"):
        AuditSettings.load(env={"TFW_MODE": "forwarder"})


def test_the_modes_say_which_consumers_run() -> None:
    both = AuditSettings.load(env={"TFW_MODE": "all", "TFW_SYSLOG_HOST": "127.0.0.1"})
    assert both.archives and both.forwards
    assert not AuditSettings.load(env={}).forwards


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("TFW_MODE", "mirror"),
        ("TFW_CHAIN_PARTITION", "has space"),
        ("TFW_RETENTION_DAYS", "-1"),
        ("TFW_SYSLOG_FORMAT", "xml"),
        ("TFW_API_PORT", "70000"),
    ],
)
def test_a_bad_value_names_its_key(key: str, value: str) -> None:
    with pytest.raises(SettingsError, match=key):
        AuditSettings.load(env={key: value})
