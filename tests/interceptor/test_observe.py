from __future__ import annotations

import asyncio
import gzip

import orjson
from mitmproxy import http

from services.common.contracts import Observation, Subjects, decode
from services.interceptor.observe import Observer

TOKEN = {"Authorization": "Bearer aaa.bbb.ccc", "x-ms-session-id": "s1", "Cookie": "c=1"}


def token_headers() -> http.Headers:
    return http.Headers([(name.encode(), value.encode()) for name, value in TOKEN.items()])


class RecordingBus:
    is_closed = False
    max_payload = 1024 * 1024

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, subject: str, payload: bytes) -> None:
        self.published.append((subject, payload))


def observer(queue_size: int = 10, body_cap: int = 1024, reobserve_s: float = 300) -> Observer:
    made = Observer(Subjects("tobs"), "interceptor@test", body_cap, queue_size, reobserve_s)
    made.nc = RecordingBus()  # type: ignore[assignment]
    return made


async def drain(made: Observer) -> list[Observation]:
    while not made.queue.empty():
        await made.publish(made.queue.get_nowait())
    bus = made.nc
    return [decode(Observation, payload) for _subject, payload in bus.published]  # type: ignore[union-attr]


async def test_a_token_is_published_with_its_session_and_nothing_else() -> None:
    made = observer()
    made.offer_token("POST", "teams.microsoft.com", "/api/authsvc/v1.0/authz", token_headers())
    (seen,) = await drain(made)
    assert made.nc.published[0][0] == "tobs.v1.observed"  # type: ignore[union-attr]
    assert seen.kind == "token"
    assert seen.request_headers == {"authorization": "Bearer aaa.bbb.ccc", "x-ms-session-id": "s1"}


async def test_the_same_token_is_published_once_until_it_is_due_again() -> None:
    made = observer()
    for _ in range(3):
        made.offer_token("GET", "teams.microsoft.com", "/api/mt/emea/beta/me", token_headers())
    assert made.queue.qsize() == 1
    again = observer(reobserve_s=0)
    for _ in range(2):
        again.offer_token("GET", "teams.microsoft.com", "/api/mt/emea/beta/me", token_headers())
    assert again.queue.qsize() == 2


async def test_a_lookup_response_is_decoded_and_cut_to_the_cap() -> None:
    made = observer(body_cap=1024)
    body = orjson.dumps({"members": [{"id": f"8:orgid:{n}"} for n in range(200)]})
    response = http.Response.make(200, body, {"Content-Encoding": "gzip"})  # compresses it
    assert gzip.decompress(response.raw_content or b"") == body
    made.offer_lookup(
        "GET", "teams.microsoft.com", "/v1/threads/x/members", http.Headers(), response
    )
    (seen,) = await drain(made)
    assert seen.status == 200
    assert seen.response_truncated
    assert seen.response_body == body[:1024]


async def test_a_full_queue_drops_observations_instead_of_waiting() -> None:
    made = observer(queue_size=1, reobserve_s=0)
    headers = token_headers()
    made.offer_token("GET", "teams.microsoft.com", "/api/mt/a", headers)
    made.offer_token("GET", "teams.microsoft.com", "/api/mt/b", headers)
    assert made.queue.qsize() == 1


async def test_the_publisher_survives_a_failing_publish() -> None:
    made = observer(reobserve_s=0)

    class Flaky(RecordingBus):
        calls = 0

        async def publish(self, subject: str, payload: bytes) -> None:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise ConnectionError("gone")
            await super().publish(subject, payload)

    made.nc = Flaky()  # type: ignore[assignment]
    headers = token_headers()
    made.offer_token("GET", "teams.microsoft.com", "/api/mt/a", headers)
    made.offer_token("GET", "teams.microsoft.com", "/api/mt/b", headers)
    task = asyncio.get_running_loop().create_task(made.run())
    for _ in range(100):
        if made.nc.published:  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert [orjson.loads(p)["path"] for _s, p in made.nc.published] == ["/api/mt/b"]  # type: ignore[union-attr]
