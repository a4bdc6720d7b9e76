"""Supervision: a crashing loop restarts with backoff and a metric; fatal errors end it."""

from __future__ import annotations

import asyncio

import pytest

from callsbot.clock import FakeClock
from callsbot.errors import ConfigError, FatalError
from callsbot.metrics import Metrics
from callsbot.runtime.service import supervise


async def test_a_crashing_loop_is_restarted_and_counted(clock: FakeClock) -> None:
    metrics = Metrics.create()
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) < 3:
            raise RuntimeError("boom")

    await supervise(
        "flaky", flaky, stop=asyncio.Event(), clock=clock, metrics=metrics, backoff_start=0.001
    )
    assert runs == [0, 1, 2]
    restarts = metrics.registry.get_sample_value("callsbot_loop_restarts_total", {"loop": "flaky"})
    assert restarts == 2


async def test_a_crash_does_not_stop_the_sibling_loops(clock: FakeClock) -> None:
    metrics = Metrics.create()
    stop = asyncio.Event()
    ticks: list[int] = []

    async def crashes() -> None:
        raise RuntimeError("always")

    async def steady() -> None:
        while len(ticks) < 20:
            ticks.append(1)
            await asyncio.sleep(0.001)
        stop.set()

    async with asyncio.TaskGroup() as tg:
        for name, loop in (("crashes", crashes), ("steady", steady)):
            tg.create_task(
                supervise(name, loop, stop=stop, clock=clock, metrics=metrics, backoff_start=0.001)
            )
    assert len(ticks) == 20
    crashed = metrics.registry.get_sample_value("callsbot_loop_restarts_total", {"loop": "crashes"})
    assert crashed is not None
    assert crashed >= 2


async def test_a_fatal_error_is_not_retried(clock: FakeClock) -> None:
    calls: list[int] = []

    async def misconfigured() -> None:
        calls.append(1)
        raise ConfigError("telegram.replay", "no such file")

    with pytest.raises(FatalError, match=r"telegram\.replay"):
        await supervise(
            "x", misconfigured, stop=asyncio.Event(), clock=clock, metrics=Metrics.create()
        )
    assert calls == [1]
