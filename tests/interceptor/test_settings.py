from __future__ import annotations

import pytest

from services.common.settings import SettingsError
from services.interceptor.settings import InterceptorSettings


def test_defaults_fail_closed_decide_writes_only_and_observe() -> None:
    settings = InterceptorSettings.load(env={})
    assert settings.fail_mode == "block"
    assert settings.fail_mode_for("typing") == "block"
    assert settings.decide_reads is False
    assert settings.observe is True
    assert settings.tls_passthrough is True
    assert settings.allow_only_teams is True
    assert settings.body_cap_bytes == 256 * 1024


def test_fail_mode_overrides_are_read_per_action_class() -> None:
    settings = InterceptorSettings.load(
        env={"TFW_FAIL_MODE_OVERRIDES": "typing=allow;;Receipt = ALLOW", "TFW_DECIDE_READS": "1"}
    )
    assert settings.fail_mode_for("typing") == "allow"
    assert settings.fail_mode_for("receipt") == "allow"
    assert settings.fail_mode_for("message") == "block"
    assert settings.decide_reads is True


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("tpying=allow", "unknown action class 'tpying'"),
        ("typing=maybe", "must be block or allow"),
        ("typing", "is not class=mode"),
    ],
)
def test_a_bad_fail_mode_override_is_refused_with_its_reason(value: str, reason: str) -> None:
    with pytest.raises(SettingsError) as caught:
        InterceptorSettings.load(env={"TFW_FAIL_MODE_OVERRIDES": value})
    assert "TFW_FAIL_MODE_OVERRIDES" in str(caught.value)
    assert reason in str(caught.value)


def test_map_remote_specs_keep_their_commas() -> None:
    first = r"|https://([a-z0-9.-]+)/|http://127.0.0.1:9443/_host/\1/"
    second = "|//teams.microsoft.com/a{1,3}|//127.0.0.1:1"
    settings = InterceptorSettings.load(env={"TFW_MAP_REMOTE": f"{first};;{second}"})
    assert settings.map_remote == [first, second]
    on_lines = InterceptorSettings.load(env={"TFW_MAP_REMOTE": f"{first}\n{second}\n"})
    assert on_lines.map_remote == [first, second]


def test_a_malformed_proxyauth_is_refused() -> None:
    with pytest.raises(SettingsError) as caught:
        InterceptorSettings.load(env={"TFW_PROXYAUTH": "justaname"})
    assert "proxyauth must be user:pass" in str(caught.value)


def test_production_refuses_a_proxy_open_to_the_internet_without_authentication() -> None:
    open_to_all = {"TFW_ENVIRONMENT": "production", "TFW_BLOCK_GLOBAL": "false"}
    with pytest.raises(SettingsError) as caught:
        InterceptorSettings.load(env=open_to_all)
    assert "block_global=false needs proxyauth" in str(caught.value)
    guarded = InterceptorSettings.load(env={**open_to_all, "TFW_PROXYAUTH": "teams:s3cret"})
    assert guarded.block_global is False
