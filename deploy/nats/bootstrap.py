"""Create what the services expect to find on NATS: the decision stream, the rule
bucket and the durable consumers of SIEM shippers.

Runs as the NATS ``admin`` user (the ``tfw-nats-bootstrap`` Job in Kubernetes, or by
hand: ``python deploy/nats/bootstrap.py``). The service users may not create streams
(see accounts.conf), so this runs before they start; it is idempotent and applies
changed limits to an existing stream. Settings are the services' ``TFW_*`` variables
plus the stream limits below. With ``--wait-for`` it creates nothing and waits, as a
service's own user, until the stream and/or bucket exist (the services' init
containers).
"""

from __future__ import annotations

import argparse
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


async def wait_for(settings: BootstrapSettings, needs: set[str], poll_s: float = 2.0) -> None:
    """Return once the stream and/or the rule bucket exist.

    Runs as a service's own user (an init container), which may look them up but not
    create them, so a service starts after the bootstrap instead of failing before it.
    """
    subjects = Subjects(settings.subject_prefix)
    nc = await connect(settings, "tfw-wait")
    try:
        js = nc.jetstream()
        missing = set(needs)
        while missing:
            if "stream" in missing:
                try:
                    await js.stream_info(subjects.decision_stream)
                    missing.discard("stream")
                except nats.js.errors.NotFoundError:
                    pass
            if "bucket" in missing:
                try:
                    await js.key_value(subjects.rules_bucket)
                    missing.discard("bucket")
                except nats.js.errors.BucketNotFoundError:
                    pass
            if missing:
                log.info("waiting for %s", ", ".join(sorted(missing)))
                await asyncio.sleep(poll_s)
    finally:
        await nc.drain()


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 2 on a bad setting, 1 when NATS refuses or time runs out,
    0 when done. ``--wait-for stream,bucket`` waits instead of creating."""
    parser = argparse.ArgumentParser(description="Create the NATS objects TeamsFirewall uses")
    parser.add_argument("--wait-for", default="", help="stream and/or bucket, comma-separated")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds")
    args = parser.parse_args(argv)
    needs = {part.strip() for part in args.wait_for.split(",") if part.strip()}
    if needs - {"stream", "bucket"}:
        parser.error("--wait-for takes stream, bucket or both")
    try:
        settings = BootstrapSettings.load()
    except SettingsError as exc:
        print(f"bootstrap: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format, "bootstrap")
    work = wait_for(settings, needs) if needs else bootstrap(settings)
    try:
        asyncio.run(asyncio.wait_for(work, args.timeout))
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        log.error("%s failed: %s", "wait" if needs else "bootstrap", exc or type(exc).__name__)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
