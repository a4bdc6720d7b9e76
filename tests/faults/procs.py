"""What the fault suite's process tests share: the process helpers of the integration test, a
Telegram timeline fixed in time (so a restarted aggregator catches up as from real Telegram),
and a window store the test process writes mentions and heartbeats into."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from callsbot.clock import SystemClock
from callsbot.store.redis import RedisStore, build_client
from tests.test_integration import (
    CallsbotProcess,
    child_env,
    redis_client,
    redis_server,
    replay_args,
    running,
    wait_until,
)

__all__ = [
    "CallsbotProcess",
    "child_env",
    "redis_client",
    "redis_server",
    "replay_args",
    "running",
    "store_of",
    "timeline",
    "wait_until",
]


def timeline(
    path: Path, groups: list[dict[str, Any]], messages: list[dict[str, Any]], *, start_in: float
) -> float:
    """Write a recording whose messages are posted ``at`` seconds after an epoch ``start_in``
    seconds from now (``run --replay`` then serves what was posted before a process started
    as history); returns the epoch."""
    epoch = time.time() + start_in
    doc = {"epoch": epoch, "groups": groups, "messages": messages}
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return epoch


@contextlib.asynccontextmanager
async def store_of(url: str) -> AsyncIterator[RedisStore]:
    """The window store over ``url`` on the wall clock, as the processes see it."""
    client = build_client(
        url, connect_timeout=1.0, socket_timeout=2.0, retries=1, health_check_interval=0
    )
    async with RedisStore(client, window=3600, clock=SystemClock()) as store:
        yield store
