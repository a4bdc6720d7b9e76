"""Time, injected.

Every component that needs "now" takes a :class:`Clock`. Production uses :class:`SystemClock`;
tests and the demo use :class:`FakeClock` and move time instead of waiting for it.
"""

from __future__ import annotations

import time
from typing import Protocol

import attrs


class Clock(Protocol):
    """Source of the current time."""

    def time(self) -> float:
        """Return unix time in seconds."""
        ...


@attrs.frozen
class SystemClock:
    """The wall clock."""

    def time(self) -> float:
        """Return :func:`time.time`."""
        return time.time()


@attrs.define
class FakeClock:
    """A clock that only moves when told to.

    Args:
        now: the starting unix time in seconds.
    """

    now: float = 1_700_000_000.0

    def time(self) -> float:
        """Return the current fake time."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += seconds

    def set(self, now: float) -> None:
        """Jump to ``now``."""
        self.now = now


def unix_seconds(clock: Clock) -> int:
    """Integer unix seconds: the one place timestamps are rounded (down)."""
    return int(clock.time())
