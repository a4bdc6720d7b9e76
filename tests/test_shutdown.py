"""SIGTERM under load: the process drains what it received, exits 0 and leaves nothing behind.

A recording of 400 calls arrives every 5 ms while DexScreener answers each lookup after 20 ms, so
when SIGTERM lands there are messages queued, lookups in flight and writes pending. Nothing may
be lost: the replay logs how many messages it handed to the listener (``replay: delivered N
messages``; it stops delivering once the process is stopping), and exactly those N messages must
be recorded. Nothing may be left dangling either: no "Task was destroyed", "Unclosed ...",
"never awaited", ResourceWarning or traceback on stderr.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from callsbot.sources.replay import channel_peer_id
from callsbot.store import keys
from callsbot.tasks import until_stopped
from callsbot.testing.cielo import FakeCielo, envelope, swap
from callsbot.testing.dexscreener import FakeDexScreener, make_pair
from callsbot.testing.redis_server import free_port
from tests.test_integration import (
    CallsbotProcess,
    child_env,
    redis_server,
    replay_args,
    running,
    wait_until,
)
from tests.tg import mint

MESSAGES = 400
EVERY = 0.005
GROUPS = [{"ref": f"@group{i}", "channel_id": 2000 + i, "username": f"group{i}"} for i in range(4)]
DELIVERED = re.compile(r"^replay: delivered (\d+) messages$")


def load_recording(path: Path, *, start: float = 0.0) -> list[dict[str, Any]]:
    """400 calls, one new token each, round-robin over four groups, 5 ms apart from ``start``."""
    messages = []
    for i in range(MESSAGES):
        group = GROUPS[i % len(GROUPS)]
        messages.append(
            {
                "group": group["ref"],
                "id": i // len(GROUPS) + 1,
                "at": round(start + i * EVERY, 3),
                "text": f"call #{i}\nCA: {mint(20_000 + i)}",
            }
        )
    path.write_text(json.dumps({"groups": GROUPS, "messages": messages}), encoding="utf-8")
    return messages


def claim_key(message: dict[str, Any], token: str) -> str:
    channel_id = next(g["channel_id"] for g in GROUPS if g["ref"] == message["group"])
    return keys.claim(f"msg:{channel_peer_id(channel_id)}:{message['id']}:{token}")


def delivered(proc: CallsbotProcess) -> int:
    counts = [int(m[1]) for m in map(DELIVERED.match, proc.messages()) if m]
    assert len(counts) == 1, str(proc)
    return counts[0]


def assert_clean(proc: CallsbotProcess) -> None:
    assert proc.bad_output() == [], str(proc)
    noisy = [r for r in proc.records() if r.get("level") in ("warning", "error", "critical")]
    assert noisy == [], str(proc)
    assert proc.messages()[-1] == "callsbot stopped", str(proc)


def slow_market(dex: FakeDexScreener) -> None:
    for i in range(MESSAGES):
        dex.add_pair(make_pair(mint(20_000 + i)))
    dex.slow_next(times=10 * MESSAGES, delay=0.02)


@pytest.mark.timeout(60)
async def test_sigterm_while_delivering_loses_nothing_aggregator_over_redis(
    tmp_path: Path,
) -> None:
    messages = load_recording(tmp_path / "recording.json")
    async with redis_server() as server, FakeDexScreener() as dex:
        slow_market(dex)
        db: aioredis.Redis = aioredis.Redis.from_url(server.url, decode_responses=True)
        env = child_env(
            tmp_path,
            store_url=server.url,
            telegram_groups=",".join(g["ref"] for g in GROUPS),
            dexscreener_url=dex.url,
            dexscreener_requests_per_minute="60000",
        )
        proc = await CallsbotProcess.start(
            "aggregator", ["--role", "aggregator", *replay_args(tmp_path)], env, tmp_path
        )
        try:
            async with running([proc]):

                async def some_landed() -> bool:
                    found = [k async for k in db.scan_iter(keys.claim("msg:*"), count=1000)]
                    return len(found) >= 20

                await wait_until(some_landed, within=20, what="20 calls recorded", procs=[proc])
                assert await proc.terminate(within=20) == 0, str(proc)

            n = delivered(proc)
            assert 20 <= n < MESSAGES, f"SIGTERM must land mid-recording ({n} delivered)"
            got = {k async for k in db.scan_iter(keys.claim("msg:*"), count=1000)}
            want = {claim_key(m, mint(20_000 + i)) for i, m in enumerate(messages[:n])}
            assert got == want, f"missing {len(want - got)}, unexpected {len(got - want)}"
            pipe = db.pipeline(transaction=False)
            for i, m in enumerate(messages[:n]):
                group = f"@{next(g['username'] for g in GROUPS if g['ref'] == m['group'])}"
                pipe.zscore(keys.token(mint(20_000 + i)), group)
            assert None not in await pipe.execute(), "a claimed message without its mention"
            assert_clean(proc)
        finally:
            await db.aclose()


@pytest.mark.timeout(60)
async def test_sigterm_while_delivering_loses_nothing_all_roles_in_one_process(
    tmp_path: Path,
) -> None:
    # The calls start 1.5 s in: first the scorer gets its buys (with the aggregator beating).
    load_recording(tmp_path / "recording.json", start=1.5)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with FakeDexScreener() as dex, aiohttp.ClientSession() as http:
        slow_market(dex)
        cielo = await FakeCielo(api_key="dummy-cielo-key").start()
        try:
            env = child_env(
                tmp_path,
                telegram_groups=",".join(g["ref"] for g in GROUPS),
                dexscreener_url=dex.url,
                dexscreener_requests_per_minute="60000",
                cielo_url=cielo.url,
                cielo_api_key="dummy-cielo-key",
                cielo_poll_seconds="0.2",
                scoring_watch_tick_seconds="0.2",
                store_heartbeat_interval="0.5",
                web_enabled="true",
                web_port=str(port),
                alerts_jsonl_path=str(tmp_path / "alerts.jsonl"),
            )
            proc = await CallsbotProcess.start("all", replay_args(tmp_path), env, tmp_path)
            async with running([proc]):

                async def get(path: str) -> tuple[int, str]:
                    try:
                        async with http.get(base + path) as resp:
                            return resp.status, await resp.text()
                    except aiohttp.ClientConnectionError:
                        return 0, ""

                async def ready() -> bool:
                    status, _ = await get("/readyz")  # store, Telegram, a feed poll
                    _, metrics = await get("/metrics")
                    return status == 200 and 'heartbeat_age_seconds{role="aggregator"}' in metrics

                async def some_landed() -> bool:
                    status, body = await get("/api/consensus")
                    return status == 200 and len(json.loads(body)["tokens"]) >= 20

                await wait_until(ready, within=20, what="/readyz 200", procs=[proc])
                # The scorer has work too: buys of tokens the groups are about to call (scored
                # 6 - 1 = 5 first, then re-scored on every tick as their groups come in).
                cielo.pages = {None: envelope([swap(f"tx{i}", mint(20_000 + i)) for i in range(5)])}
                polls = len(cielo.requests)
                await wait_until(
                    lambda: len(cielo.requests) > polls, within=10, what="a poll", procs=[proc]
                )
                await wait_until(some_landed, within=20, what="20 calls recorded", procs=[proc])
                assert await proc.terminate(within=20) == 0, str(proc)
        finally:
            await cielo.close()

    n = delivered(proc)
    assert 20 <= n < MESSAGES, f"SIGTERM must land mid-recording ({n} delivered)"
    # Memory store: the evidence is the log, one line per recorded mention.
    recorded = [m for m in proc.messages() if m.startswith("mention @group")]
    assert len(recorded) == n
    assert len({m.split()[2] for m in recorded}) == n  # n different tokens
    assert_clean(proc)


async def test_until_stopped_ends_a_loop_that_swallowed_the_first_cancel() -> None:
    """On Python 3.11 ``asyncio.wait_for`` (inside redis-py's send path) can swallow a cancel
    that races with its inner future (CPython gh-86296); the scorer loop then ran on until the
    10 s grace. ``until_stopped`` must end it anyway; here the race is made certain."""
    stop = asyncio.Event()
    ignored: list[str] = []
    running = asyncio.Event()

    async def loop() -> None:
        while True:
            running.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if not ignored:
                    ignored.append("first cancel")  # what wait_for does in the race
                    continue
                raise

    runner = asyncio.create_task(until_stopped(stop, loop()))
    await asyncio.wait_for(running.wait(), 5)
    stop.set()
    async with asyncio.timeout(5):
        await runner
    assert ignored == ["first cancel"]
