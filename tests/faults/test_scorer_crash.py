"""Issue 17, items 2 and 4: the scorer handles each buy once, forgets nothing on a restart, and
never repeats an alert, whatever is killed.

Real ``python -m callsbot run --role scorer`` processes over a real redis-server, with the local
DexScreener, Cielo feed and Telegram Bot API (the only alert sink: an alert counts as sent when
the Bot API took it). The test process writes the mentions into Redis itself, as the aggregator
would. The feed keeps serving old buys on its newest page, as the real one does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from callsbot.events import AlertSent
from callsbot.history.sql import SQLHistory
from callsbot.store import keys
from callsbot.store.redis import RedisStore
from callsbot.testing.cielo import API_KEY, FakeCielo, envelope, swap
from callsbot.testing.dexscreener import FakeDexScreener, make_pair
from callsbot.testing.redis_server import RedisServer
from callsbot.testing.telegram_bot import CHAT_ID, FAKE_TOKEN, FakeTelegramBot
from tests.conftest import mark_window_whole
from tests.faults.procs import (
    CallsbotProcess,
    child_env,
    redis_client,
    redis_server,
    running,
    store_of,
    wait_until,
)
from tests.tg import mint

#: With make_pair's defaults and a $2.5k buy the base score is 6; RICH pairs make it 9.
RICH = {"liquidity": 150_000.0, "volume_h24": 600_000.0}
OTHER_WALLET = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"


def buy(tx: str, token: str, *, wallet: str | None = None) -> dict[str, Any]:
    extra = {} if wallet is None else {"wallet": wallet}
    return swap(tx, token, usd=2500.0, ts=int(time.time()), symbol=token[:4], **extra)


def scorer_env(
    tmp_path: Path, url: str, dex: FakeDexScreener, cielo: FakeCielo, bot: FakeTelegramBot
) -> dict[str, str]:
    return child_env(
        tmp_path,
        store_url=url,
        store_heartbeat_interval="0.2",
        store_connect_timeout="0.3",
        store_socket_timeout="0.5",
        store_retries="0",
        dexscreener_url=dex.url,
        dexscreener_requests_per_minute="60000",
        dexscreener_max_attempts="1",
        cielo_url=cielo.url,
        cielo_api_key=API_KEY,
        cielo_poll_seconds="0.2",
        cielo_max_attempts="1",
        cielo_claim_lease_seconds="2",
        scoring_watch_tick_seconds="0.2",
        scoring_alert_lease_seconds="1.5",
        tg_bot_token=FAKE_TOKEN,
        tg_bot_api_url=bot.url,
        tg_bot_chat_id=CHAT_ID,
        tg_bot_max_attempts="1",
        alerts_jsonl_path="",
        alerts_log="false",
    )


def sent(bot: FakeTelegramBot, token: str) -> int:
    """Alerts for ``token`` the Bot API took."""
    return sum(token in m["visible"] for m in bot.sent)


async def polls(cielo: FakeCielo, procs: list[CallsbotProcess], n: int) -> None:
    """Wait until the feed was polled ``n`` more times."""
    before = len(cielo.requests)
    await wait_until(
        lambda: len(cielo.requests) >= before + n, within=10, what=f"{n} polls", procs=procs
    )


@contextlib.asynccontextmanager
async def fakes() -> AsyncIterator[tuple[FakeDexScreener, FakeCielo, FakeTelegramBot]]:
    async with FakeDexScreener() as dex, contextlib.AsyncExitStack() as stack:
        cielo = await FakeCielo().start()
        stack.push_async_callback(cielo.close)
        bot = await FakeTelegramBot().start()
        stack.push_async_callback(bot.close)
        yield dex, cielo, bot


@contextlib.asynccontextmanager
async def aggregator_alive(store: RedisStore) -> AsyncIterator[None]:
    """Beat as the aggregator would, so consensus is never "unknown" in these tests."""

    async def beat() -> None:
        while True:
            await store.beat("aggregator", 5)
            await asyncio.sleep(0.5)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def call(store: RedisStore, token: str, *groups: str) -> None:
    for group in groups:
        await store.record(token, group, time.time())


@pytest.mark.timeout(60)
async def test_one_alert_per_token_across_a_sigterm_and_a_sigkill_mid_send(tmp_path: Path) -> None:
    parked, watched = mint(41_002), mint(41_003)
    async with (
        redis_server() as server,
        fakes() as (dex, cielo, bot),
        store_of(server.url) as store,
        aggregator_alive(store),
    ):
        mark_window_whole(server)  # no aggregator process here: its keeper would do this
        for token in (parked, watched):
            dex.add_pair(make_pair(token, base_symbol=token[:4]))
        await call(store, parked, "@a", "@b", "@c")  # 6 + 2: alerts once market data says so
        await call(store, watched, "@a")  # 6 + 0: watched, until more groups call it
        env = scorer_env(tmp_path, server.url, dex, cielo, bot)  # cooldown: 3600 s
        args = ["--role", "scorer"]

        # 1. A buy arrives while market data is away: it waits for market data. SIGTERM.
        dex.fail_next(503, times=1_000_000)
        cielo.pages = {None: envelope([buy("tx-p", parked)])}
        first = await CallsbotProcess.start("scorer-1", args, env, tmp_path)
        async with running([first]):
            await wait_until(
                lambda: sum(parked in r.addresses for r in dex.requests) >= 2,
                within=15,
                what="the buy asked for again: it waits for market data",
                procs=[first],
            )
            await polls(cielo, [first], 2)
            assert await first.terminate(within=15) == 0, str(first)

        # 2. The next scorer takes the buy back and alerts it, but the Bot API hangs; a token
        #    below the threshold is watched meanwhile. SIGKILL in the middle of the send.
        dex.heal()
        bot.hang_next()
        cielo.pages = {None: envelope([buy("tx-w", watched), buy("tx-p", parked)])}
        second = await CallsbotProcess.start("scorer-2", args, env, tmp_path)
        async with running([second]):
            await wait_until(
                lambda: (
                    bot.hanging == 1
                    and second.count(f"{watched} scored 6.0 (< 7.0), watching") >= 1
                ),
                within=15,
                what="the alert being sent and the token watched",
                procs=[second],
            )
            # (the scorer saved the watched token before it began the send that hangs)
            await second.kill()
        bot.release()  # the killed send was never delivered
        assert bot.sent == []
        await call(store, watched, "@b", "@c")  # late consensus: 6 + 2

        # 3. The next scorer retries the alert after the send lease (1.5 s), not the cooldown,
        #    and takes the watched token back: both are alerted, once.
        restarted = time.monotonic()
        third = await CallsbotProcess.start("scorer-3", args, env, tmp_path)
        async with running([third]):
            await wait_until(
                lambda: sent(bot, parked) == 1 and sent(bot, watched) == 1,
                within=15,
                what="the retried and the late alert",
                procs=[third],
            )
            took = time.monotonic() - restarted
            await polls(cielo, [third], 3)
            assert await third.terminate(within=15) == 0, str(third)

    assert took < 15  # the send lease, not the hour of cooldown
    assert [sent(bot, t) for t in (parked, watched)] == [1, 1]
    assert len(bot.sent) == 2


async def history_alerts(path: Path) -> list[str]:
    """Tokens of the alerts in the processes' shared history (the default SQLite file)."""
    history = SQLHistory(f"sqlite:///{path / 'callsbot-history.sqlite3'}")
    try:
        return [
            e.alert.token
            async for e in history.events(kinds=[AlertSent.kind])
            if isinstance(e, AlertSent)
        ]
    except Exception:  # not created yet, or locked by a writer right now
        return []
    finally:
        await history.aclose()


@pytest.mark.timeout(60)
async def test_racing_scorers_a_redis_kill_and_a_restart_alert_each_token_once(
    tmp_path: Path,
) -> None:
    tokens = [mint(43_000 + i) for i in range(4)]
    late = mint(43_100)
    async with fakes() as (dex, cielo, bot):
        for token in (*tokens, late):
            dex.add_pair(make_pair(token, base_symbol=token[:4], **RICH))  # 9: alerts even solo
        server = RedisServer()  # no persistence: a restart comes back empty
        await asyncio.to_thread(server.start)
        db = redis_client(server.url)
        try:
            env = scorer_env(tmp_path, server.url, dex, cielo, bot)
            args = ["--role", "scorer"]
            # Two buys of each token, two scorers polling the same feed: they race for each.
            page = [
                buy(f"tx-{t[:6]}-{n}", t, wallet=w)
                for t in tokens
                for n, w in ((1, None), (2, OTHER_WALLET))
            ]
            cielo.pages = {None: envelope(page)}
            one = await CallsbotProcess.start("scorer-1", args, env, tmp_path)
            two = await CallsbotProcess.start("scorer-2", args, env, tmp_path)
            procs = [one, two]
            async with running(procs):
                await wait_until(
                    lambda: all(sent(bot, t) == 1 for t in tokens),
                    within=20,
                    what="an alert per token",
                    procs=procs,
                )

                async def in_history(n: int) -> bool:
                    return len(await history_alerts(tmp_path)) >= n

                await wait_until(
                    lambda: in_history(len(tokens)), within=10, what="history", procs=procs
                )
                await two.kill()

                # Redis dies; a new buy is alerted meanwhile (consensus unknown, base 9).
                await db.aclose()
                await asyncio.to_thread(server.stop)
                cielo.pages = {None: envelope([buy("tx-late", late), *page])}
                await wait_until(
                    lambda: sent(bot, late) == 1, within=15, what="the late alert", procs=[one]
                )
                await wait_until(
                    lambda: in_history(len(tokens) + 1), within=10, what="history", procs=[one]
                )
                # Redis comes back empty: what was claimed while it was away is written back.
                await asyncio.to_thread(server.start)
                db = redis_client(server.url)

                async def written_back() -> bool:
                    found = await db.exists(
                        keys.claim(keys.alert_claim(late)), keys.claim(keys.seen_tx("tx-late"))
                    )
                    return bool(found == 2)

                await wait_until(written_back, within=15, what="the write-back", procs=[one])

                # A scorer started now learns the recent alerts before sending anything.
                three = await CallsbotProcess.start("scorer-3", args, env, tmp_path)
                procs = [one, three]
                procs_running = running([three])
                async with procs_running:
                    await wait_until(
                        lambda: three.count("learned from the history") >= 1,
                        within=15,
                        what="the restarted scorer's start",
                        procs=procs,
                    )
                    await polls(cielo, procs, 6)
                    codes = [await p.terminate(within=15) for p in procs]
                    assert codes == [0, 0], "\n".join(map(str, procs))
        finally:
            await db.aclose()
            await asyncio.to_thread(server.stop)
    assert [sent(bot, t) for t in (*tokens, late)] == [1] * (len(tokens) + 1), bot.sent
    assert len(bot.sent) == len(tokens) + 1
