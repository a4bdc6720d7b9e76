"""The pipeline with real market validation against a local DexScreener and real stores."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest

from callsbot.aggregator import Aggregator
from callsbot.clock import FakeClock
from callsbot.config import DexScreenerSettings, ExtractionSettings, Settings, TelegramSettings
from callsbot.market.gate import MarketValidator
from callsbot.metrics import Metrics
from callsbot.models import IncomingMessage
from callsbot.runtime.roles import build_pipeline, make_parts, open_parts
from callsbot.store import MemoryStore, SignalStore
from callsbot.testing.dexscreener import ClockSleep, FakeDexScreener, make_pair
from callsbot.testing.redis_server import RedisServer
from tests.conftest import make_redis_store, mark_window_whole
from tests.tg import mint

T0 = 1_700_000_000


@attrs.define
class Rig:
    aggregator: Aggregator
    store: SignalStore
    dex: FakeDexScreener
    metrics: Metrics
    clock: FakeClock
    settings: Settings
    market: MarketValidator

    def spooling(self, spool: Path, settings: Settings | None = None) -> Aggregator:
        """Another aggregator on the same store and market, with a spool file."""
        parts = make_parts(
            settings or self.settings,
            clock=self.clock,
            metrics=self.metrics,
            store=self.store,
            market=self.market,
        )
        return build_pipeline(parts, spool=spool)

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@contextlib.asynccontextmanager
async def rig(clock: FakeClock, store: SignalStore, **settings: object) -> AsyncIterator[Rig]:
    metrics = Metrics.create()
    async with FakeDexScreener(clock=clock) as dex:
        s = Settings(
            dexscreener=DexScreenerSettings(url=dex.url, max_attempts=1),
            **settings,  # type: ignore[arg-type]
        )
        parts_cm = open_parts(s, clock=clock, metrics=metrics, store=store, sleep=ClockSleep(clock))
        async with parts_cm as parts:
            assert isinstance(parts.market, MarketValidator)
            yield Rig(build_pipeline(parts), store, dex, metrics, clock, s, parts.market)


def msg(
    text: str,
    *,
    group: str = "@alpha",
    chat_id: int = -1000000000111,
    message_id: int = 1,
    ts: int = T0 - 60,
) -> IncomingMessage:
    return IncomingMessage(chat_id=chat_id, group=group, message_id=message_id, ts=ts, text=text)


@pytest.fixture
def memory(clock: FakeClock) -> MemoryStore:
    return MemoryStore(window=3600, clock=clock)


async def test_valid_token_is_recorded_and_failing_ones_say_why(
    clock: FakeClock, memory: MemoryStore
) -> None:
    async with rig(clock, memory) as r:
        r.dex.add_token(mint(1), liquidity=50_000, volume_h24=90_000)
        r.dex.add_token(mint(2), liquidity=2_000, volume_h24=90_000)
        r.dex.add_token(mint(3), liquidity=50_000, volume_h24=100)
        text = f"CA: {mint(1)}\n{mint(2)}\n{mint(3)}\n{mint(4)}"
        results = await r.aggregator.process(msg(text))
        assert [(x.token, x.outcome) for x in results] == [
            (mint(1), "recorded"),
            (mint(2), "rejected:low_liquidity"),
            (mint(3), "rejected:low_volume"),
            (mint(4), "rejected:no_pairs"),
        ]
        assert results[0].groups_in_window == 1
        assert await memory.counts([mint(i) for i in range(1, 5)]) == {
            mint(1): 1,
            mint(2): 0,
            mint(3): 0,
            mint(4): 0,
        }
        assert r.sample("callsbot_mentions_rejected_total", reason="no_pairs") == 1
        assert len(r.dex.requests) == 1  # four tokens, one batched request


async def test_pair_link_is_counted_under_its_base_token(
    clock: FakeClock, memory: MemoryStore
) -> None:
    async with rig(clock, memory) as r:
        r.dex.add_pair(make_pair(mint(10), pair_address=mint(11)))
        results = await r.aggregator.process(msg(f"https://dexscreener.com/solana/{mint(11)}"))
        assert [(x.token, x.kind, x.outcome) for x in results] == [(mint(10), "pair", "recorded")]
        assert await memory.counts([mint(10), mint(11)]) == {mint(10): 1, mint(11): 0}


async def test_a_429_defers_the_mention_and_never_marks_it_invalid(
    clock: FakeClock, memory: MemoryStore
) -> None:
    async with rig(clock, memory) as r:
        r.dex.add_token(mint(1))
        r.dex.fail_next(429, retry_after=5)
        results = await r.aggregator.process(msg(f"CA: {mint(1)}"))
        assert [x.outcome for x in results] == ["deferred"]
        assert r.aggregator.deferred == 1
        assert await memory.counts([mint(1)]) == {mint(1): 0}
        clock.advance(10)  # past the Retry-After cooldown
        assert await r.aggregator.retry_deferred() is True
        assert r.aggregator.deferred == 0
        # Recorded with the message's own date, not the retry time.
        assert await memory.groups(mint(1)) == {"@alpha": T0 - 60}


async def test_groups_calling_the_same_token_during_an_outage_are_all_counted_after_it(
    clock: FakeClock, store: SignalStore
) -> None:
    async with rig(clock, store) as r:
        r.dex.add_token(mint(1))
        r.dex.fail_next(503, times=3)  # down for each of the three messages
        calls = [
            msg(f"CA: {mint(1)}", group="@alpha", chat_id=-1001, message_id=7, ts=T0 - 60),
            msg(f"CA: {mint(1)}", group="@beta", chat_id=-1002, message_id=7, ts=T0 - 50),
            # @alpha again, in another message: still one group.
            msg(f"{mint(1)} sending", group="@alpha", chat_id=-1001, message_id=8, ts=T0 - 40),
        ]
        for call in calls:
            assert [x.outcome for x in await r.aggregator.process(call)] == ["deferred"]
        assert r.aggregator.deferred == 3
        assert await r.aggregator.retry_deferred() is True  # the market is back
        assert r.aggregator.deferred == 0
        assert await store.counts([mint(1)]) == {mint(1): 2}
        assert await store.groups(mint(1)) == {"@alpha": T0 - 40, "@beta": T0 - 50}
        assert r.sample("callsbot_mentions_rejected_total", reason="duplicate") == 0


async def test_a_retry_during_the_outage_keeps_every_message_and_one_message_is_one_mention(
    clock: FakeClock, memory: MemoryStore
) -> None:
    async with rig(clock, memory) as r:
        r.dex.add_pair(make_pair(mint(1), pair_address=mint(11)))
        r.dex.fail_next(500, times=5)  # the three lookups of the messages, two of the retry
        twice = f"CA: {mint(1)}\nhttps://dexscreener.com/solana/{mint(11)}"
        await r.aggregator.process(msg(twice, group="@alpha", chat_id=-1001))
        await r.aggregator.process(msg(f"CA: {mint(1)}", group="@beta", chat_id=-1002))
        assert r.aggregator.deferred == 3  # @alpha's mint and pair link, @beta's mint
        assert await r.aggregator.retry_deferred() is False  # still down: nothing settles
        assert r.aggregator.deferred == 3
        assert await r.aggregator.retry_deferred() is True
        assert r.aggregator.deferred == 0
        assert await memory.counts([mint(1)]) == {mint(1): 2}
        # @alpha's message named the token twice: one mention, not a second claim to refuse.
        assert r.sample("callsbot_mentions_rejected_total", reason="duplicate") == 0


async def test_deferred_mentions_older_than_the_window_are_dropped_and_counted(
    clock: FakeClock, memory: MemoryStore
) -> None:
    async with rig(clock, memory) as r:
        r.dex.fail_next(500, times=5)
        await r.aggregator.process(msg(f"CA: {mint(1)}"))
        assert r.aggregator.deferred == 1
        clock.advance(3600)
        await r.aggregator.retry_deferred()
        assert r.aggregator.deferred == 0
        assert r.sample("callsbot_mentions_rejected_total", reason="expired_unknown") == 1


EVM_TOKEN = "0x6982508145454Ce325dDbE47a25d4ec3d2311933"  # checksummed, as DexScreener sends it
EVM_PAIR = "0xA43fe16908251ee70EF74718545e4FE6C5cCEc9f"
WETH_BASE = "0x4200000000000000000000000000000000000006"


async def test_a_chainless_evm_address_takes_the_chain_of_its_best_pair(
    clock: FakeClock, memory: MemoryStore
) -> None:
    unknown = "0x" + "12" * 20
    async with rig(clock, memory) as r:
        # Most liquid on Base (and fine there); on Ethereum it would fail the volume gate.
        r.dex.add_token(EVM_TOKEN, chain="base", quote_address=WETH_BASE, liquidity=900_000)
        r.dex.add_token(EVM_TOKEN, chain="ethereum", liquidity=20_000, volume_h24=100)
        results = await r.aggregator.process(msg(f"CA: {EVM_TOKEN}\n{unknown}"))
        assert [(x.token, x.kind, x.outcome) for x in results] == [
            (EVM_TOKEN.lower(), "evm", "recorded"),
            (unknown, "evm", "rejected:evm_no_chain"),
        ]
        lookups = r.dex.requests_of("latest_tokens")
        assert [req.addresses for req in lookups] == [(EVM_TOKEN.lower(), unknown)]
        # The same token named with its chain by another group is the same token.
        other = msg(f"on Base: {EVM_TOKEN}", group="@beta", message_id=2)
        assert [x.groups_in_window for x in await r.aggregator.process(other)] == [2]


async def test_a_chainless_evm_address_waits_when_market_data_is_down(
    clock: FakeClock, memory: MemoryStore
) -> None:
    async with rig(clock, memory) as r:
        r.dex.add_token(EVM_TOKEN, chain="base", quote_address=WETH_BASE)
        r.dex.fail_next(503)
        results = await r.aggregator.process(msg(f"CA: {EVM_TOKEN}"))
        assert [x.outcome for x in results] == ["deferred"]
        assert await r.aggregator.retry_deferred() is True
        assert await memory.counts([EVM_TOKEN.lower()]) == {EVM_TOKEN.lower(): 1}


@pytest.mark.parametrize(
    "link",
    [
        f"https://dexscreener.com/base/{EVM_PAIR}",
        f"https://dexscreener.com/base/{EVM_PAIR.lower()}?maker=0x{'ab' * 20}",
        f"https://www.dextools.io/app/en/base/pair-explorer/{EVM_PAIR}",
    ],
    ids=["dexscreener", "dexscreener-lower", "dextools"],
)
async def test_an_evm_pair_link_counts_under_its_lower_cased_base_token(
    clock: FakeClock, memory: MemoryStore, link: str
) -> None:
    async with rig(clock, memory) as r:
        r.dex.add_pair(
            make_pair(EVM_TOKEN, chain="base", pair_address=EVM_PAIR, quote_address=WETH_BASE)
        )
        first = await r.aggregator.process(msg(f"📈 Chart: {link}"))
        assert [(x.token, x.kind, x.outcome) for x in first] == [
            (EVM_TOKEN.lower(), "evm_pair", "recorded")
        ]
        second = await r.aggregator.process(msg(f"Base CA: {EVM_TOKEN}", group="@b", message_id=2))
        assert [(x.token, x.groups_in_window) for x in second] == [(EVM_TOKEN.lower(), 2)]
        assert [req.kind for req in r.dex.requests] == ["pairs", "tokens_v1"]


async def test_a_mint_in_a_pair_slot_is_tried_once_as_a_token(
    clock: FakeClock, memory: MemoryStore
) -> None:
    async with rig(clock, memory) as r:
        r.dex.add_token(mint(20))  # a token; its pool has another address
        chart = f"📈 Chart: https://dexscreener.com/solana/{mint(20)}"
        results = await r.aggregator.process(msg(chart))
        assert [(x.token, x.kind, x.outcome) for x in results] == [(mint(20), "pair", "recorded")]
        assert await memory.counts([mint(20)]) == {mint(20): 1}
        nothing = f"https://dexscreener.com/solana/{mint(21)}"  # neither a pair nor a token
        results = await r.aggregator.process(msg(nothing, message_id=2))
        assert [x.outcome for x in results] == ["rejected:unknown_pair"]
        assert [req.kind for req in r.dex.requests] == ["pairs", "tokens_v1"] * 2


async def test_a_pair_slot_token_deferred_by_an_outage_is_not_resolved_as_a_pair_again(
    clock: FakeClock, memory: MemoryStore
) -> None:
    async with rig(clock, memory) as r:
        r.dex.add_token(mint(20))
        r.dex.slow_next(delay=0)  # the pair lookup answers at once ("no such pair")...
        r.dex.fail_next(500)  # ...the token lookup fails
        results = await r.aggregator.process(msg(f"https://dexscreener.com/solana/{mint(20)}"))
        assert [(x.token, x.outcome) for x in results] == [(mint(20), "deferred")]
        assert await r.aggregator.retry_deferred() is True
        assert await memory.counts([mint(20)]) == {mint(20): 1}
        assert [req.kind for req in r.dex.requests] == ["pairs", "tokens_v1", "tokens_v1"]


async def test_address_cap_counts_what_it_dropped(clock: FakeClock, memory: MemoryStore) -> None:
    s = {"extraction": ExtractionSettings(max_addresses=3)}
    async with rig(clock, memory, **s) as r:
        for i in range(5):
            r.dex.add_token(mint(i))
        text = "\n".join(f"CA: {mint(i)}" for i in range(5))
        results = await r.aggregator.process(msg(text))
        assert [x.token for x in results] == [mint(0), mint(1), mint(2)]
        assert r.sample("callsbot_extraction_dropped_total") == 2


async def test_store_down_buffers_with_original_dates_then_writes(clock: FakeClock) -> None:
    server = RedisServer(persistent=True)
    server.start()
    mark_window_whole(server)  # persistent: the marker survives the restart with the data
    try:
        async with make_redis_store(server.url, clock) as store, rig(clock, store) as r:
            for i in range(4):
                r.dex.add_token(mint(i))
            server.stop()
            outcomes = [
                x.outcome
                for i in range(4)
                for x in await r.aggregator.process(msg(f"CA: {mint(i)}", message_id=i, ts=T0 - i))
            ]
            assert outcomes == ["buffered"] * 4
            assert r.aggregator.buffered == 4
            assert r.sample("callsbot_buffer_size") == 4
            server.start()
            assert await r.aggregator.flush_buffer() is True
            assert r.aggregator.buffered == 0
            assert await store.groups(mint(3)) == {"@alpha": T0 - 3}
            # A second delivery of a buffered message is still a duplicate.
            again = await r.aggregator.process(msg(f"CA: {mint(3)}", message_id=3, ts=T0 - 3))
            assert [x.outcome for x in again] == ["duplicate"]
    finally:
        server.stop()


async def test_a_full_buffer_is_loud_and_counted(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    dead = make_redis_store(RedisServer().url, clock)  # nothing listens there
    async with dead, rig(clock, dead, telegram=TelegramSettings(buffer_size=2)) as r:
        for i in range(3):
            r.dex.add_token(mint(i))
        outcomes = [
            x.outcome
            for i in range(3)
            for x in await r.aggregator.process(msg(f"CA: {mint(i)}", message_id=i))
        ]
        assert outcomes == ["buffered", "buffered", "rejected:buffer_full"]
        assert r.sample("callsbot_buffer_overflow_total") == 1
        assert "STORE BUFFER FULL" in caplog.text


async def test_what_waits_at_shutdown_is_spooled_and_written_by_the_next_start(
    clock: FakeClock, tmp_path: Path
) -> None:
    import asyncio

    spool = tmp_path / "spool.jsonl"
    server = RedisServer()  # not started yet: the store is down for the first run
    async with make_redis_store(server.url, clock) as store, rig(clock, store) as r:
        for i in range(3):
            r.dex.add_token(mint(i))
        r.dex.fail_next(500)  # mint(2)'s first lookup fails: deferred
        first = r.spooling(spool)
        await first.process(msg(f"CA: {mint(2)}", message_id=2, ts=T0 - 2))
        for i in range(2):
            await first.process(msg(f"CA: {mint(i)}", message_id=i, ts=T0 - i))
        assert (first.buffered, first.deferred) == (2, 1)
        stop = asyncio.Event()
        stop.set()
        await first.run(stop)  # stops at once, with the store still down
        assert (spool.stat().st_mode & 0o777) == 0o600
        assert len(spool.read_text().splitlines()) == 3

        server.start()
        mark_window_whole(server)
        try:
            second = r.spooling(spool)
            stop = asyncio.Event()
            task = asyncio.create_task(second.run(stop))
            wanted = {mint(0): 1, mint(1): 1, mint(2): 1}
            for _ in range(200):  # the spool is read in a thread: poll, bounded
                await asyncio.sleep(0.01)
                await second.flush_buffer()
                await second.retry_deferred()
                if await store.counts(list(wanted)) == wanted:
                    break
            stop.set()
            await task
            assert not spool.exists()
            assert await store.groups(mint(0)) == {"@alpha": T0}
            assert await store.counts([mint(0), mint(1), mint(2)]) == {
                mint(0): 1,
                mint(1): 1,
                mint(2): 1,
            }
        finally:
            server.stop()


async def test_a_run_cancelled_before_it_drained_spools_the_queue(
    clock: FakeClock, memory: MemoryStore, tmp_path: Path
) -> None:
    import asyncio

    spool = tmp_path / "spool.jsonl"
    async with rig(clock, memory) as r:
        for i in range(5):
            r.dex.add_token(mint(i))
        r.dex.slow_next(times=100)  # every lookup hangs: the workers never finish a message
        s = attrs.evolve(r.settings, telegram=TelegramSettings(workers=2))
        first = r.spooling(spool, s)
        task = asyncio.create_task(first.run(asyncio.Event()))
        for i in range(5):
            await first.submit(msg(f"CA: {mint(i)}", message_id=i, ts=T0 - i))
        await r.dex.wait_for_requests(1)
        task.cancel()  # the grace ran out
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(spool.read_text().splitlines()) == 5  # 2 in flight + 3 queued
        r.dex.release()

        second = r.spooling(spool, s)
        stop = asyncio.Event()
        task = asyncio.create_task(second.run(stop))
        wanted = dict.fromkeys([mint(i) for i in range(5)], 1)
        for _ in range(200):
            await asyncio.sleep(0.01)
            await second.drain()
            await second.retry_deferred()
            if await memory.counts(list(wanted)) == wanted:
                break
        assert await memory.counts(list(wanted)) == wanted
        stop.set()
        await task
        assert not spool.exists()
