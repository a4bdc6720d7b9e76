"""Fixtures of the net tests: a scripted local server and a clock-moving sleep."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from callsbot.clock import FakeClock
from tests.net.server import ClockSleep, ScriptedServer


@pytest.fixture
def sleep(clock: FakeClock) -> ClockSleep:
    return ClockSleep(clock)


@pytest.fixture
async def server(clock: FakeClock) -> AsyncIterator[ScriptedServer]:
    started = await ScriptedServer(clock).start()
    yield started
    await started.close()
