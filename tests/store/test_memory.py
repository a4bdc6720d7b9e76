"""What only the memory backend has: it must not grow with tokens nobody mentions any more."""

from __future__ import annotations

from callsbot.clock import FakeClock
from callsbot.store.memory import MemoryStore


async def test_tokens_that_left_the_window_are_swept_from_memory(clock: FakeClock) -> None:
    store = MemoryStore(window=3600, clock=clock)
    for i in range(1000):
        await store.record(f"Old{i}", "@g", clock.time())
    clock.advance(3601)
    await store.record("New", "@g", clock.time())
    assert set(store._tokens) == {"New"}


async def test_expired_claims_are_swept(clock: FakeClock) -> None:
    store = MemoryStore(window=3600, clock=clock)
    for i in range(5000):
        assert await store.claim(f"k{i}", 10)
    clock.advance(11)
    for i in range(4000):
        assert await store.claim(f"fresh{i}", 10)
    # The 5000 expired claims went at the next sweep; only live ones are kept.
    assert len(store._claims) <= 4000
