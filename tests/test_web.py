"""The web server in process: /healthz, /readyz, /metrics and /api/consensus on build_app(rt)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

import pytest
from aiohttp.test_utils import TestClient, TestServer

from callsbot.clock import FakeClock
from callsbot.config import Settings
from callsbot.metrics import Metrics
from callsbot.models import Buy, IncomingMessage, Verdict
from callsbot.runtime.probes import STATES, StoreProbe
from callsbot.runtime.roles import build_listener, build_pipeline, make_parts
from callsbot.scorer import Scorer
from callsbot.sources.cielo import PollResult
from callsbot.sources.telegram import TelegramListener
from callsbot.store import MemoryStore, SignalStore
from callsbot.testing.redis_server import free_port
from callsbot.web import Checked, WebContext, build_app
from tests.conftest import make_redis_store
from tests.tg import FakeGateway, mint

T0 = 1_700_000_000


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
def memory(clock: FakeClock) -> MemoryStore:
    return MemoryStore(window=3600, clock=clock)


@pytest.fixture
async def dead_store(clock: FakeClock) -> AsyncIterator[SignalStore]:
    """A RedisStore pointed at a loopback port where nothing listens."""
    store = make_redis_store(f"redis://127.0.0.1:{free_port()}/0", clock)
    yield store
    await store.aclose()


async def runtime(
    store: SignalStore, clock: FakeClock, *services: Checked, metrics: Metrics | None = None
) -> WebContext:
    """What ``run`` hands the web server: a store probe (probed once) and ``services``."""
    metrics = metrics if metrics is not None else Metrics.create()
    probe = StoreProbe(store, clock=clock, metrics=metrics, interval=5)
    await probe.probe()
    return WebContext(services=[probe, *services], window=store, clock=clock, metrics=metrics)


Serve = Callable[[WebContext], Awaitable[TestClient]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """``await serve(rt)``: a test client on ``build_app(rt)``; closed after the test."""
    clients: list[TestClient] = []

    async def start(rt: WebContext) -> TestClient:
        client = TestClient(TestServer(build_app(rt)))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


# -- /healthz and /readyz ---------------------------------------------------------------------


async def test_healthz_answers_without_asking_anything(
    serve: Serve, settings: Settings, dead_store: SignalStore, clock: FakeClock
) -> None:
    client = await serve(await runtime(dead_store, clock))
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_readyz_is_200_with_a_reachable_store_and_nothing_else_running(
    serve: Serve, settings: Settings, memory: MemoryStore, clock: FakeClock
) -> None:
    client = await serve(await runtime(memory, clock))
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ready"}


async def test_readyz_is_503_with_the_reason_when_the_store_is_down(
    serve: Serve, settings: Settings, dead_store: SignalStore, clock: FakeClock
) -> None:
    client = await serve(await runtime(dead_store, clock))
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "not ready"
    (reason,) = body["reasons"]
    assert reason.startswith("store unreachable (connection): redis probe_write failed")


class OneShotFeed:
    """A feed that answers every poll with nothing new."""

    async def poll(self) -> PollResult:
        return PollResult(outcome="ok")

    async def handled(self, buys: Sequence[Buy]) -> None:
        return None


class NoMarket:
    """Never asked: the feed has no buys."""

    async def verdicts(
        self, tokens: Sequence[str], *, chain: str = "solana"
    ) -> Mapping[str, Verdict]:
        raise AssertionError("market data asked")

    async def resolve_pairs(
        self, pairs: Sequence[str], *, chain: str = "solana"
    ) -> Mapping[str, str | None]:
        raise AssertionError("market data asked")


async def test_readyz_follows_the_feed_polls(
    serve: Serve, settings: Settings, memory: MemoryStore, clock: FakeClock
) -> None:
    scorer = Scorer(
        settings, memory, NoMarket(), OneShotFeed(), [], clock=clock, metrics=Metrics.create()
    )
    client = await serve(await runtime(memory, clock, scorer))

    resp = await client.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["reasons"] == ["feed not polled yet"]

    await scorer.poll_once()
    assert (await client.get("/readyz")).status == 200

    # The limit is 3 polls plus one request timeout: 3 * 30 + 15 s by default.
    clock.advance(105)
    assert (await client.get("/readyz")).status == 200
    clock.advance(95)
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["reasons"] == ["feed last polled 200s ago"]


def listener_over(
    gateway: FakeGateway, settings: Settings, store: SignalStore, clock: FakeClock
) -> TelegramListener:
    parts = make_parts(
        settings, clock=clock, metrics=Metrics.create(), store=store, market=NoMarket()
    )
    return build_listener(parts, gateway, build_pipeline(parts))


async def test_readyz_says_when_telegram_is_disconnected(
    serve: Serve, settings: Settings, memory: MemoryStore, clock: FakeClock
) -> None:
    gateway = FakeGateway({"@alpha": (1111, "alpha")})
    listener = listener_over(gateway, settings, memory, clock)
    client = await serve(await runtime(memory, clock, listener))
    assert (await client.get("/readyz")).status == 200

    gateway.connected = False
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["reasons"] == ["telegram not connected"]

    gateway.connected = True
    assert (await client.get("/readyz")).status == 200


async def test_readyz_lists_every_reason_at_once(
    serve: Serve, settings: Settings, dead_store: SignalStore, clock: FakeClock
) -> None:
    gateway = FakeGateway({})
    gateway.connected = False
    listener = listener_over(gateway, settings, dead_store, clock)
    scorer = Scorer(
        settings, dead_store, NoMarket(), OneShotFeed(), [], clock=clock, metrics=Metrics.create()
    )
    client = await serve(await runtime(dead_store, clock, listener, scorer))
    resp = await client.get("/readyz")
    assert resp.status == 503
    reasons = (await resp.json())["reasons"]
    assert [r.split(":")[0] for r in reasons] == [
        "store unreachable (connection)",
        "telegram not connected",
        "feed not polled yet",
    ]


# -- /metrics ---------------------------------------------------------------------------------


async def test_metrics_count_mentions_without_naming_a_token(
    serve: Serve, settings: Settings, memory: MemoryStore, clock: FakeClock
) -> None:
    metrics = Metrics.create()
    parts = make_parts(settings, clock=clock, metrics=metrics, store=memory, market=NoMarket())
    aggregator = build_pipeline(parts, validate=False)
    tokens = [mint(1), mint(2), mint(3)]
    for i, (group, text) in enumerate(
        [
            ("@alpha", f"CA: {tokens[0]}"),
            ("@bravo", f"{tokens[0]} and {tokens[1]}"),
            ("@charlie", f"https://pump.fun/coin/{tokens[2]}"),
        ]
    ):
        results = await aggregator.process(
            IncomingMessage(chat_id=-1001, group=group, message_id=i + 1, ts=T0 - 60, text=text)
        )
        assert all(r.outcome == "recorded" for r in results)
    await parts.events.drain()
    await memory.beat("aggregator", ttl=15)
    clock.advance(4)

    client = await serve(await runtime(memory, clock, aggregator, metrics=metrics))
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"  # the Prometheus text exposition format
    text = await resp.text()
    assert "# TYPE callsbot_mentions_recorded_total counter" in text.splitlines()
    assert 'callsbot_mentions_recorded_total{kind="mint"} 4.0' in text.splitlines()
    assert 'callsbot_messages_seen_total{source="live"}' not in text  # process(), not submit()
    assert 'callsbot_heartbeat_age_seconds{role="aggregator"} 4.0' in text.splitlines()
    assert "callsbot_queue_depth 0.0" in text.splitlines()
    assert "callsbot_buffer_size 0.0" in text.splitlines()
    for token in tokens:
        assert token not in text
    # Label values are small fixed sets (and histogram bucket bounds), never addresses.
    labels = {v for v in re.findall(r'="([^"]*)"', text) if not re.fullmatch(r"[0-9.]+|\+Inf", v)}
    events = {"mention_recorded", "level_reached", "metrics", "consensus-log"}
    assert labels == {"mint", "aggregator"} | events | set(STATES)


async def test_metrics_still_render_when_the_store_is_down(
    serve: Serve, settings: Settings, dead_store: SignalStore, clock: FakeClock
) -> None:
    client = await serve(await runtime(dead_store, clock))
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert "callsbot_mentions_recorded" in await resp.text()


# -- /api/consensus ---------------------------------------------------------------------------


async def test_consensus_lists_active_tokens_with_groups_and_times(
    serve: Serve, settings: Settings, memory: MemoryStore, clock: FakeClock
) -> None:
    clock.set(T0)
    one, two, gone = mint(11), mint(12), mint(13)
    await memory.record(one, "@alpha", T0 - 100)
    await memory.record(one, "-1001234567890", T0 - 40)
    await memory.record(one, "@bravo", T0 - 10)
    await memory.record(two, "@alpha", T0 - 5)
    await memory.record(gone, "@alpha", T0 - 3600)  # exactly one window ago: no longer counts

    client = await serve(await runtime(memory, clock))
    resp = await client.get("/api/consensus")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert await resp.json() == {
        "window_s": 3600,
        "now": T0,
        "tokens": [
            {
                "token": one,
                "groups": 3,
                "first_call": T0 - 100,
                "last_call": T0 - 10,
                "calls": [
                    {"group": "@alpha", "ts": T0 - 100, "age_s": 100},
                    {"group": "-1001234567890", "ts": T0 - 40, "age_s": 40},
                    {"group": "@bravo", "ts": T0 - 10, "age_s": 10},
                ],
            },
            {
                "token": two,
                "groups": 1,
                "first_call": T0 - 5,
                "last_call": T0 - 5,
                "calls": [{"group": "@alpha", "ts": T0 - 5, "age_s": 5}],
            },
        ],
    }


async def test_consensus_is_503_when_the_store_is_down(
    serve: Serve, settings: Settings, dead_store: SignalStore, clock: FakeClock
) -> None:
    client = await serve(await runtime(dead_store, clock))
    resp = await client.get("/api/consensus")
    assert resp.status == 503
    body = await resp.json()
    assert body["error"].startswith("store unreachable: redis ")
    assert "tokens" not in body
