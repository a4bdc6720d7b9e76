"""Fixtures of the outcome tests: the clock at the rig's moment, a local GeckoTerminal on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from callsbot.clock import FakeClock
from callsbot.testing.geckoterminal import FakeGeckoTerminal
from tests.outcomes.rig import T


@pytest.fixture
def clock() -> FakeClock:
    """The rig's moment (a module may move it with its own ``clock``)."""
    return FakeClock(float(T))


@pytest.fixture
async def gecko(clock: FakeClock) -> AsyncIterator[FakeGeckoTerminal]:
    """A local GeckoTerminal on the test's clock."""
    async with FakeGeckoTerminal(clock=clock) as server:
        yield server
