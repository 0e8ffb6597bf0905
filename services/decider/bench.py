"""Benchmark: microseconds per decision at 10, 100 and 1,000 rules: the verdict
(``judge()``: rule matching and the verdict built) and the whole ``decide()`` (the
verdict and its audit record).

Run ``python -m services.decider.bench`` (``--rules 10,100,1000 --events 2000``). The
rule mix resembles a real policy: walls between groups, actor and participant
patterns, conversation types, location and federation, content keywords and regexes,
attachment types, time windows; a quarter of them block. Events are message sends
and reactions in 300 recurring conversations of 2 to 8 people, three in ten with an
external guest; every event has its own text and time, as a working day's traffic has.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from services.common.contracts import (
    Action,
    Actor,
    BodyFeatures,
    Conversation,
    ConversationType,
    Credential,
    CredentialStatus,
    EnrichedEvent,
    FileRef,
    Location,
    Participant,
    encode,
)
from services.common.ops import settle_heap
from services.decider.decide import decide, judge, match
from services.decider.intake import Intake
from services.decider.rules import RuleSet, compile_rules

FIRM = "0b9b5a1c-3c1e-4f7a-9d2e-6a1f0c7e2b11"
PARTNER = "9a3f1e55-7c2d-4e8b-a1f0-3b6c9d2e4f33"
ACTIONS = ["message.send", "message.edit", "reaction.add", "message.delete", "typing"]
TYPES = ["direct", "group", "channel", "meeting", "private_channel"]


def rule_source(count: int, seed: int = 7) -> str:
    """A rule document with ``count`` rules (walls included)."""
    rnd = random.Random(seed)
    lines = [f"internal_tenants: [{FIRM}]", "groups:"]
    for g in range(10):
        people = ", ".join(f"u{g}-{i}@firm.example" for i in range(20))
        lines.append(f"  desk{g}: {{people: [{people}], domains: [desk{g}.firm.example]}}")
    lines.append("walls:")
    walls = max(1, count // 20)
    for w in range(walls):
        lines.append(f"  - {{name: wall {w}, between: [desk{w % 10}, desk{(w + 1) % 10}]}}")
    lines.append("rules:")
    for r in range(count - walls):
        action = rnd.choice(ACTIONS)
        effect = "[block]" if r % 4 == 0 else f"[{{log: rule {r}}}]"
        kind = r % 8
        if kind == 0:
            when = f"actors: ['u{r % 10}-{r % 20}@firm.example', '*@team{r}.firm.example']"
        elif kind == 1:
            when = f"participants: {{any: ['*@client{r}.example', 'group:desk{r % 10}']}}"
        elif kind == 2:
            when = f"conversation_types: [{rnd.choice(TYPES)}], federated: {r % 3 == 0}"
        elif kind == 3:
            when = f"location: external, participants: {{none: ['*@vendor{r}.example']}}"
        elif kind == 4:
            when = f"text: {{keywords: [secret{r}, 'front run {r}'], regex: ['ISIN{r}\\d+']}}"
        elif kind == 5:
            when = f"files: {{extensions: [x{r}, xlsx]}}, external_participants: true"
        elif kind == 6:
            when = "time: {tz: Europe/London, days: [sat, sun]}"
        else:
            when = f"actors: ['group:desk{r % 10}'], participants: {{all: ['*@firm.example']}}"
        rule = f"{{name: rule {r}, when: {{actions: [{action}], {when}}}, then: {effect}}}"
        lines.append(f"  - {rule}")
    return "\n".join(lines) + "\n"


ROUNDS = 5
CONVERSATIONS = 300
WORDS = (
    "morning all the positions for today are attached please review before the call "
    "numbers look fine to me can we move the meeting to three thanks noted"
).split()


def conversations(count: int = CONVERSATIONS, seed: int = 5) -> list[list[Participant]]:
    """Chats of 2 to 7 people, three in ten with someone from a partner firm."""
    rnd = random.Random(seed)
    made = []
    for _ in range(count):
        people = []
        for _ in range(rnd.randrange(2, 8)):
            person = f"u{rnd.randrange(10)}-{rnd.randrange(40)}"
            people.append(
                Participant(mri=f"8:orgid:{person}", email=f"{person}@firm.example", tenant_id=FIRM)
            )
        if rnd.random() < 0.3:
            people.append(
                Participant(
                    mri="8:orgid:ext",
                    email="erin@partner.example",
                    tenant_id=PARTNER,
                    external=True,
                )
            )
        made.append(people)
    return made


def events(count: int, seed: int = 11) -> list[EnrichedEvent]:
    """Message sends and reactions in recurring conversations, each message with its own
    text and time (so no text cache serves a later event), a fifth with a spreadsheet."""
    rnd = random.Random(seed)
    chats = conversations()
    made = []
    for n in range(count):
        people = rnd.choice(chats)
        actor = rnd.choice([p for p in people if not p.external])
        text = " ".join(rnd.choice(WORDS) for _ in range(rnd.randrange(6, 30)))
        made.append(
            EnrichedEvent(
                id=f"bench-{seed}-{n}",
                time=1764493200.0 + seed * 86400 + n * 97,
                interceptor="bench",
                method="POST",
                host="emea.ng.msg.teams.microsoft.com",
                path="/v1/users/ME/conversations/x/messages",
                action=Action(rnd.choice(["message.send", "message.send", "reaction.add"])),
                conversation=Conversation(
                    id=f"19:{id(people)}@thread.v2", type=ConversationType.GROUP
                ),
                actor=Actor(mri=actor.mri, email=actor.email, tenant_id=FIRM),
                credential=Credential(status=CredentialStatus.OK),
                location=Location.INTERNAL,
                federated=any(p.tenant_id != FIRM for p in people),
                participants=[p.model_copy() for p in people],
                body=BodyFeatures(
                    message_type="RichText/Html",
                    text=f"{text} ({seed}-{n})",
                    files=[FileRef(name="p.xlsx", extension="xlsx")] if n % 5 == 0 else [],
                ),
            )
        )
    return made


STEPS: dict[str, Callable[[EnrichedEvent, RuleSet], object]] = {
    "decision": decide,
    "verdict": judge,
    "matching": match,
}


def measure(rules: RuleSet, rounds: list[list[EnrichedEvent]]) -> dict[str, list[float]]:
    """Microseconds per event for each step of :data:`STEPS`, one figure per round.

    Every round brings new events (new texts and times, the same conversations and
    people, as a working day does); a first round, not counted, warms the caches as a
    running decider's are. The steps take turns within each round, so a slow spell
    of a shared machine falls on all of them alike.
    """
    for event in rounds[0]:
        decide(event, rules)
    # The events waiting in these rounds are the bench's, not a decider's (which holds
    # none): keep them out of the collector's scans, as the service does with what it
    # built at start-up (services.common.ops.settle_heap). The collector still runs on
    # what each decision allocates.
    settle_heap()
    figures: dict[str, list[float]] = {name: [] for name in STEPS}
    for sample in rounds[1:]:
        for name, step in STEPS.items():
            # CPU time of this process: other work on a shared machine inflates wall time.
            started = time.process_time()
            for event in sample:
                step(event, rules)
            figures[name].append((time.process_time() - started) / len(sample) * 1e6)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", default="10,100,1000")
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args(argv)
    rounds = [events(args.events, seed=11 + r) for r in range(ROUNDS + 1)]
    print(
        f"CPU µs per event, {ROUNDS} rounds of {args.events} new events in {CONVERSATIONS} "
        "conversations: the verdict (rule matching and the verdict built), and the whole "
        "decision (verdict and its audit record)"
    )
    for count in (int(c) for c in args.rules.split(",")):
        started = time.perf_counter()
        rules = compile_rules(rule_source(count))
        compile_ms = (time.perf_counter() - started) * 1000
        figures = measure(rules, rounds)
        median = {name: statistics.median(found) for name, found in figures.items()}
        verdicts = figures["verdict"]
        sample = rounds[-1]
        blocked = sum(decide(e, rules)[0].decision.value == "block" for e in sample)
        print(
            f"{count:>5} rules: verdict median {median['verdict']:6.1f} µs "
            f"(best {min(verdicts):.1f}, worst {max(verdicts):.1f}; rule matching "
            f"{median['matching']:.1f}); with the record {median['decision']:.1f} µs; "
            f"compile {compile_ms:.0f} ms; {blocked}/{len(sample)} blocked"
        )
    print(large_team(compile_rules(rule_source(100))))
    return 0


TEAM = 1200


def large_team(rules: RuleSet, count: int = 200) -> str:
    """An event of a team of :data:`TEAM` people, as the service reads and decides it:
    the first read validates the roster, the next ones take it from the intake."""
    team = [
        Participant(mri=f"8:orgid:m{n}", email=f"m{n}@firm.example", tenant_id=FIRM)
        for n in range(TEAM)
    ]
    sample = events(1)[0]
    data = [
        encode(sample.model_copy(update={"id": f"team-{n}", "participants": team}))
        for n in range(count + 1)
    ]
    intake = Intake()
    started = time.process_time()
    intake.decode(data[0])
    first_ms = (time.process_time() - started) * 1000
    started = time.process_time()
    read = [intake.decode(d) for d in data[1:]]
    read_ms = (time.process_time() - started) / count * 1000
    for event in read[: count // 10]:
        decide(event, rules)  # warm
    started = time.process_time()
    for event in read:
        decide(event, rules)
    decide_us = (time.process_time() - started) / count * 1e6
    return (
        f"an event of a team of {TEAM:,} people, 100 rules: read {read_ms:.2f} ms "
        f"({first_ms:.2f} the first time, the roster validated), decided with its record "
        f"{decide_us:.0f} µs"
    )


if __name__ == "__main__":
    raise SystemExit(main())
