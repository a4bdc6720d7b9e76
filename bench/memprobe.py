"""Resident-memory growth of a MemoryStore, measured in a fresh interpreter.

Run by ``bench.run`` as ``python -m bench.memprobe TOKENS GROUPS``; prints one JSON object.
A fresh process keeps the other cases' freed-but-retained heap out of the figure.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import sys
import time

import base58

from callsbot.clock import SystemClock
from callsbot.store.memory import MemoryStore

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


async def fill(store: MemoryStore, tokens: int, groups: list[str], seed: int) -> None:
    rng = random.Random(seed)
    ts = int(time.time())
    for _ in range(tokens):
        # Made here so that only the store keeps the token string alive, as in production.
        token = base58.b58encode(rng.randbytes(32)).decode()
        for group in groups:
            await store.record(token, group, ts)


def main(argv: list[str]) -> int:
    tokens = int(argv[0]) if argv else 100_000
    group_count = int(argv[1]) if len(argv) > 1 else 3
    groups = [f"@call_group_{i}" for i in range(group_count)]
    store = MemoryStore(window=3600, clock=SystemClock())
    loop = asyncio.new_event_loop()
    try:
        # Warm the interpreter's allocators with the same code path on a throw-away store.
        loop.run_until_complete(fill(MemoryStore(window=3600, clock=SystemClock()), 100, groups, 1))
        gc.collect()
        before = rss_bytes()
        started = time.perf_counter()
        loop.run_until_complete(fill(store, tokens, groups, 2))
        elapsed = time.perf_counter() - started
        gc.collect()
        after = rss_bytes()
    finally:
        loop.close()
    members = sum(len(m) for m in store._tokens.values())
    print(
        json.dumps(
            {
                "tokens": tokens,
                "groups": group_count,
                "members": members,
                "rss_before": before,
                "rss_after": after,
                "bytes_per_member": (after - before) / members,
                "fill_seconds": elapsed,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
