"""Every condition of the rule language, seen through the verdict a user gets."""

from __future__ import annotations

import re
import textwrap
import unicodedata
from typing import Any

import pytest

from services.decider.decide import decide
from services.decider.explain import event_from_spec
from services.decider.rules import compile_rules

FIRM = "0b9b5a1c-3c1e-4f7a-9d2e-6a1f0c7e2b11"
FIRM_EU = "6e2d4c88-1a7b-4b5e-8c3f-2d9e7a0b5c22"
PARTNER = "9a3f1e55-7c2d-4e8b-a1f0-3b6c9d2e4f33"

HEADER = f"""
internal_tenants: [{FIRM}, {FIRM_EU}]
groups:
  research: {{people: [alice@firm.example, "*@eu.firm.example"]}}
  trading: {{people: [bob@firm.example], domains: [trading.firm.example]}}
  partners: {{tenants: [{PARTNER}]}}
"""


def verdict_for(when: str, event: dict[str, Any]) -> str:
    """The decision for ``event`` under one blocking rule with the given conditions."""
    source = (
        HEADER
        + "rules:\n  - name: R\n    when:\n"
        + textwrap.indent(textwrap.dedent(when).strip(), "      ")
        + "\n    then: [block]\n"
    )
    rules = compile_rules(source)
    verdict, _ = decide(event_from_spec(event, rules), rules)
    return verdict.decision.value


ALICE = {"email": "alice@firm.example"}
BOB = "bob@firm.example"
ERIN = {"email": "erin@partner.example", "tenant_id": PARTNER}


@pytest.mark.parametrize(
    ("when", "event", "decision"),
    [
        # actions
        ("actions: [message.edit]", {"action": "message.edit"}, "block"),
        ("actions: [message.edit]", {"action": "message.send"}, "allow"),
        # conversation types
        ("conversation_types: [meeting]", {"conversation": "meeting"}, "block"),
        ("conversation_types: [meeting]", {"conversation": "group"}, "allow"),
        ("conversation_types: [meeting]", {}, "allow"),
        # location, from the actor's tenant
        ("location: external", {"actor": {**ALICE, "tenant_id": PARTNER}}, "block"),
        ("location: external", {"actor": ALICE}, "allow"),
        ("location: internal", {"actor": {**ALICE, "tenant_id": FIRM_EU}}, "block"),
        # federated true and false
        ("federated: true", {"actor": ALICE, "participants": [ERIN]}, "block"),
        ("federated: true", {"actor": ALICE, "participants": [BOB]}, "allow"),
        ("federated: false", {"actor": ALICE, "participants": [BOB]}, "block"),
        ("federated: false", {"actor": ALICE, "participants": [ERIN]}, "allow"),
        # actors: patterns, upn, groups, exclusions
        ("actors: ['*@firm.example']", {"actor": ALICE}, "block"),
        ("actors: ['*@firm.example']", {"actor": {"email": "a@firm.example.evil.test"}}, "allow"),
        ("actors: [alice@firm.example]", {"actor": {"upn": "ALICE@firm.example"}}, "block"),
        ("actors: ['group:research']", {"actor": {"email": "carol@eu.firm.example"}}, "block"),
        ("actors: ['group:research']", {"actor": {"email": BOB}}, "allow"),
        ("actors: ['group:partners']", {"actor": ERIN}, "block"),
        (
            "actors: ['domain:trading.firm.example']",
            {"actor": {"email": "t@trading.firm.example"}},
            "block",
        ),
        (f"actors: ['tenant:{PARTNER}']", {"actor": ERIN}, "block"),
        ("not_actors: ['group:research']", {"actor": {"email": BOB}}, "block"),
        ("not_actors: ['group:research']", {"actor": ALICE}, "allow"),
        # participants: the 2021 list form means any
        (
            "participants: ['*@client-co.example']",
            {"participants": ["frank@client-co.example"]},
            "block",
        ),
        (
            "participants: ['*@client-co.example']",
            {"participants": ["mallory@client-co.example.evil.test"]},
            "allow",
        ),
        ("participants: {any: ['group:trading']}", {"participants": [BOB]}, "block"),
        (
            "participants: {all: ['*@firm.example']}",
            {"actor": ALICE, "participants": [BOB]},
            "block",
        ),
        (
            "participants: {all: ['*@firm.example']}",
            {"actor": ALICE, "participants": [ERIN]},
            "allow",
        ),
        ("participants: {none: ['group:partners']}", {"participants": [BOB]}, "block"),
        ("participants: {none: ['group:partners']}", {"participants": [ERIN]}, "allow"),
        (
            "participants: {any: ['group:trading'], none: ['group:partners']}",
            {"participants": [BOB, ERIN]},
            "allow",
        ),
        # participants outside every internal tenant
        ("external_participants: true", {"participants": [ERIN]}, "block"),
        (
            "external_participants: true",
            {"participants": [{"email": "c@eu.firm.example", "tenant_id": FIRM_EU}]},
            "allow",
        ),
        ("external_participants: false", {"participants": [BOB]}, "block"),
        # time windows in a time zone (2026-12-01 is a Tuesday)
        (
            "time: {tz: Europe/London, days: [tue], from: '09:00', to: '17:00'}",
            {"time": "2026-12-01T10:00:00Z"},
            "block",
        ),
        (
            "time: {tz: Europe/London, days: [tue], from: '09:00', to: '17:00'}",
            {"time": "2026-12-01T18:00:00Z"},
            "allow",
        ),
        ("time: {tz: America/New_York, days: [mon]}", {"time": "2026-12-01T03:00:00Z"}, "block"),
        (
            "time: {tz: Asia/Tokyo, from: '22:00', to: '06:00'}",
            {"time": "2026-12-01T14:00:00Z"},
            "block",
        ),
        (
            "time: {tz: Asia/Tokyo, from: '22:00', to: '06:00'}",
            {"time": "2026-12-01T03:00:00Z"},
            "allow",
        ),
        # content: keywords are whole words, folded; regex on the plain text
        ("text: {keywords: [insider]}", {"text": "this is INSIDER info"}, "block"),
        ("text: {keywords: [insider]}", {"text": "insiders welcome"}, "allow"),
        ("text: {keywords: [insider]}", {"text": "ｉｎｓｉｄｅｒ tip"}, "block"),
        ("text: {keywords: [front run]}", {"text": "let us front run it"}, "block"),
        ("text: {regex: ['\\b\\d{4}-\\d{4}\\b']}", {"text": "card 1234-5678 ok"}, "block"),
        ("text: {regex: ['ISIN\\s*[A-Z]{2}']}", {"text": "isin us0378331005"}, "block"),
        ("text: {keywords: [insider]}", {"text": "fine"}, "allow"),
        ("text: {keywords: [front run]}", {"text": "front running it"}, "allow"),
        ("text: {keywords: [front run]}", {"text": "the front ran; run"}, "allow"),
        ("text: {keywords: [front run, insider]}", {"text": "FRONT   RUN"}, "allow"),
        ("text: {keywords: [front run, insider]}", {"text": "x Front Run."}, "block"),
        ("text: {keywords: ['+1 deal']}", {"text": "ok +1 deal"}, "block"),
        ("text: {keywords: ['+1 deal']}", {"text": "ok 1 deal"}, "allow"),
        ("text: {keywords: [c++]}", {"text": "we use C++ daily"}, "block"),
        ("text: {keywords: [c++]}", {"text": "we use c daily"}, "allow"),
        ("text: {keywords: [e-mail]}", {"text": "send an E-MAIL now"}, "block"),
        ("text: {keywords: [e-mail]}", {"text": "send an email now"}, "allow"),
        ("text: {keywords: [straße]}", {"text": "die STRASSE hier"}, "block"),
        ("text: {keywords: [insider]}", {"text": "insider_trading"}, "allow"),
        ("text: {keywords: [insider]}", {"text": "(insider)"}, "block"),
        ("text: {keywords: [été]}", {"text": "l'ÉTÉ prochain"}, "block"),
        # content applies to every message type, known or not
        (
            "text: {keywords: [insider]}",
            {"text": "insider", "message_type": "RichText/Media_FutureThing"},
            "block",
        ),
        # attachments
        ("files: true", {"files": ["positions.xlsx"]}, "block"),
        ("files: true", {}, "allow"),
        ("files: false", {}, "block"),
        ("files: {extensions: [xlsx, .CSV]}", {"files": ["data.csv"]}, "block"),
        ("files: {extensions: [xlsx]}", {"files": ["notes.docx"]}, "allow"),
    ],
)
def test_a_condition_decides_whether_its_rule_blocks(
    when: str, event: dict[str, Any], decision: str
) -> None:
    assert verdict_for(when, event) == decision


@pytest.mark.parametrize(
    ("wall", "actor", "others", "decision"),
    [
        ("between: [research, trading]", ALICE, [BOB], "block"),
        ("between: [research, trading]", {"email": BOB}, ["alice@firm.example"], "block"),
        ("from: research\n  to: trading", ALICE, [BOB], "block"),
        ("from: research\n  to: trading", {"email": BOB}, ["alice@firm.example"], "allow"),
        ("between: [research, trading]", ALICE, ["carol@eu.firm.example"], "allow"),
        ("between: [research, trading]", ALICE, ["t@trading.firm.example"], "block"),
    ],
)
def test_walls_block_one_way_or_both_ways(
    wall: str, actor: dict[str, str], others: list[str], decision: str
) -> None:
    source = HEADER + f"walls:\n- name: W\n  {wall}\n"
    rules = compile_rules(source)
    event = event_from_spec({"actor": actor, "participants": others}, rules)
    verdict, _ = decide(event, rules)
    assert verdict.decision.value == decision


def test_a_wall_does_not_count_the_actor_as_being_on_the_other_side() -> None:
    source = HEADER + "walls:\n- name: W\n  between: [research, research]\n"
    rules = compile_rules(source)
    event = event_from_spec({"actor": ALICE, "participants": []}, rules)
    assert decide(event, rules)[0].decision.value == "allow"


def test_a_wall_applies_only_to_its_actions() -> None:
    source = HEADER + "walls:\n- name: W\n  between: [research, trading]\n  actions: [typing]\n"
    rules = compile_rules(source)
    send = event_from_spec({"actor": ALICE, "participants": [BOB]}, rules)
    typing = event_from_spec({"actor": ALICE, "participants": [BOB], "action": "typing"}, rules)
    assert decide(send, rules)[0].decision.value == "allow"
    assert decide(typing, rules)[0].decision.value == "block"


SCREENED_PATTERNS = [
    r"ISIN\d+",
    r"front\s+run",
    r"\bcusip\b",
    r"(a)\1x",  # a backreference: kept out of the shared screen
    r"secret",
    r"(?<!no )deal",
    r"^urgent",
    r"end$",
]
TEXTS = [
    "nothing to see",
    "isin12345 attached",
    "FRONT    RUN it",
    "the CUSIPs are fine",
    "cusip: 0378",
    "say aax twice",
    "top ſecret plan",  # the long s matches s when case is ignored
    "there is no deal",
    "big deal",
    "urgent: call me",
    "not urgent",
    "the end",
    "ｓｅｃｒｅｔ in full width",
]


@pytest.mark.parametrize("text", TEXTS)
def test_each_text_pattern_matches_as_it_would_searched_on_its_own(text: str) -> None:
    """Many rules' patterns share one screen; no pattern may be hidden by it."""
    rules_text = "".join(
        f"  - name: P{i}\n    when:\n      text: {{regex: ['{p}']}}\n    then: [{{log: p}}]\n"
        for i, p in enumerate(SCREENED_PATTERNS)
    )
    rules = compile_rules(HEADER + "rules:\n" + rules_text)
    verdict, _ = decide(event_from_spec({"text": text}, rules), rules)
    plain = unicodedata.normalize("NFKC", text)
    expected = {
        f"P{i}" for i, p in enumerate(SCREENED_PATTERNS) if re.search(p, plain, re.IGNORECASE)
    }
    assert {r.name for r in verdict.rules} == expected


@pytest.mark.parametrize("count", [3, 40])
@pytest.mark.parametrize(
    ("text", "hit"),
    [
        ("a note about word7 today", "K7"),
        ("say the phrase 9 now", "K9"),
        ("WORD2.", "K2"),
        ("word7x and xword7 and phrase 9x", None),
        ("nothing at all", None),
    ],
)
def test_a_keyword_is_found_among_few_or_many_text_rules(
    count: int, text: str, hit: str | None
) -> None:
    """Few keywords are probed as substrings, many through the word set: both find
    exactly the whole words and phrases."""
    rules_text = "".join(
        f"  - name: K{i}\n    when:\n      text: {{keywords: [word{i}, 'phrase {i}']}}\n"
        "    then: [{log: k}]\n"
        for i in range(count)
    )
    rules = compile_rules(HEADER + "rules:\n" + rules_text)
    verdict, _ = decide(event_from_spec({"text": text}, rules), rules)
    expected = {hit} if hit and int(hit[1:]) < count else set()
    assert {r.name for r in verdict.rules} == expected


def test_a_time_window_decides_every_minute_as_the_local_clock_reads() -> None:
    """The window's bounds are compared in minutes of the day; the reference reads the
    event's local time as a clock, seconds included (zones whose old offsets had
    seconds), with 24:00 as the day's last instant, across midnight and DST changes."""
    import random
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from services.decider.compiler import _clock
    from services.decider.conditions import TimeWindow
    from services.decider.facts import Facts

    def reference(zone: ZoneInfo, days: frozenset[int], start: str, end: str, at: float) -> bool:
        local = datetime.fromtimestamp(int(at // 60) * 60, zone)
        if local.weekday() not in days:
            return False
        begin, stop, now = _clock(start), _clock(end), local.time()
        if begin <= stop:
            return begin <= now < stop
        return now >= begin or now < stop

    rnd = random.Random(20261205)
    zones = ["Europe/London", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe",
             "Africa/Monrovia", "Europe/Amsterdam", "Pacific/Chatham", "UTC"]
    bounds = ["00:00", "06:30", "09:00", "17:45", "22:00", "23:59", "24:00"]
    # Around the 2026 DST changes, and in 1920-1936 (Amsterdam +00:19:32, Monrovia -00:44:30).
    spans = [(datetime(2026, 3, 29, tzinfo=UTC), 2), (datetime(2026, 10, 25, tzinfo=UTC), 2),
             (datetime(2026, 4, 5, tzinfo=UTC), 2), (datetime(1925, 6, 1, tzinfo=UTC), 400)]
    rules = compile_rules(HEADER + "rules: []\n")
    checked = 0
    for _ in range(3000):
        zone = ZoneInfo(rnd.choice(zones))
        days = frozenset(rnd.sample(range(7), rnd.randint(1, 7)))
        start, end = rnd.choice(bounds), rnd.choice(bounds)
        window = TimeWindow(zone, days, _clock(start), _clock(end))
        base, width_days = rnd.choice(spans)
        at = base.timestamp() + rnd.uniform(-1, 1) * width_days * 86400
        event = event_from_spec({"time": datetime.fromtimestamp(at, UTC).isoformat()}, rules)
        assert window(Facts(event)) is reference(zone, days, start, end, event.time), (
            zone, days, start, end, event.time)
        checked += 1
    assert checked == 3000
