from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

from services.interceptor.scope import should_decrypt
from tfw.cli import main
from tfw.commands.pac import render

_CHECK = re.compile(r'shExpMatch\(host, "([^"]+)"\)')


def patterns_of(pac: str) -> list[str]:
    return _CHECK.findall(pac)


def sends_to_proxy(pac: str, host: str) -> bool:
    """What a browser does with the file: shExpMatch is a shell match on the host."""
    return any(fnmatch.fnmatchcase(host.lower(), pattern) for pattern in patterns_of(pac))


@pytest.fixture
def upstream_pac(shared_cases: Path) -> str:
    return (shared_cases / "upstream" / "teamsfirewall.pac").read_text()


def test_the_pac_file_covers_every_host_of_the_2021_pac_file(upstream_pac: str) -> None:
    ours = patterns_of(render("proxy.firm.example:8080"))
    assert set(patterns_of(upstream_pac)) <= set(ours)


@pytest.mark.parametrize(
    "host",
    [
        "emea.ng.msg.teams.microsoft.com",
        "amer.ng.msg.teams.microsoft.com",
        "teams.microsoft.com",
        "teams.cloud.microsoft",
        "authsvc.teams.microsoft.com",
        "teams.microsoft.com.mcas.ms",
        "emea.ng.msg.teams.microsoft.com.mcas.ms",
        "teams.cloud.microsoft.eu2.mcas.ms",
    ],
)
def test_every_front_door_goes_to_the_proxy_and_the_proxy_decrypts_it(host: str) -> None:
    pac = render("proxy.firm.example:8080")
    assert sends_to_proxy(pac, host)
    assert should_decrypt(host)


@pytest.mark.parametrize(
    "host",
    [
        "login.microsoftonline.com",
        "go.trouter.teams.microsoft.com",
        "presence.teams.microsoft.com",
        "statics.teams.cdn.office.net",
        "emea-prod.asyncgw.teams.microsoft.com",
        "teams.live.com",
        "teams.microsoft.com.evil.test",
        "example.com",
    ],
)
def test_everything_else_goes_direct(host: str) -> None:
    assert not sends_to_proxy(render("proxy.firm.example:8080"), host)


def test_consumer_hosts_are_sent_only_when_asked() -> None:
    pac = render("10.0.0.5:3128", consumer=True)
    assert sends_to_proxy(pac, "teams.live.com")
    assert sends_to_proxy(pac, "msgapi.teams.live.com")
    assert should_decrypt("msgapi.teams.live.com", consumer=True)


def test_teams_chat_has_no_direct_fallback() -> None:
    pac = render("proxy.firm.example:8080")
    assert 'var teamsfirewall = "PROXY proxy.firm.example:8080";' in pac
    assert "; DIRECT" not in pac


def test_the_command_writes_the_file_and_refuses_a_bad_proxy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "teams.pac"
    assert main(["pac", "--proxy", "proxy.firm.example:8080", "-o", str(target)]) == 0
    assert "FindProxyForURL" in target.read_text()
    assert main(["pac", "--proxy", "proxy.firm.example"]) == 2
    assert "--proxy must be HOST:PORT" in capsys.readouterr().err
