"""The decider: ``<prefix>.v1.enriched`` in, a verdict to the interceptor's inbox out.

Each decision record is published to JetStream (``Nats-Msg-Id`` = decision id), and no
verdict takes effect before JetStream has stored its record, in one of two ways:

- the interceptor takes the acknowledgement itself (``record_ack`` in the event, set
  by current interceptors): the verdict goes to the interceptor's inbox, marked with
  ``Tfw-Record-Ack``, and the record is published with that same inbox as its reply
  subject, so JetStream's acknowledgement (or its refusal) reaches the interceptor
  beside the verdict; the interceptor applies the verdict only once the record is
  acknowledged and fails closed otherwise. The wait for the acknowledgement then
  overlaps the verdict's trip instead of following it;
- otherwise the decider awaits the acknowledgement before it answers, and a decision
  that could not be recorded is answered as a block that says so.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import Counter, Gauge

from services.common.bus import BusService, decision_stream_config, watch_key
from services.common.contracts import (
    QUEUE_DECIDER,
    RECORD_ACK_HEADER,
    ContractError,
    Decision,
    DecisionRecord,
    RuleSetDocument,
    Verdict,
    block_body,
    decode,
    encode,
    error_headers,
)
from services.common.ops import spawn
from services.common.settings import SettingsError
from services.decider.decide import decide
from services.decider.intake import Intake
from services.decider.legacy import LegacyError, import_xml
from services.decider.rules import RuleError, RuleSet, compile_rules
from services.decider.settings import DeciderSettings

log = logging.getLogger(__name__)

DECISIONS = Counter("tfw_decider_decisions_total", "Decisions made", ["decision"])
# Bound once: a ``labels()`` lookup per decision showed in the decider's profile.
DECIDED = {decision: DECISIONS.labels(decision.value) for decision in Decision}
ERRORS = Counter("tfw_decider_errors_total", "Events answered with an error", ["code"])
RECORD_PATH = Gauge(
    "tfw_decider_record_path_up",
    "1 while the decision stream takes records (checked every TFW_RECORD_CHECK_S)",
)
RECORD_FAILURES = Counter(
    "tfw_decider_record_failures_total", "Decisions JetStream did not acknowledge"
)
RULES_LOADED = Gauge("tfw_decider_rules", "Rules in the active rule set")
RULE_SWAPS = Counter("tfw_decider_rule_swaps_total", "Rule sets made active")


class Decider(BusService):
    name = "decider"

    def __init__(self, settings: DeciderSettings) -> None:
        super().__init__(settings, settings.max_in_flight)
        self.settings: DeciderSettings = settings
        self.rules: RuleSet | None = None
        self.js: JetStreamContext | None = None
        self.intake = Intake()
        self._listening = False
        # Whether the decision stream takes records: while it does not, no verdict goes
        # out before its record is stored (see the module's docstring).
        self._records_flow = True
        self.health.add_check("rules", lambda: self.rules is not None)
        # Ready only once events are taken: a local rule file is loaded before the
        # bucket is read and the subscription made.
        self.health.add_check("listening", lambda: self._listening)

    async def setup(self) -> None:
        assert self.nc is not None
        self.js = self.nc.jetstream()
        await self.ensure_stream()
        if self.settings.rules_file:
            self.use(await self.read_rule_file(self.settings.rules_file))
        ready = asyncio.Event()
        spawn(
            watch_key(
                self.nc, self.subjects.rules_bucket, self.subjects.rules_key, self.on_rules, ready
            ),
            "decider-rules-watch",
        )
        try:
            await asyncio.wait_for(ready.wait(), 5.0)
        except TimeoutError:
            log.warning("rule bucket not read within 5 s; using the local rule file only")
        spawn(self.watch_record_path(), "decider-record-path")
        await self.serve(self.subjects.enriched, QUEUE_DECIDER, self.on_enriched)
        # The server knows the subscription only once a round trip has passed.
        await self.nc.flush(timeout=max(1, int(self.settings.nats_connect_timeout_s)))
        self._listening = True

    async def read_rule_file(self, name: str) -> RuleSet:
        """The local rule file (YAML, or 2021 XML converted as on push). A file that
        cannot be read or compiled stops the service at start, naming the problem."""
        path = Path(name)
        try:
            source = await asyncio.to_thread(path.read_text, "utf-8")
            if source.lstrip().startswith("<"):
                source, report = import_xml(source, path.name)
                for problem in report.problems:
                    log.warning("rule file %s: %s", name, problem)
            return compile_rules(source)
        except OSError as exc:
            raise SettingsError([("TFW_RULES_FILE", name, exc.strerror or "cannot read")]) from None
        except (RuleError, LegacyError) as exc:
            raise SettingsError([("TFW_RULES_FILE", name, str(exc))]) from None

    async def ensure_stream(self) -> None:
        assert self.js is not None
        config = decision_stream_config(
            self.subjects,
            self.settings.stream_max_age_s,
            self.settings.stream_max_bytes,
            self.settings.stream_replicas,
        )
        try:
            await self.js.stream_info(config.name or "")
        except nats.js.errors.NotFoundError:
            await self.js.add_stream(config)
            log.info("created stream %s", config.name)

    async def watch_record_path(self) -> None:
        """Check every ``record_check_s`` that the decision stream is there to take
        records. When the interceptor takes the acknowledgements, a missing stream
        would otherwise show only as a verdict whose acknowledgement never comes."""
        assert self.nc is not None and self.js is not None
        while not self.nc.is_closed:
            await asyncio.sleep(self.settings.record_check_s)
            try:
                await asyncio.wait_for(
                    self.js.stream_info(self.subjects.decision_stream),
                    self.settings.publish_timeout_s,
                )
                flowing = True
            except (nats.errors.Error, TimeoutError):
                flowing = False
            if flowing and not self._records_flow:
                log.info("decision stream %s takes records again", self.subjects.decision_stream)
            elif self._records_flow and not flowing:
                log.error(
                    "decision stream %s cannot take records: each decision now waits "
                    "for its record and fails closed",
                    self.subjects.decision_stream,
                )
            self._records_flow = flowing
            RECORD_PATH.set(1 if flowing else 0)

    def use(self, rules: RuleSet) -> None:
        """Make ``rules`` the active rule set. One reference assignment: a request in
        flight keeps the rule set it started with, the next one gets the new set."""
        previous = self.rules.version if self.rules is not None else None
        self.rules = rules
        RULES_LOADED.set(len(rules.rules))
        RULE_SWAPS.inc()
        log.info(
            "rule set %s active (%d rules, %d exceptions; was %s)",
            rules.version,
            len(rules.rules),
            len(rules.exceptions),
            previous,
        )
        for warning in rules.warnings:
            log.warning("rule set %s: %s", rules.version, warning)

    async def on_rules(self, value: bytes) -> None:
        """A new value of the KV key: compiled whole before it replaces anything. A value
        that does not compile raises, and the watcher keeps the previous rule set.

        Compiling a large rule set takes a while; it runs in a thread so that requests
        keep being decided with the current set meanwhile."""
        document = decode(RuleSetDocument, value)
        rules = await asyncio.to_thread(compile_rules, document.source)
        if rules.version != document.version:
            log.warning(
                "pushed version %s does not match its source (%s); using the source's",
                document.version,
                rules.version,
            )
        self.use(rules)

    async def on_enriched(self, msg: Msg) -> None:
        if not msg.reply:
            return
        assert self.nc is not None and self.js is not None
        try:
            event = self.intake.decode(msg.data)
        except ContractError as exc:
            ERRORS.labels(exc.code).inc()
            log.warning("bad enriched event: %s", exc)
            await self.nc.publish(msg.reply, b"", headers=error_headers(exc.code, exc.detail))
            return
        rules = self.rules
        if rules is None:
            ERRORS.labels("no_rules").inc()
            await self.nc.publish(
                msg.reply, b"", headers=error_headers("no_rules", "no rule set loaded")
            )
            return
        try:
            verdict, record = decide(event, rules, self.settings.block_status)
        except Exception:
            ERRORS.labels("internal").inc()
            log.exception("decision failed", extra={"decision_id": event.id})
            await self.nc.publish(
                msg.reply, b"", headers=error_headers("internal", "decider failed")
            )
            return
        if event.record_ack and self._records_flow:
            await self.answer_beside_record(msg.reply, verdict, record)
        else:
            await self.answer_after_record(msg.reply, verdict, record)

    async def answer_beside_record(
        self, reply: str, verdict: Verdict, record: DecisionRecord
    ) -> None:
        """The verdict, then the record with the interceptor's reply subject: JetStream's
        acknowledgement goes to the interceptor, which applies the verdict only once it
        has it (it accepts the two in either order)."""
        assert self.nc is not None
        DECIDED[verdict.decision].inc()
        stream = self.subjects.decision_stream
        await self.nc.publish(reply, encode(verdict), headers={RECORD_ACK_HEADER: stream})
        try:
            await self.nc.publish(
                self.subjects.decision(record.decision),
                encode(record),
                reply=reply,
                headers={"Nats-Msg-Id": record.decision_id, "Nats-Expected-Stream": stream},
            )
        except nats.errors.Error as exc:
            # The interceptor gets no acknowledgement and blocks at its timeout.
            RECORD_FAILURES.inc()
            log.error(
                "decision %s not recorded (%s): the interceptor will fail closed",
                record.decision_id,
                type(exc).__name__,
                extra={"decision_id": record.decision_id},
            )

    async def answer_after_record(
        self, reply: str, verdict: Verdict, record: DecisionRecord
    ) -> None:
        """Store the record, then answer; a record JetStream does not acknowledge turns
        the verdict into a block that says so."""
        assert self.nc is not None and self.js is not None
        try:
            await self.js.publish(
                self.subjects.decision(record.decision),
                encode(record),
                timeout=self.settings.publish_timeout_s,
                stream=self.subjects.decision_stream,
                headers={"Nats-Msg-Id": record.decision_id},
            )
        except (nats.errors.Error, TimeoutError) as exc:
            RECORD_FAILURES.inc()
            self._records_flow = False  # until the stream answers a check again
            log.error(
                "decision %s not recorded (%s): failing closed",
                record.decision_id,
                type(exc).__name__,
                extra={"decision_id": record.decision_id},
            )
            reason = "the decision could not be recorded: fail closed"
            status = self.settings.block_status
            verdict.decision = Decision.BLOCK
            verdict.status = status
            verdict.reason = reason
            verdict.headers = {}
            verdict.body = block_body(record.decision_id, reason, status)
        DECIDED[verdict.decision].inc()
        await self.nc.publish(reply, encode(verdict))
