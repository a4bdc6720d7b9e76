"""Issue 17, item 1: a crash while market data is away loses no mention.

The aggregator runs as a real process over a real redis-server, reading a Telegram timeline
fixed in time (``run --replay`` of a recording with an epoch: what was posted before a process
started is history, as Telegram keeps it). DexScreener answers 503, so every mention waits for
market data; the aggregator is killed with SIGKILL, market data comes back, and a new aggregator
starts. Its catch-up must read again every message the first one had not finished: each of the
recording's mentions ends up in Redis, exactly once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from callsbot.sources.replay import channel_peer_id
from callsbot.store import keys
from callsbot.testing.dexscreener import FakeDexScreener, make_pair
from tests.faults.procs import (
    CallsbotProcess,
    child_env,
    redis_client,
    redis_server,
    replay_args,
    running,
    timeline,
    wait_until,
)
from tests.tg import mint

GROUPS = [{"ref": f"@chan{i}", "channel_id": 3000 + i, "username": f"chan{i}"} for i in range(3)]
MESSAGES = 60
EVERY = 0.04  # the calls span 2.4 s


def calls() -> list[dict[str, Any]]:
    """One new token per message, round-robin over the groups."""
    return [
        {
            "group": GROUPS[i % len(GROUPS)]["ref"],
            "id": i // len(GROUPS) + 1,
            "at": round(i * EVERY, 3),
            "text": f"call #{i}\nCA: {mint(30_000 + i)}",
        }
        for i in range(MESSAGES)
    ]


def claim(message: dict[str, Any], token: str) -> str:
    channel = next(g["channel_id"] for g in GROUPS if g["ref"] == message["group"])
    return keys.claim(keys.seen_mention(channel_peer_id(channel), message["id"], token))


@pytest.mark.timeout(60)
async def test_sigkill_while_market_data_is_down_loses_no_mention(tmp_path: Path) -> None:
    messages = calls()
    timeline(tmp_path / "recording.json", GROUPS, messages, start_in=0.5)
    wanted = {claim(m, mint(30_000 + i)) for i, m in enumerate(messages)}
    async with redis_server() as server, FakeDexScreener() as dex:
        for i in range(MESSAGES):
            dex.add_pair(make_pair(mint(30_000 + i)))
        dex.fail_next(503, times=1_000_000)
        db = redis_client(server.url)
        env = child_env(
            tmp_path,
            store_url=server.url,
            store_heartbeat_interval="0.2",
            telegram_groups=",".join(g["ref"] for g in GROUPS),
            dexscreener_url=dex.url,
            dexscreener_requests_per_minute="60000",
            dexscreener_max_attempts="1",
        )
        args = ["--role", "aggregator", *replay_args(tmp_path)]
        first = await CallsbotProcess.start("aggregator-1", args, env, tmp_path)
        try:
            async with running([first]):

                def asked() -> int:
                    return len({a for r in dex.requests for a in r.addresses})

                await wait_until(
                    lambda: asked() >= 25, within=20, what="25 calls asked", procs=[first]
                )
                # A heartbeat after that: the cursors were flushed at least once since.
                since = int(time.time())

                async def beat_after() -> bool:
                    beat = await db.get(keys.heartbeat("aggregator"))
                    return beat is not None and int(beat) > since

                await wait_until(beat_after, within=10, what="a heartbeat", procs=[first])
                assert [k async for k in db.scan_iter(keys.claim("msg:*"))] == []
                await first.kill()  # SIGKILL: no spool, nothing saved on the way out
            assert first.returncode == -9

            dex.heal()
            second = await CallsbotProcess.start("aggregator-2", args, env, tmp_path)
            async with running([second]):

                async def all_recorded() -> bool:
                    found = {k async for k in db.scan_iter(keys.claim("msg:*"), count=1000)}
                    return found >= wanted

                await wait_until(
                    all_recorded, within=25, what="every mention in Redis", procs=[second]
                )
                assert await second.terminate(within=15) == 0, str(second)
            found = {k async for k in db.scan_iter(keys.claim("msg:*"), count=1000)}
            assert found == wanted, f"missing {len(wanted - found)}, extra {len(found - wanted)}"
            pipe = db.pipeline(transaction=False)
            for i, m in enumerate(messages):
                pipe.zscore(keys.token(mint(30_000 + i)), "@" + m["group"].lstrip("@"))
            assert None not in await pipe.execute(), "a claimed message without its mention"
            assert any(m.startswith("caught up ") for m in second.messages()), str(second)
        finally:
            await db.aclose()
