"""Create what the services expect to find on NATS: the decision stream, the rule
bucket and the durable consumers of SIEM shippers.

Runs as the NATS ``admin`` user (the ``tfw-nats-bootstrap`` Job in Kubernetes, or by
hand: ``python deploy/nats/bootstrap.py``). The service users may not create streams
(see accounts.conf), so this runs before they start; it is idempotent and applies
changed limits to an existing stream. Settings are the services' ``TFW_*`` variables
plus the stream limits below.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig
from pydantic import Field, field_validator

from services.common.bus import connect, decision_stream_config
from services.common.contracts import Subjects
from services.common.ops import configure_logging
from services.common.settings import ServiceSettings, SettingsError

log = logging.getLogger("tfw.bootstrap")

RULES_HISTORY = 10  # as services.common.bus.watch_key creates the bucket


class BootstrapSettings(ServiceSettings):
    """What the bootstrap needs beyond the common settings."""

    stream_max_age_s: float = Field(default=30 * 86400, gt=0)
    stream_max_bytes: int = Field(default=10 * 1024**3, gt=0)
    stream_replicas: int = Field(default=1, ge=1, le=5)
    siem_consumers: list[str] = Field(
        default_factory=list, description="durable consumers to create for SIEM shippers"
    )

    @field_validator("siem_consumers", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


async def bootstrap(settings: BootstrapSettings) -> None:
    """Create or update the stream, the bucket and the SIEM consumers."""
    subjects = Subjects(settings.subject_prefix)
    nc = await connect(settings, "tfw-bootstrap")
    try:
        js = nc.jetstream()
        config = decision_stream_config(
            subjects,
            settings.stream_max_age_s,
            settings.stream_max_bytes,
            settings.stream_replicas,
        )
        try:
            await js.stream_info(subjects.decision_stream)
        except nats.js.errors.NotFoundError:
            await js.add_stream(config)
            log.info("created stream %s", subjects.decision_stream)
        else:
            await js.update_stream(config)
            log.info("stream %s exists; limits applied", subjects.decision_stream)

        try:
            await js.key_value(subjects.rules_bucket)
            log.info("rule bucket %s exists", subjects.rules_bucket)
        except nats.js.errors.BucketNotFoundError:
            await js.create_key_value(
                bucket=subjects.rules_bucket,
                history=RULES_HISTORY,
                replicas=settings.stream_replicas,
            )
            log.info("created rule bucket %s", subjects.rules_bucket)

        for durable in settings.siem_consumers:
            await js.add_consumer(
                subjects.decision_stream,
                ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT),
            )
            log.info("durable consumer %s ready", durable)
    finally:
        await nc.drain()


def main() -> int:
    """Entry point: exit 2 on a bad setting, 1 when NATS refuses, 0 when done."""
    try:
        settings = BootstrapSettings.load()
    except SettingsError as exc:
        print(f"bootstrap: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format, "bootstrap")
    try:
        asyncio.run(asyncio.wait_for(bootstrap(settings), 120))
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        log.error("bootstrap failed: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
