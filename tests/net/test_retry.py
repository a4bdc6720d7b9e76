"""The retry policy: attempts, a deadline on the injected clock, Retry-After hints, the parser."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime, formatdate

import pytest

from callsbot.clock import FakeClock
from callsbot.net.retry import Attempt, RetryPolicy, parse_retry_after, retry_call
from tests.net.server import ClockSleep


class Flaky(Exception):
    """Worth another attempt."""


class Flakier(Flaky):
    """A subclass: caught by ``on=Flaky`` too."""


class Broken(Exception):
    """Not worth another attempt."""


class Script:
    """An attempt function: raises the scripted exceptions in order, then returns ``done``."""

    def __init__(self, *failures: BaseException, spend: float = 0.0, clock: FakeClock) -> None:
        self.failures = list(failures)
        self.spend = spend
        self.clock = clock
        self.seen: list[Attempt] = []
        self.started: list[float] = []

    async def __call__(self, attempt: Attempt) -> str:
        self.seen.append(attempt)
        self.started.append(self.clock.time())
        self.clock.advance(self.spend)  # time the attempt itself takes
        if self.failures:
            raise self.failures.pop(0)
        return "done"


def policy(
    attempts: int = 3, deadline: float | None = None, wait_initial: float = 1.0
) -> RetryPolicy:
    """Doubling waits from ``wait_initial``, no jitter: waits a test can predict."""
    return RetryPolicy(
        attempts=attempts,
        deadline=deadline,
        wait_initial=wait_initial,
        wait_max=30.0,
        wait_jitter=0.0,
    )


# -- the policy ---------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_before_jitter() -> None:
    plain = RetryPolicy(attempts=6, wait_initial=0.5, wait_max=3.0)
    assert [plain.backoff(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    tripled = RetryPolicy(attempts=3, wait_initial=1.0, wait_max=100.0, wait_exp_base=3.0)
    assert [tripled.backoff(n) for n in (1, 2, 3)] == [1.0, 3.0, 9.0]
    assert plain.backoff(10_000) == 3.0  # no overflow far down the line


def test_jitter_adds_up_to_wait_jitter_even_at_the_cap() -> None:
    jittered = RetryPolicy(attempts=3, wait_initial=1.0, wait_max=2.0, wait_jitter=0.5)
    firsts = [jittered.backoff(1) for _ in range(200)]
    capped = [jittered.backoff(8) for _ in range(200)]
    assert all(1.0 <= w <= 1.5 for w in firsts)
    assert all(2.0 <= w <= 2.5 for w in capped)
    assert len(set(capped)) > 1  # retries at the cap still spread out


@pytest.mark.parametrize(
    "kw",
    [
        {"attempts": 0},
        {"attempts": 1, "deadline": 0.0},
        {"attempts": 1, "deadline": -1.0},
        {"attempts": 1, "wait_initial": -0.1},
        {"attempts": 1, "wait_max": float("nan")},
        {"attempts": 1, "wait_jitter": -1.0},
    ],
)
def test_policy_rejects_impossible_values(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=list(kw)[-1]):  # names the offending field
        RetryPolicy(**kw)  # type: ignore[arg-type]


# -- a retry run --------------------------------------------------------------------------------


async def test_retries_until_success_with_backoff_waits(
    clock: FakeClock, sleep: ClockSleep
) -> None:
    fn = Script(Flaky("one"), Flakier("two"), clock=clock)
    result = await retry_call(fn, on=Flaky, policy=policy(), clock=clock, sleep=sleep)
    assert result == "done"
    assert [a.number for a in fn.seen] == [1, 2, 3]
    assert sleep.calls == [1.0, 2.0]


async def test_attempts_exhausted_reraises_the_last_error(
    clock: FakeClock, sleep: ClockSleep
) -> None:
    last = Flaky("third")
    fn = Script(Flaky("first"), Flaky("second"), last, Flaky("never raised"), clock=clock)
    with pytest.raises(Flaky) as info:
        await retry_call(fn, on=Flaky, policy=policy(attempts=3), clock=clock, sleep=sleep)
    assert info.value is last
    assert len(fn.seen) == 3
    assert len(sleep.calls) == 2  # no wait after the last attempt


async def test_one_attempt_means_no_retry(clock: FakeClock, sleep: ClockSleep) -> None:
    fn = Script(Flaky("x"), clock=clock)
    with pytest.raises(Flaky):
        await retry_call(fn, on=Flaky, policy=policy(attempts=1), clock=clock, sleep=sleep)
    assert len(fn.seen) == 1
    assert sleep.calls == []


async def test_errors_not_in_on_are_not_retried(clock: FakeClock, sleep: ClockSleep) -> None:
    fn = Script(Broken("final"), clock=clock)
    with pytest.raises(Broken):
        await retry_call(fn, on=Flaky, policy=policy(attempts=5), clock=clock, sleep=sleep)
    assert len(fn.seen) == 1
    assert sleep.calls == []
    # A base class of ``on`` is not caught either: only the types named (and subclasses).
    base = Script(Exception("base"), clock=clock)
    with pytest.raises(Exception, match="base"):
        await retry_call(base, on=Flakier, policy=policy(attempts=5), clock=clock, sleep=sleep)
    assert len(base.seen) == 1


async def test_on_takes_a_tuple_of_types(clock: FakeClock, sleep: ClockSleep) -> None:
    fn = Script(Flaky("a"), Broken("b"), clock=clock)
    result = await retry_call(
        fn, on=(Flaky, Broken), policy=policy(attempts=3), clock=clock, sleep=sleep
    )
    assert result == "done"
    assert len(fn.seen) == 3


async def test_deadline_is_reached_on_the_fake_clock(clock: FakeClock, sleep: ClockSleep) -> None:
    # Waits 1, 2, 4 put attempts at +0, +1, +3, +7; the next would start at +15, past +10.
    fn = Script(*[Flaky(str(i)) for i in range(100)], clock=clock)
    started = time.monotonic()
    with pytest.raises(Flaky):
        await retry_call(
            fn, on=Flaky, policy=policy(attempts=100, deadline=10.0), clock=clock, sleep=sleep
        )
    assert [t - fn.started[0] for t in fn.started] == [0.0, 1.0, 3.0, 7.0]
    assert sleep.calls == [1.0, 2.0, 4.0]
    assert time.monotonic() - started < 5.0  # simulated seconds, never slept on the wall clock


async def test_time_spent_in_attempts_counts_towards_the_deadline(
    clock: FakeClock, sleep: ClockSleep
) -> None:
    fn = Script(*[Flaky(str(i)) for i in range(10)], spend=6.0, clock=clock)
    with pytest.raises(Flaky):
        await retry_call(
            fn,
            on=Flaky,
            policy=policy(attempts=10, deadline=10.0, wait_initial=0.0),
            clock=clock,
            sleep=sleep,
        )
    assert [t - fn.started[0] for t in fn.started] == [0.0, 6.0]  # a third would start at +12


async def test_each_attempt_knows_the_run_deadline(clock: FakeClock, sleep: ClockSleep) -> None:
    start = clock.time()
    fn = Script(Flaky("x"), clock=clock)
    await retry_call(fn, on=Flaky, policy=policy(deadline=20.0), clock=clock, sleep=sleep)
    assert [(a.number, a.deadline) for a in fn.seen] == [(1, start + 20.0), (2, start + 20.0)]
    unbounded = Script(clock=clock)
    await retry_call(unbounded, on=Flaky, policy=policy(), clock=clock, sleep=sleep)
    assert unbounded.seen == [Attempt(1, None)]


class Slow(Flaky):
    def __init__(self, retry_after: float | None) -> None:
        super().__init__(f"retry after {retry_after}")
        self.retry_after = retry_after


def slow_hint(exc: BaseException) -> float | None:
    return exc.retry_after if isinstance(exc, Slow) else None


async def test_wait_hint_replaces_the_backoff(clock: FakeClock, sleep: ClockSleep) -> None:
    fn = Script(Slow(7.0), Slow(None), Slow(0.0), clock=clock)
    result = await retry_call(
        fn,
        on=Flaky,
        policy=policy(attempts=4, wait_initial=1.0),
        clock=clock,
        sleep=sleep,
        wait_hint=slow_hint,
    )
    assert result == "done"
    assert sleep.calls == [7.0, 2.0, 0.0]  # the hint; the backoff (no hint); a hint of zero


async def test_a_hinted_wait_past_the_deadline_is_not_started(
    clock: FakeClock, sleep: ClockSleep
) -> None:
    fn = Script(Slow(60.0), clock=clock)
    with pytest.raises(Slow):
        await retry_call(
            fn,
            on=Flaky,
            policy=policy(attempts=5, deadline=20.0),
            clock=clock,
            sleep=sleep,
            wait_hint=slow_hint,
        )
    assert len(fn.seen) == 1
    assert sleep.calls == []


async def test_each_retry_is_logged_with_the_name_and_reason(
    clock: FakeClock, sleep: ClockSleep, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="callsbot.net.retry")
    fn = Script(Flaky("HTTP 503"), clock=clock)
    await retry_call(fn, on=Flaky, policy=policy(), clock=clock, sleep=sleep, name="peer")
    [record] = caplog.records
    assert record.getMessage() == "peer: attempt 1/3 failed (HTTP 503); retrying in 1.0s"


# -- Retry-After ----------------------------------------------------------------------------------

NOW = 1_700_000_000.0


def test_parse_retry_after_seconds() -> None:
    assert parse_retry_after("7", NOW) == 7.0
    assert parse_retry_after(" 2.5 ", NOW) == 2.5
    assert parse_retry_after("5", now=NOW) == 5.0
    assert parse_retry_after("-3", now=NOW) == 0.0
    assert parse_retry_after("-5", NOW) == 0.0


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run in a local zone 9 h from UTC, so reading a date as local time shows."""
    monkeypatch.setenv("TZ", "JST-9")  # POSIX form: needs no tz database
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_from_utc")
def test_parse_retry_after_http_date() -> None:
    assert parse_retry_after(formatdate(NOW + 30, usegmt=True), NOW) == pytest.approx(30.0)
    assert parse_retry_after(formatdate(NOW - 30, usegmt=True), NOW) == 0.0
    past = format_datetime(datetime.fromtimestamp(NOW - 50, UTC), usegmt=True)
    assert parse_retry_after(past, now=NOW) == 0.0
    # "-0000" means "no zone information"; RFC 9110 dates are GMT, not the local zone.
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:40 -0000", NOW) == pytest.approx(20.0)
    assert parse_retry_after("Tue, 14 Nov 2023 23:13:40 +0100", NOW) == pytest.approx(20.0)


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "nan", "inf", "1e400", "Tue, 99"])
def test_parse_retry_after_unreadable_is_none(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None
