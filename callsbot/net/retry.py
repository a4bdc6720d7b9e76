"""The one retry policy: tenacity underneath, explicit exception types, attempts and a deadline.

Every adapter that asks a peer again after a failure goes through :func:`retry_call`. What to
retry is always spelled out (``on=``: exception types, nothing else is caught), and a retry run
ends at whichever comes first: the last of :attr:`RetryPolicy.attempts`, or an attempt that could
not *start* before :attr:`RetryPolicy.deadline`. Both the deadline and the waits run on the
injected :class:`~callsbot.clock.Clock` and the injected ``sleep``: tenacity's own
``stop_after_delay`` reads the monotonic wall clock, which a :class:`~callsbot.clock.FakeClock`
cannot move, so tests and the demo would either sleep for real or never reach the deadline.

A server that says how long to wait (``Retry-After`` as seconds or an HTTP date, Telegram's
``retry_after``) is honoured through ``wait_hint``: the hint replaces the backoff for that wait,
and the deadline sees it, so a wait that would end past the deadline is not started.
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import math
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from callsbot.clock import Clock

log = logging.getLogger(__name__)

T = TypeVar("T")

#: An injectable ``asyncio.sleep``; tests pass one that moves a FakeClock.
Sleep = Callable[[float], Awaitable[None]]
#: Exception types a retry run catches (one type or a tuple, as ``except`` takes them).
ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]
#: Seconds the server asked us to wait before the next attempt, or ``None`` for "use the backoff".
WaitHint = Callable[[BaseException], float | None]


def _at_least_one(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, not {value}")


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"{attribute.name} must be >= 0, not {value}")


def _positive_or_none(
    _: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be > 0 or None, not {value}")


@attrs.frozen
class RetryPolicy:
    """How often and for how long one operation is tried.

    The wait after the ``n``-th failed attempt is
    ``min(wait_initial * wait_exp_base ** (n - 1), wait_max) + uniform(0, wait_jitter)``: the cap
    applies before the jitter, so retries that all reached the cap still spread out.

    Attributes:
        attempts: most attempts in one run, the first included (1 means "never retry").
        deadline: seconds after the first attempt started by which the last attempt must have
            started, on the injected clock; ``None`` for no time limit.
        wait_initial: the first backoff wait, seconds.
        wait_max: the longest backoff wait before jitter, seconds.
        wait_jitter: up to this many random seconds are added to every backoff wait.
        wait_exp_base: the factor between consecutive backoff waits.
    """

    attempts: int = attrs.field(validator=_at_least_one)
    deadline: float | None = attrs.field(default=None, validator=_positive_or_none)
    wait_initial: float = attrs.field(default=1.0, validator=_non_negative)
    wait_max: float = attrs.field(default=30.0, validator=_non_negative)
    wait_jitter: float = attrs.field(default=0.0, validator=_non_negative)
    wait_exp_base: float = attrs.field(default=2.0, validator=_non_negative)

    def backoff(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (jitter included)."""
        exponent = max(failures - 1, 0)
        try:
            base = self.wait_initial * self.wait_exp_base**exponent
        except OverflowError:
            base = math.inf
        jitter = random.uniform(0.0, self.wait_jitter) if self.wait_jitter else 0.0
        return min(base, self.wait_max) + jitter


@attrs.frozen
class Attempt:
    """What one attempt knows about its run.

    Attributes:
        number: 1 for the first attempt, 2 for the first retry, ...
        deadline: the run's deadline as a clock time, ``None`` when the policy has none. Work
            inside the attempt that waits (a shared cool-down, say) can fail fast instead of
            waiting past it.
    """

    number: int
    deadline: float | None


class _StopAtDeadline(stop_base):
    """Stop when the next attempt could not start before ``deadline`` on ``clock``."""

    def __init__(self, clock: Clock, deadline: float) -> None:
        self._clock = clock
        self._deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        next_start = self._clock.time() + (retry_state.upcoming_sleep or 0.0)
        return next_start >= self._deadline


class _Wait(wait_base):
    """The policy's backoff, unless ``hint`` knows better for the failure at hand."""

    def __init__(self, policy: RetryPolicy, hint: WaitHint | None) -> None:
        self._policy = policy
        self._hint = hint

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if self._hint is not None and exc is not None:
            hinted = self._hint(exc)
            if hinted is not None:
                return max(hinted, 0.0)
        return self._policy.backoff(retry_state.attempt_number)


def _log_before_sleep(name: str, policy: RetryPolicy) -> Callable[[RetryCallState], None]:
    def before_sleep(retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        log.warning(
            "%s: attempt %d/%d failed (%s); retrying in %.1fs",
            name,
            retry_state.attempt_number,
            policy.attempts,
            exc,
            retry_state.upcoming_sleep,
        )

    return before_sleep


async def retry_call(
    fn: Callable[[Attempt], Awaitable[T]],
    *,
    on: ExceptionTypes,
    policy: RetryPolicy,
    clock: Clock,
    sleep: Sleep,
    wait_hint: WaitHint | None = None,
    name: str = "retry",
) -> T:
    """Call ``fn`` until it returns, retrying failures of the types in ``on`` per ``policy``.

    Args:
        fn: one attempt; it receives the :class:`Attempt` (number and deadline).
        on: the exception types worth another attempt. Anything else propagates at once.
        policy: attempts, deadline and backoff.
        clock: "now" for the deadline.
        sleep: how to wait between attempts.
        wait_hint: seconds the failure itself asks to wait (a Retry-After), replacing the
            backoff for that wait; ``None`` from the hint means "use the backoff".
        name: how log lines name the operation (never a URL: it may hold a secret).

    Returns:
        What the first successful attempt returned.

    Raises:
        BaseException: the last attempt's exception once attempts or time ran out, or at once
            any exception not in ``on``.
    """
    deadline = None if policy.deadline is None else clock.time() + policy.deadline
    stop: stop_base = stop_after_attempt(policy.attempts)
    if deadline is not None:
        stop = stop | _StopAtDeadline(clock, deadline)
    retrying = AsyncRetrying(
        stop=stop,
        wait=_Wait(policy, wait_hint),
        retry=retry_if_exception_type(on),
        sleep=sleep,
        before_sleep=_log_before_sleep(name, policy),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            result = await fn(Attempt(attempt.retry_state.attempt_number, deadline))
    return result


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Args:
        value: the header's value, ``None`` when absent.
        now: the clock's unix time, to turn a date into a delay.

    Returns:
        The delay in seconds (never negative: a date in the past means "now"), or ``None`` when
        the header is absent or unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" or no zone: RFC 9110 dates are GMT anyway
        when = when.replace(tzinfo=datetime.UTC)
    return max(when.timestamp() - now, 0.0)
