"""The JSON HTTP client against a real local server: mapping, session, limiter, cool-down."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest
from aiolimiter import AsyncLimiter

from callsbot.clock import FakeClock
from callsbot.errors import CredentialsRejected, Unavailable
from callsbot.net.http import (
    ANY_STATUS,
    CooldownPolicy,
    ErrorMap,
    HttpBadBody,
    HttpConnectionError,
    HttpCoolingDown,
    HttpRateLimited,
    HttpRejected,
    HttpServerError,
    HttpStatusError,
    HttpTimeout,
    JsonClient,
    Outcome,
    Response,
)
from callsbot.net.retry import Attempt, RetryPolicy, retry_call
from callsbot.testing.redis_server import free_port
from tests.net.server import ClockSleep, Reply, ScriptedServer

SECRET = "4242:fake-Secret_token"


@pytest.fixture
def outcomes() -> list[Outcome]:
    return []


@pytest.fixture
async def make_client(
    server: ScriptedServer, clock: FakeClock, sleep: ClockSleep, outcomes: list[Outcome]
) -> AsyncIterator[Callable[..., JsonClient]]:
    clients: list[JsonClient] = []

    def make(**kw: Any) -> JsonClient:
        options: dict[str, Any] = {
            "base_url": server.url,
            "name": "peer",
            "timeout": 5.0,
            "clock": clock,
            "sleep": sleep,
            "on_outcome": outcomes.append,
        }
        options.update(kw)
        client = JsonClient(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


COOLDOWN = CooldownPolicy(default_seconds=5.0, max_seconds=60.0)
RETRY = RetryPolicy(attempts=3, deadline=30.0, wait_initial=0.1, wait_max=1.0)


# -- answers ------------------------------------------------------------------------------------


async def test_get_json_sends_headers_and_params_and_decodes(
    server: ScriptedServer, make_client: Any, outcomes: list[Outcome]
) -> None:
    server.script("/v1/items", Reply(body={"items": [1, 2]}))
    client = make_client(headers={"X-API-KEY": "k", "accept": "application/json"})
    body = await client.get_json("/v1/items", params={"limit": "2"})
    assert body == {"items": [1, 2]}
    [seen] = server.requests
    assert (seen.method, seen.path, seen.query) == ("GET", "/v1/items", {"limit": "2"})
    assert seen.headers["x-api-key"] == "k"
    assert seen.headers["Accept"] == "application/json"
    assert outcomes == ["ok"]


async def test_request_returns_expected_statuses_and_posts_json(
    server: ScriptedServer, make_client: Any
) -> None:
    server.script("/feed", Reply(202, b"indexing", {"X-Note": "later"}))
    server.script("/send", Reply(400, {"ok": False, "description": "bad"}))
    client = make_client()
    accepted = await client.request("GET", "/feed", expect=(200, 202))
    assert (accepted.status, accepted.body, accepted.headers["x-note"]) == (
        202,
        b"indexing",
        "later",
    )
    with pytest.raises(json.JSONDecodeError):
        accepted.json()
    answered = await client.request("POST", "/send", json_body={"text": "hi"}, expect=ANY_STATUS)
    assert answered.status == 400
    assert answered.json() == {"ok": False, "description": "bad"}
    assert server.requests[1].method == "POST"
    assert server.requests[1].body == b'{"text": "hi"}'


@pytest.mark.parametrize(
    ("status", "error", "outcome"),
    [
        (500, HttpServerError, "server_error"),
        (503, HttpServerError, "server_error"),
        (404, HttpStatusError, "http_error"),
        (401, HttpStatusError, "http_error"),  # no ``rejected`` in the map: just a status
        (204, HttpStatusError, "http_error"),  # not expected, though 2xx
    ],
)
async def test_unexpected_statuses_map_to_unavailable_kinds(
    server: ScriptedServer,
    make_client: Any,
    outcomes: list[Outcome],
    status: int,
    error: type[Exception],
    outcome: Outcome,
) -> None:
    server.script("/x", Reply(status, b""))
    with pytest.raises(error, match=f"HTTP {status}") as info:
        await make_client().get_json("/x")
    assert isinstance(info.value, Unavailable)
    assert outcomes == [outcome]


@pytest.mark.parametrize("status", [401, 403])
async def test_rejected_credentials_map_to_the_fatal_branch_when_the_adapter_says_so(
    server: ScriptedServer, make_client: Any, outcomes: list[Outcome], status: int
) -> None:
    server.script("/x", Reply(status, {"message": "invalid api key"}))
    errors = ErrorMap(rejected=lambda r: HttpRejected(f"key refused (HTTP {r.status})"))
    with pytest.raises(CredentialsRejected, match=f"HTTP {status}"):
        await make_client(errors=errors).get_json("/x")
    assert outcomes == ["rejected"]


async def test_429_carries_retry_after_in_seconds_and_as_an_http_date(
    server: ScriptedServer, make_client: Any, clock: FakeClock
) -> None:
    server.script(
        "/x",
        Reply(429, b"", {"Retry-After": "17"}),
        Reply(429, b"", {"Retry-After": formatdate(clock.time() + 90, usegmt=True)}),
        Reply(429, b""),
    )
    client = make_client()
    found = []
    for _ in range(3):
        with pytest.raises(HttpRateLimited) as info:
            await client.get_json("/x")
        found.append(info.value.retry_after)
    assert found == [17.0, pytest.approx(90.0), None]


async def test_slow_answer_times_out(
    server: ScriptedServer, make_client: Any, outcomes: list[Outcome]
) -> None:
    server.script("/slow", Reply(hang=True))
    with pytest.raises(HttpTimeout, match=r"0\.05s"):
        await make_client(timeout=0.05).get_json("/slow")
    assert outcomes == ["timeout"]


async def test_refused_connection(
    clock: FakeClock, sleep: ClockSleep, outcomes: list[Outcome]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = JsonClient(base_url=url, name="gone", timeout=2.0, clock=clock, sleep=sleep)
    async with client:
        with pytest.raises(HttpConnectionError, match="connection failed"):
            await client.get_json("/x")


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body=b'{"items": [1, 2', cut=True),  # the connection breaks mid-body
        Reply(body=b'{"items": [1, 2'),  # complete, but truncated JSON
        Reply(body=b"<html>502 Bad Gateway</html>"),
        Reply(body=b"\xff\xfe\x00"),
        Reply(body=b"42"),  # JSON, but no object or array
    ],
    ids=["cut", "truncated", "html", "binary", "scalar"],
)
async def test_unusable_bodies_are_bad_body(
    server: ScriptedServer, make_client: Any, outcomes: list[Outcome], reply: Reply
) -> None:
    server.script("/x", reply)
    with pytest.raises(HttpBadBody):
        await make_client().get_json("/x")
    assert outcomes == ["bad_body"]


class PeerDown(Unavailable):
    pass


class PeerSlow(PeerDown):
    def __init__(self, retry_after: float | None) -> None:
        super().__init__(f"slow down {retry_after}")
        self.retry_after = retry_after


async def test_an_error_map_puts_failures_in_the_adapters_vocabulary(
    server: ScriptedServer, make_client: Any
) -> None:
    server.script("/x", Reply(500, b""), Reply(429, b"", {"Retry-After": "3"}), Reply(418, b"tea"))
    errors = ErrorMap(
        server_error=lambda r: PeerDown(f"down {r.status}"),
        rate_limited=PeerSlow,
        status=lambda r: PeerDown(f"odd {r.status} {r.body!r}"),
    )
    client = make_client(errors=errors)
    with pytest.raises(PeerDown, match="down 500"):
        await client.get_json("/x")
    with pytest.raises(PeerSlow) as info:
        await client.get_json("/x")
    assert info.value.retry_after == 3.0
    with pytest.raises(PeerDown, match="odd 418 b'tea'"):
        await client.get_json("/x")


# -- the session --------------------------------------------------------------------------------


async def test_an_owned_session_is_created_lazily_and_closed(
    server: ScriptedServer, clock: FakeClock
) -> None:
    client = JsonClient(base_url=server.url, name="peer", timeout=5.0, clock=clock)
    assert client.session is None
    await client.get_json("/x")
    made = client.session
    assert made is not None
    assert not made.closed
    await client.aclose()
    assert made.closed
    await client.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_json("/x")


async def test_a_handed_in_session_is_used_and_left_open(
    server: ScriptedServer, clock: FakeClock
) -> None:
    async with aiohttp.ClientSession(headers={"X-From": "caller"}) as session:
        client = JsonClient(
            base_url=server.url,
            name="peer",
            timeout=5.0,
            clock=clock,
            session=session,
            headers={"X-From-Client": "yes"},
        )
        await client.get_json("/x")
        await client.aclose()
        assert not session.closed
        assert client.session is session
        with pytest.raises(RuntimeError):
            await client.get_json("/x")
    [seen] = server.requests
    assert seen.headers["X-From"] == "caller"
    assert seen.headers["X-From-Client"] == "yes"  # client headers go on a handed-in session


# -- the limiter --------------------------------------------------------------------------------


class CountingLimiter(AsyncLimiter):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(1000, 1)
        self.acquired = 0

    async def acquire(self, amount: float = 1) -> None:
        self.acquired += 1
        await super().acquire(amount)


async def test_every_request_takes_a_limiter_slot(server: ScriptedServer, make_client: Any) -> None:
    shared, special = CountingLimiter(), CountingLimiter()
    server.script("/x", Reply(500, b""))
    client = make_client(limiter=shared)
    with pytest.raises(HttpServerError):
        await client.get_json("/x")
    await client.get_json("/x")
    await client.request("GET", "/x", limiter=special)
    assert (shared.acquired, special.acquired) == (2, 1)
    assert len(server.requests) == 3


# -- the 429 cool-down ---------------------------------------------------------------------------


async def test_a_429_pauses_every_later_request(
    server: ScriptedServer, make_client: Any, clock: FakeClock, sleep: ClockSleep
) -> None:
    server.script("/a", Reply(429, b"", {"Retry-After": "6"}))
    client = make_client(cooldown=COOLDOWN)
    t0 = clock.time()
    with pytest.raises(HttpRateLimited):
        await client.get_json("/a")
    assert client.cooldown_remaining == pytest.approx(6.0)
    await asyncio.gather(*(client.get_json(f"/b{i}") for i in range(3)))
    assert sorted(server.paths()[1:]) == ["/b0", "/b1", "/b2"]
    assert all(seen.at >= t0 + 6.0 for seen in server.requests[1:])
    assert sum(sleep.calls) == pytest.approx(6.0)  # waited out once, not once per request


async def test_the_cooldown_is_shared_by_concurrent_retry_runs(
    server: ScriptedServer,
    make_client: Any,
    clock: FakeClock,
    sleep: ClockSleep,
    outcomes: list[Outcome],
) -> None:
    # Run B's first answer (a 500) is held until run A's 429 reached the client: B's retry
    # must then wait for A's cool-down, not for its own short backoff.
    rate_limited = asyncio.Event()

    def count(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if outcome == "rate_limited":
            rate_limited.set()

    server.script("/a", Reply(429, b"", {"Retry-After": "5"}))
    server.script("/b", Reply(500, b"", before=rate_limited.wait))
    client = make_client(cooldown=COOLDOWN, on_outcome=count)
    t0 = clock.time()

    async def run(path: str) -> Any:
        async def attempt(state: Attempt) -> Any:
            return await client.get_json(path, deadline=state.deadline)

        return await retry_call(
            attempt,
            on=(HttpRateLimited, HttpServerError),
            policy=RETRY,
            clock=clock,
            sleep=sleep,
            wait_hint=client.cooldown_hint,
        )

    assert await asyncio.gather(run("/a"), run("/b")) == [{"ok": True}, {"ok": True}]
    retries = [seen for seen in server.requests[2:]]
    assert sorted(seen.path for seen in retries) == ["/a", "/b"]
    assert all(seen.at >= t0 + 5.0 for seen in retries)


async def test_without_retry_after_the_default_pause_applies_and_the_cap_holds(
    server: ScriptedServer, make_client: Any
) -> None:
    server.script("/a", Reply(429, b""), Reply(429, b"", {"Retry-After": "3600"}))
    client = make_client(cooldown=COOLDOWN)
    with pytest.raises(HttpRateLimited):
        await client.get_json("/a")
    assert client.cooldown_remaining == pytest.approx(5.0)
    with pytest.raises(HttpRateLimited) as info:
        await client.get_json("/a")
    assert info.value.retry_after == 3600.0  # what the server said...
    assert client.cooldown_remaining == pytest.approx(60.0)  # ...and what we pause


async def test_a_cooldown_past_the_deadline_fails_fast_without_a_request(
    server: ScriptedServer,
    make_client: Any,
    clock: FakeClock,
    sleep: ClockSleep,
    outcomes: list[Outcome],
) -> None:
    server.script("/a", Reply(429, b"", {"Retry-After": "30"}))
    client = make_client(cooldown=COOLDOWN)
    with pytest.raises(HttpRateLimited):
        await client.get_json("/a")
    with pytest.raises(HttpCoolingDown) as info:
        await client.get_json("/a", deadline=clock.time() + 20.0)
    assert info.value.remaining == pytest.approx(30.0)
    assert len(server.requests) == 1
    assert sleep.calls == []
    assert outcomes == ["rate_limited", "cooldown"]
    await client.get_json("/a", deadline=clock.time() + 40.0)  # within budget: waits, then asks
    assert sleep.calls == [pytest.approx(30.0)]


async def test_without_a_cooldown_policy_429_pacing_is_left_to_the_caller(
    server: ScriptedServer, make_client: Any, sleep: ClockSleep
) -> None:
    server.script("/a", Reply(429, b"", {"Retry-After": "30"}))
    client = make_client()
    with pytest.raises(HttpRateLimited):
        await client.get_json("/a")
    assert client.cooldown_remaining == 0.0
    assert client.cooldown_hint(HttpRateLimited(30.0)) is None
    await client.get_json("/a")
    assert sleep.calls == []


async def test_retry_after_as_an_http_date_is_honoured_by_a_retry_run(
    server: ScriptedServer, make_client: Any, clock: FakeClock, sleep: ClockSleep
) -> None:
    t0 = clock.time()
    server.script("/a", Reply(429, b"", {"Retry-After": formatdate(t0 + 9, usegmt=True)}))
    client = make_client(cooldown=COOLDOWN)

    async def attempt(state: Attempt) -> Any:
        return await client.get_json("/a", deadline=state.deadline)

    await retry_call(
        attempt,
        on=HttpRateLimited,
        policy=RETRY,
        clock=clock,
        sleep=sleep,
        wait_hint=client.cooldown_hint,
    )
    first, second = server.requests
    assert second.at - first.at >= 9.0 - 1.0  # HTTP dates have whole seconds


# -- secrets ------------------------------------------------------------------------------------


async def test_secrets_never_reach_errors_or_logs(
    server: ScriptedServer,
    clock: FakeClock,
    sleep: ClockSleep,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    path = f"/bot{SECRET}/sendMessage"
    server.script(path, Reply(500, b""), Reply(body=b"not json"))
    for url in (server.url, f"http://127.0.0.1:{free_port()}", f"http://{SECRET}:80"):
        client = JsonClient(
            base_url=url,
            name="bot",
            timeout=2.0,
            clock=clock,
            sleep=sleep,
            headers={"X-API-KEY": SECRET},
            secrets=(SECRET, None),
        )
        async with client:
            for _ in range(2):
                try:
                    await client.get_json(path)
                except Exception as exc:
                    errors.append(exc)
    assert len(errors) == 6
    for exc in errors:
        assert SECRET not in str(exc)
        assert SECRET not in repr(exc)
    assert "<redacted>" in caplog.text  # the path was logged, without the token
    assert SECRET not in caplog.text


def test_response_is_a_frozen_value() -> None:
    response = Response(200, {}, b"[]")
    assert response.json() == []
    with pytest.raises(AttributeError):
        response.status = 500  # type: ignore[misc]
