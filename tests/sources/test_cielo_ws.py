"""The Cielo WebSocket consumer against local fakes of the socket and the REST feed.

Time is a FakeClock moved by :class:`Clockwork`, the service's injected sleep: a pause parks the
service until the test moves the clock past it. Only real socket I/O is awaited.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import attrs
import pytest

from callsbot.clock import FakeClock
from callsbot.config import AlertsSettings, CieloSettings, Settings, WebSettings
from callsbot.errors import EXIT_FATAL
from callsbot.metrics import Metrics
from callsbot.models import Buy
from callsbot.runtime import app
from callsbot.runtime.roles import make_parts, role_services
from callsbot.runtime.service import run_service
from callsbot.scorer import Scorer
from callsbot.sources.cielo import CieloAuthError, CieloFeed, classify_item
from callsbot.sources.cielo_ws import FALLBACK_DETAIL, CieloWebSocket, subscribe_command
from callsbot.store.memory import MemoryStore
from callsbot.testing.cielo import API_KEY, T0, FakeCielo, sell, swap, transfer
from callsbot.testing.cielo_ws import FakeCieloWs

TOKENS = [
    "7GCihgDB8fe6KNjn2MYtkzZcRjQy3t9GHdC8uHYmW2hr",
    "HeLp6NuQkmYB4pYWo2zYs22mESHXPQYzXbB8n4V98jwC",
    "9BB6NFEcjBCtnNLFko2FqVQBq8HHM13kCyYcdQbgpump",
    "5tzFkiKscXHK5ZXCGbXZxdw7gTjjD1mBwuoFbhUvuAi9",
    "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin",
]
WAIT = 10.0  # a safety net for a test that would otherwise hang; never reached when green


def item(n: int, **kw: Any) -> dict[str, Any]:
    """Buy number ``n``: tx ``tx<n>``, token ``TOKENS[n % 5]``, timestamp ``T0 + 10 n``."""
    return swap(f"tx{n}", TOKENS[n % len(TOKENS)], ts=T0 + 10 * n, **kw)


class Clockwork:
    """The service's sleep: every pause parks the caller until the test moves the clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[float] = []
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []
        self._parked = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self.clock.time() + seconds, waiter)
        self._sleepers.append(entry)
        self._parked.set()
        try:
            await waiter
        finally:
            self._sleepers.remove(entry)

    @property
    def parked(self) -> bool:
        """Whether the service is pausing right now."""
        return any(not f.done() for _, f in self._sleepers)

    async def step(self) -> float:
        """Wait until the service pauses, move the clock to the end of the pause, resume it.

        Returns the length of the pause."""
        async with asyncio.timeout(WAIT):
            while not self.parked:
                self._parked.clear()
                await self._parked.wait()
        wake, waiter = min((s for s in self._sleepers if not s[1].done()), key=lambda s: s[0])
        pause = max(wake - self.clock.time(), 0.0)
        self.clock.set(max(wake, self.clock.time()))
        waiter.set_result(None)
        return pause


@attrs.define
class Handled:
    """The buy handler: records every buy with the path it came by."""

    buys: list[tuple[str, str]] = attrs.Factory(list)  # (tx_hash, path)
    objects: list[Buy] = attrs.Factory(list)

    async def __call__(self, buys: Sequence[Buy], *, path: str) -> None:
        for buy in buys:
            self.buys.append((buy.tx_hash, path))
            self.objects.append(buy)

    def txs(self, path: str | None = None) -> list[str]:
        return [tx for tx, p in self.buys if path is None or p == path]


async def until(predicate: Callable[[], bool]) -> None:
    """Wait for socket I/O to make ``predicate`` true (the fake clock does not move), checking
    every millisecond for at most ``WAIT`` seconds."""
    for _ in range(int(WAIT * 1000)):
        if predicate():
            return
        await asyncio.sleep(0.001)
    pytest.fail("the condition never held")


class NoSleep:
    async def __call__(self, seconds: float) -> None:
        return None


@pytest.fixture
async def rest() -> AsyncIterator[FakeCielo]:
    server = await FakeCielo().start()
    yield server
    await server.close()


@pytest.fixture
async def socket(rest: FakeCielo) -> AsyncIterator[FakeCieloWs]:
    async with FakeCieloWs(rest=rest) as server:
        yield server


@pytest.fixture
def metrics() -> Metrics:
    return Metrics.create()


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(f"callsbot_{name}", labels)
    return 0.0 if value is None else value


def ws_settings(rest: FakeCielo, socket: FakeCieloWs, **kw: Any) -> CieloSettings:
    base: dict[str, Any] = {
        "url": rest.url,
        "ws_url": socket.url,
        "api_key": API_KEY,
        "mode": "websocket",
        "ws_backoff_initial_seconds": 1.0,
        "ws_backoff_max_seconds": 8.0,
        "ws_backoff_jitter_seconds": 0.0,
        "ws_max_failures": 3,
        "ws_retry_seconds": 60.0,
        "poll_seconds": 10.0,
    }
    return CieloSettings(**(base | kw))


@attrs.define
class Rig:
    service: CieloWebSocket
    feed: CieloFeed
    handled: Handled
    clockwork: Clockwork
    stop: asyncio.Event
    task: asyncio.Task[None] | None = None

    def start(self) -> Rig:
        self.task = asyncio.create_task(self.service.run(self.stop))
        return self

    async def finish(self) -> None:
        self.stop.set()
        assert self.task is not None
        async with asyncio.timeout(WAIT):
            await self.task
        await self.feed.aclose()


def make_rig(
    settings: CieloSettings,
    clock: FakeClock,
    metrics: Metrics,
    store: MemoryStore | None = None,
) -> Rig:
    store = store if store is not None else MemoryStore(window=3600, clock=clock)
    feed = CieloFeed(settings, store, clock=clock, metrics=metrics, sleep=NoSleep())
    handled = Handled()
    clockwork = Clockwork(clock)
    service = CieloWebSocket(settings, feed, handled, clock=clock, metrics=metrics, sleep=clockwork)
    return Rig(service, feed, handled, clockwork, asyncio.Event())


# -- the subscription -------------------------------------------------------------------------


async def test_subscribe_command_carries_the_configured_filter_and_the_key_header(
    rest: FakeCielo, socket: FakeCieloWs, clock: FakeClock, metrics: Metrics
) -> None:
    settings = ws_settings(
        rest,
        socket,
        chains=("solana", "base"),
        tx_types=("swap",),
        min_usd=250.0,
        list_id=42,
        new_trades=True,
    )
    rig = make_rig(settings, clock, metrics).start()
    await socket.wait_subscribed()
    await rig.finish()
    assert socket.commands == [
        {
            "type": "subscribe_feed",
            "filter": {
                "chains": ["solana", "base"],
                "tx_types": ["swap"],
                "min_usd_value": 250.0,
                "new_trade": True,
            },
            "list_id": 42,
        }
    ]
    assert socket.upgrade_headers[0]["X-API-KEY"] == API_KEY


def test_subscribe_command_leaves_out_what_is_not_configured() -> None:
    bare = CieloSettings(api_key=API_KEY, chains=(), tx_types=())
    assert subscribe_command(bare) == {"type": "subscribe_feed"}
    default = CieloSettings(api_key=API_KEY)
    assert subscribe_command(default) == {
        "type": "subscribe_feed",
        "filter": {"chains": ["solana"], "tx_types": ["swap"]},
    }


# -- events -----------------------------------------------------------------------------------


async def test_feed_events_become_the_same_buys_as_the_rest_parser(
    rest: FakeCielo, socket: FakeCieloWs, clock: FakeClock, metrics: Metrics
) -> None:
    rig = make_rig(ws_settings(rest, socket), clock, metrics).start()
    await socket.wait_subscribed()
    buy = item(1, label="whale", first=True)
    await socket.publish(sell("tx-sell", TOKENS[0]))
    await socket.publish(transfer("tx-transfer", TOKENS[0]))
    await socket.publish(buy)
    await until(lambda: len(rig.handled.buys) == 1)
    await rig.finish()
    assert rig.handled.buys == [("tx1", "websocket")]
    assert rig.handled.objects == [classify_item(buy)[1]]
    assert sample(metrics, "cielo_ws_events_total", kind="feed") == 3
    assert sample(metrics, "cielo_ws_events_total", kind="control") == 1  # feed_subscribed
    assert sample(metrics, "feed_items_total", outcome="sell") == 1
    assert sample(metrics, "feed_items_total", outcome="transfer") == 1
    assert sample(metrics, "feed_items_total", outcome="buy") == 1


async def test_unknown_event_types_are_counted_and_skipped(
    rest: FakeCielo, socket: FakeCieloWs, clock: FakeClock, metrics: Metrics
) -> None:
    rig = make_rig(ws_settings(rest, socket), clock, metrics).start()
    await socket.wait_subscribed()
    await socket.send_event("wallet_pnl", {"wallet": "x", "pnl": 12})
    await socket.send_event("tx_v2", item(7))
    await socket.publish(item(1))
    await until(lambda: len(rig.handled.buys) == 1)
    await rig.finish()
    assert rig.handled.txs() == ["tx1"]
    assert sample(metrics, "cielo_ws_events_total", kind="unknown") == 2
    assert socket.connections == 1  # skipped, never a reason to reconnect


async def test_malformed_events_are_counted_and_skipped(
    rest: FakeCielo, socket: FakeCieloWs, clock: FakeClock, metrics: Metrics
) -> None:
    rig = make_rig(ws_settings(rest, socket), clock, metrics).start()
    await socket.wait_subscribed()
    await socket.send_raw('{"type": "tx", "data": {"tx_hash": "x"')  # truncated JSON
    await socket.send_raw("[1, 2, 3]")
    await socket.send_raw('{"type": 5, "data": {}}')
    await socket.send_raw('{"data": {}}')
    await socket.send_event("tx", "not an item")
    await socket.send_bytes(b"\x00\x01")
    await socket.send_event("tx", item(2) | {"token1_address": "not-an-address"})
    await socket.send_event("tx", item(3) | {"tx_hash": "bad\x00hash"})
    await socket.publish(item(1))
    await until(lambda: len(rig.handled.buys) == 1)
    await rig.finish()
    assert rig.handled.txs() == ["tx1"]
    assert sample(metrics, "cielo_ws_events_total", kind="malformed") == 6
    assert sample(metrics, "feed_items_total", outcome="malformed") == 2
    assert socket.connections == 1


# -- drop, reconnect, gap fill ----------------------------------------------------------------


async def test_drop_mid_stream_reconnects_and_fills_the_gap_from_rest_without_repeats(
    rest: FakeCielo, socket: FakeCieloWs, clock: FakeClock, metrics: Metrics
) -> None:
    rig = make_rig(ws_settings(rest, socket), clock, metrics).start()
    await socket.wait_subscribed()
    await socket.publish(item(1))
    await socket.publish(item(2))
    await until(lambda: rig.handled.txs() == ["tx1", "tx2"] and rig.service.watermark is not None)
    assert rig.service.watermark == T0 + 20  # so the first gap fill (at connect) is over
    seen_before = sample(metrics, "cielo_gap_fill_items_total", outcome="seen")

    await socket.drop()
    # While nobody listens, two buys happen (the REST feed has them, the socket had no one).
    await socket.publish(item(3))
    await socket.publish(item(4))
    assert await rig.clockwork.step() == 1.0  # the first reconnect waits the initial back-off
    await socket.wait_subscribed(2)
    await until(lambda: len(rig.handled.buys) == 4)
    # The gap fill asked from the last item seen, and the socket delivers one of its items too.
    gap_requests = [r for r in rest.requests if "fromTimestamp" in r.query]
    assert gap_requests[0].query["fromTimestamp"] == str(T0 + 20)
    await socket.send_event("tx", item(4))
    await socket.publish(item(5))
    await until(lambda: len(rig.handled.buys) == 5)
    await rig.finish()

    assert rig.handled.buys == [
        ("tx1", "websocket"),
        ("tx2", "websocket"),
        ("tx3", "gap_fill"),
        ("tx4", "gap_fill"),
        ("tx5", "websocket"),
    ]
    assert sample(metrics, "cielo_ws_reconnects_total") == 1
    assert sample(metrics, "cielo_gap_fill_items_total", outcome="buy") == 2
    # tx2 is on the gap page too (same second as the last item seen): claimed already.
    assert sample(metrics, "cielo_gap_fill_items_total", outcome="seen") - seen_before == 1
    assert sample(metrics, "feed_items_total", outcome="seen") >= 1  # tx4 again by the socket
    assert rig.service.watermark == T0 + 50


async def test_two_consumers_sharing_a_store_handle_each_buy_once(
    rest: FakeCielo, socket: FakeCieloWs, clock: FakeClock, metrics: Metrics
) -> None:
    store = MemoryStore(window=3600, clock=clock)
    settings = ws_settings(rest, socket)
    one = make_rig(settings, clock, metrics, store).start()
    two = make_rig(settings, clock, Metrics.create(), store).start()
    await socket.wait_subscribed(2)
    await socket.wait_for(lambda: socket.subscribed == 2)
    for n in range(1, 6):
        await socket.publish(item(n))
    await until(lambda: len(one.handled.buys) + len(two.handled.buys) == 5)
    await one.finish()
    await two.finish()
    assert sorted(one.handled.txs() + two.handled.txs()) == [f"tx{n}" for n in range(1, 6)]


async def test_first_connect_reads_the_newest_page_like_a_poll(
    rest: FakeCielo, socket: FakeCieloWs, clock: FakeClock, metrics: Metrics
) -> None:
    rest.add(item(1), item(2))  # happened before the service started
    rig = make_rig(ws_settings(rest, socket), clock, metrics).start()
    await until(lambda: len(rig.handled.buys) == 2)
    await rig.finish()
    assert sorted(rig.handled.buys) == [("tx1", "gap_fill"), ("tx2", "gap_fill")]
    assert "fromTimestamp" not in rest.requests[0].query


async def test_feed_poll_since_sends_from_timestamp_and_follows_the_whole_range(
    rest: FakeCielo, clock: FakeClock, metrics: Metrics
) -> None:
    rest.add(*(item(n) for n in range(1, 8)))
    settings = CieloSettings(url=rest.url, api_key=API_KEY, limit=2, max_pages=10)
    store = MemoryStore(window=3600, clock=clock)
    feed = CieloFeed(settings, store, clock=clock, metrics=metrics, sleep=NoSleep())
    await feed.accept(item(7))  # the socket delivered the newest one already
    result = await feed.poll(since=T0 + 30)
    await feed.aclose()
    assert sorted(b.tx_hash for b in result.buys) == ["tx3", "tx4", "tx5", "tx6"]
    assert result.skipped == {"seen": 1}
    assert result.newest == T0 + 70
    assert [r.query.get("fromTimestamp") for r in rest.requests] == [str(T0 + 30)] * 3


# -- a rejected key ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["upgrade_401", "wrong_key", "error_event"])
async def test_a_rejected_key_is_fatal_and_names_the_variable(
    how: str,
    rest: FakeCielo,
    socket: FakeCieloWs,
    clock: FakeClock,
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key = API_KEY
    if how == "upgrade_401":
        socket.reject_key = True
    elif how == "wrong_key":
        key = "some-other-key-9876543210"
    else:
        socket.auth_error_event = True
    rig = make_rig(ws_settings(rest, socket, api_key=key), clock, metrics)
    with pytest.raises(CieloAuthError) as caught:
        async with asyncio.timeout(WAIT):
            await run_service(rig.service, rig.stop, clock=clock, metrics=metrics)
    await rig.feed.aclose()
    assert "CALLSBOT_CIELO_API_KEY" in str(caught.value)
    assert caught.value.exit_code == EXIT_FATAL
    assert key not in str(caught.value)
    assert key not in caplog.text


async def test_a_rejected_key_ends_the_scorer_process_with_the_fatal_code(
    rest: FakeCielo, socket: FakeCieloWs, clock: FakeClock, metrics: Metrics
) -> None:
    socket.reject_key = True
    base = Settings()
    settings = attrs.evolve(
        base,
        cielo=ws_settings(rest, socket),
        web=attrs.evolve(base.web, enabled=False),
        alerts=AlertsSettings(jsonl_path=None, log=True),
    )
    assert isinstance(settings.web, WebSettings)
    code = await app.run(
        settings, role="scorer", clock=clock, metrics=metrics, stop=asyncio.Event()
    )
    assert code == EXIT_FATAL


# -- falling back to polling ------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["refused", "http_503", "subscribe_error"])
async def test_falls_back_to_polling_when_the_socket_cannot_be_kept_and_recovers(
    fault: str,
    rest: FakeCielo,
    socket: FakeCieloWs,
    clock: FakeClock,
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="callsbot.sources.cielo_ws")
    if fault == "refused":
        await socket.refuse()
    elif fault == "http_503":
        socket.upgrade_status = 503
    else:
        socket.subscribe_error = "invalid filter"
    rest.add(item(1))  # happens while the socket is down: the first poll finds it
    rig = make_rig(ws_settings(rest, socket), clock, metrics).start()
    assert rig.service.health() == ["cielo websocket not connected yet"]
    # Three failed connections in a row, with the doubling back-off between them.
    assert await rig.clockwork.step() == 1.0
    assert await rig.clockwork.step() == 2.0
    await until(lambda: rig.service.polling)
    assert rig.service.health() == [FALLBACK_DETAIL]
    assert sample(metrics, "cielo_ws_fallback") == 1

    # Polling delivers what happens meanwhile, every poll_seconds.
    await until(lambda: rig.handled.txs() == ["tx1"])  # the first poll runs at once
    rest.add(item(2))
    assert await rig.clockwork.step() == 10.0
    await until(lambda: rig.handled.txs() == ["tx1", "tx2"])
    assert set(rig.handled.txs("poll")) == {"tx1", "tx2"}

    # The socket is tried again after ws_retry_seconds; still down: polling goes on quietly.
    while sample(metrics, "cielo_ws_failures_total", reason=_reason(fault)) < 4:
        await rig.clockwork.step()
    assert rig.service.polling

    # It comes back: the next retry connects, polling stops, the socket delivers again.
    if fault == "refused":
        await socket.accept()
    elif fault == "http_503":
        socket.upgrade_status = None
    else:
        socket.subscribe_error = None
    while not socket.subscribed:
        await rig.clockwork.step()
        await until(lambda: rig.clockwork.parked or socket.subscribed == 1)
    await until(lambda: rig.service.connected)
    await socket.publish(item(3))
    await until(lambda: "tx3" in rig.handled.txs())
    await rig.finish()
    assert rig.handled.buys[-1] == ("tx3", "websocket")
    assert rig.service.health() == []
    assert sample(metrics, "cielo_ws_fallback") == 0
    down = [r for r in caplog.records if "websocket down" in r.getMessage()]
    back = [r for r in caplog.records if "websocket back" in r.getMessage()]
    assert len(down) == 1
    assert len(back) == 1
    assert sorted(rig.handled.txs()) == ["tx1", "tx2", "tx3"]  # nothing twice


def _reason(fault: str) -> str:
    return {"refused": "refused", "http_503": "handshake", "subscribe_error": "subscribe_refused"}[
        fault
    ]


async def test_backoff_doubles_and_starts_over_after_a_good_connection(
    rest: FakeCielo, socket: FakeCieloWs, clock: FakeClock, metrics: Metrics
) -> None:
    await socket.refuse()
    rig = make_rig(ws_settings(rest, socket, ws_max_failures=10), clock, metrics).start()
    pauses = [await rig.clockwork.step() for _ in range(5)]
    assert pauses == [1.0, 2.0, 4.0, 8.0, 8.0]
    await socket.accept()
    await rig.clockwork.step()
    await socket.wait_subscribed()
    await until(lambda: rig.service.connected)
    await socket.drop()
    assert await rig.clockwork.step() == 1.0  # the subscribed connection reset the back-off
    await socket.wait_subscribed(2)
    await rig.finish()


async def test_pings_keep_the_connection_and_a_silent_server_is_left(
    rest: FakeCielo, socket: FakeCieloWs, clock: FakeClock, metrics: Metrics
) -> None:
    # aiohttp's heartbeat runs on the event loop's own clock: a short one, awaited for real.
    rig = make_rig(ws_settings(rest, socket, ws_heartbeat_seconds=0.1), clock, metrics).start()
    await socket.wait_subscribed()
    await until(lambda: socket.pings >= 2)
    assert rig.service.connected
    socket.answer_pings = False
    await until(lambda: not rig.service.connected)
    assert sample(metrics, "cielo_ws_failures_total", reason="heartbeat") == 1
    socket.answer_pings = True
    await rig.clockwork.step()
    await socket.wait_subscribed(2)
    await rig.finish()


# -- wiring -----------------------------------------------------------------------------------


class OneVerdictMarket:
    """No token has market data: every buy is parked, which is enough to see it arrive."""

    async def verdicts(self, tokens: Sequence[str], *, chain: str = "solana") -> dict[str, Any]:
        return {}

    async def resolve_pairs(self, pairs: Sequence[str], *, chain: str = "solana") -> dict[str, Any]:
        return dict.fromkeys(pairs)


async def test_websocket_mode_wires_the_service_to_the_scorer_and_turns_its_poll_off(
    rest: FakeCielo, socket: FakeCieloWs, clock: FakeClock, metrics: Metrics
) -> None:
    base = Settings()
    settings = attrs.evolve(
        base, cielo=ws_settings(rest, socket), alerts=AlertsSettings(jsonl_path=None, log=False)
    )
    store = MemoryStore(window=3600, clock=clock)
    parts = make_parts(
        settings, clock=clock, metrics=metrics, store=store, market=OneVerdictMarket()
    )
    stop = asyncio.Event()
    async with role_services(parts, "scorer", stop=stop) as services:
        scorer, service = services
        assert isinstance(scorer, Scorer)
        assert isinstance(service, CieloWebSocket)
        assert await scorer.poll_once() == []
        assert rest.requests == []  # the scorer's own poll is off
        assert scorer.health() == []
        task = asyncio.create_task(service.run(stop))
        await socket.wait_subscribed()
        await socket.publish(item(1))
        await until(lambda: scorer.pending == (TOKENS[1],))
        stop.set()
        await task
    assert sample(metrics, "buys_total", path="websocket") == 1
