"""The decision stream as the audit side sees it: created or verified at start, and
read through durable pull consumers with explicit acks."""

from __future__ import annotations

import logging

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.audit.settings import AuditSettings
from services.common.bus import decision_stream_config
from services.common.contracts import Subjects

log = logging.getLogger(__name__)


async def ensure_decision_stream(
    js: JetStreamContext, subjects: Subjects, settings: AuditSettings
) -> None:
    """Create the decision stream, or check that the existing one takes our subjects
    and carries our limits (updating the limits when they changed)."""
    config = decision_stream_config(
        subjects, settings.stream_max_age_s, settings.stream_max_bytes, settings.stream_replicas
    )
    try:
        info = await js.stream_info(config.name or "")
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)
        log.info("created stream %s", config.name)
        return
    if subjects.decisions_all not in (info.config.subjects or []):
        raise RuntimeError(
            f"stream {config.name} exists without subject {subjects.decisions_all}; "
            "refusing to consume from it"
        )
    if info.config.max_age != config.max_age or info.config.max_bytes != config.max_bytes:
        try:
            await js.update_stream(config)
        except (nats.errors.Error, TimeoutError) as exc:
            # A deployment may leave stream management to its bootstrap job (no update
            # permission): the stream works as it is, so say so and go on.
            log.warning(
                "stream %s keeps its own limits (max_age %s s, max_bytes %s): %s",
                config.name,
                info.config.max_age,
                info.config.max_bytes,
                exc,
            )
            return
        log.info("updated the limits of stream %s", config.name)


async def durable_pull(
    js: JetStreamContext, subjects: Subjects, settings: AuditSettings, durable: str
) -> JetStreamContext.PullSubscription:
    """Bind (creating when missing) a durable pull consumer of every decision: acks are
    explicit, so a record is redelivered until the consumer has really handled it."""
    return await js.pull_subscribe(
        subjects.decisions_all,
        durable=durable,
        stream=subjects.decision_stream,
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=settings.ack_wait_s,
            deliver_policy=DeliverPolicy.ALL,
            max_deliver=settings.max_deliver,
            max_ack_pending=settings.batch_size * 4,
        ),
    )
