"""``python -m callsbot demo``: replay a recorded hour through the real components, in seconds.

The bundled session (``data/session.json``, written by ``scripts/make_demo_session.py``) holds
six call groups' Telegram messages, the Cielo feed items and DexScreener's pairs, all in the
real schemas. The demo is the replay engine (:mod:`callsbot.replay`, docs/backtest.md) over
that session: the real pipeline, window store and scorer on a simulated clock, market data "as
of" each moment from the recorded pairs, the feed's buys handed in at the scorer's polls, the
alerts printed as the Telegram group shows them. No network, no credentials.

Then the day after: the real history recorder and outcome tracker are attached to the run's
event hub; once the session is over the tracker fetches the recorded GeckoTerminal answers
(``data/ohlcv.json``, served by the local GeckoTerminal) as they come due through +24 h and
replies to the alerts at +1 h and +24 h, and the demo ends with the report table. Every event
is recorded in a history database in the current directory
(:data:`~callsbot.demo.tracking.HISTORY_FILE`, made afresh by each run), whose path it prints.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO, TypeVar

import attrs

from callsbot.clock import FakeClock
from callsbot.config import Settings
from callsbot.dashboard.service import Dashboard
from callsbot.demo.printing import PrintSink, day_after, summary, visible
from callsbot.demo.session import demo_settings, forget_demo_keys, load_session, symbols
from callsbot.demo.tracking import (
    DAY_AFTER,
    HISTORY_FILE,
    follow_through,
    fresh_history_file,
    load_ohlcv,
    report_text,
    serve_ohlcv,
)
from callsbot.history.recorder import HistoryRecorder
from callsbot.history.sql import SQLHistory
from callsbot.outcomes.tracker import OutcomeTracker
from callsbot.replay.engine import Periodic, Replay
from callsbot.replay.load import SESSION_STEP, pair_observations, session_message, tape_from_session
from callsbot.replay.market import RecordedMarket
from callsbot.runtime import roles
from callsbot.runtime.service import Service
from callsbot.sources.replay import RecordedMessage, Recording
from callsbot.store import open_store
from callsbot.tasks import wait_stop
from callsbot.testing.dexscreener import ClockSleep
from callsbot.testing.geckoterminal import FakeGeckoTerminal

T = TypeVar("T")

__all__ = [
    "DemoRun",
    "PrintSink",
    "Serve",
    "demo_command",
    "load_session",
    "open_demo",
    "visible",
]

#: Simulated seconds per step: the listener's heartbeat, in which the session was captured.
STEP = int(SESSION_STEP)


@attrs.frozen
class Serve:
    """``demo --serve``: serve the dashboard while the session plays at a watchable speed.

    Attributes:
        port: the web server's port (0: any free one).
        speed: simulated seconds per wall-clock second (60: the hour in a minute).
    """

    port: int = 9108
    speed: float = 60.0


async def demo_command(
    settings: Settings,
    *,
    out: TextIO,
    quiet: bool = False,
    serve: Serve | None = None,
    stop: asyncio.Event | None = None,
    history_path: Path = Path(HISTORY_FILE),
) -> int:
    """Replay the bundled session and print alerts and a summary, then follow the tokens
    through the day after (follow-up replies, the report table); return the exit status.

    Every event goes into a fresh history database at ``history_path`` (relative: to the current
    directory), whose path is printed. With ``serve``, the dashboard is served while the
    session plays at ``serve.speed`` and after it ends, until ``stop`` is set.
    """
    stop = stop if stop is not None else asyncio.Event()
    async with open_demo(
        settings, out=out, quiet=quiet, serve=serve, history_path=history_path
    ) as demo:
        if serve is not None:
            port = await demo.listening()
            host = demo.settings.web.host
            shown = f"[{host}]" if ":" in host else host
            print(
                f"dashboard: http://{shown}:{port}/dash  (the recorded hour at {serve.speed:g}x; "
                "Ctrl-C to stop)",
                file=out,
                flush=True,
            )
            if demo.settings.web.token:
                print("  open it as …/dash#token=<your CALLSBOT_WEB_TOKEN>", file=out, flush=True)
        while await demo.step():
            if serve is not None and await wait_stop(stop, STEP / serve.speed):
                break
        print(await demo.finish(), file=out, flush=True)
        print(await demo.follow_through(), file=out, flush=True)
        if serve is not None and not stop.is_set():
            print("replay finished; the dashboard stays up until Ctrl-C", file=out, flush=True)
            await stop.wait()
    return 0


@contextlib.asynccontextmanager
async def open_demo(
    settings: Settings,
    *,
    out: TextIO,
    quiet: bool = False,
    serve: Serve | None = None,
    history_path: Path | None = None,
) -> AsyncIterator[DemoRun]:
    """The demo ready to play step by step (:meth:`DemoRun.step`), everything closed on exit.

    With ``history_path``, every event is recorded there (a new database) and the outcome
    tracker follows the session's tokens against the recorded GeckoTerminal answers
    (:meth:`DemoRun.follow_through`). With ``serve``, the dashboard and the web server run
    beside it (on the wall clock; the session's clock is simulated).
    """
    session = load_session()
    tape = tape_from_session(session)
    async with contextlib.AsyncExitStack() as stack:
        demo = DemoRun(session, out=out, quiet=quiet)
        if history_path is not None:
            demo.gecko = await stack.enter_async_context(FakeGeckoTerminal(clock=demo.clock))
            serve_ohlcv(demo.gecko, load_ohlcv())
        s = demo_settings(settings, gecko_url=demo.gecko.url if demo.gecko else None)
        if serve is not None:
            s = attrs.evolve(s, web=attrs.evolve(s.web, port=serve.port))
        store = await stack.enter_async_context(open_store(s.store, clock=demo.clock))
        await forget_demo_keys(store, session)
        demo.engine = Replay(
            tape, s, store=store, sinks=[demo.sink], standard=True, clock=demo.clock
        )
        stack.push_async_callback(demo.engine.aclose)
        if history_path is not None:
            history = SQLHistory(f"sqlite:///{fresh_history_file(history_path)}")
            stack.push_async_callback(history.aclose)
            await stack.enter_async_context(demo.follow(history))
        if serve is not None:
            demo.serve(serve)
        try:
            yield demo
        finally:
            await demo.close()


def _intake(tracker: OutcomeTracker) -> Callable[[], Awaitable[None]]:
    """The tracker's intake as its live loop runs it: only when events wait (its fetches
    wait until the session is over)."""

    async def intake() -> None:
        if tracker.pending:
            await tracker.ingest()

    return intake


class DemoRun:
    """The recorded session played through the replay engine, :data:`STEP` simulated seconds
    a step, with what is attached to the run (printer, recorder, tracker, dashboard).

    Attributes:
        engine: the replay engine playing the session (set by :func:`open_demo`).
        clock: the simulated clock.
        sink: where alerts and their follow-ups are printed.
        gecko: the local GeckoTerminal, when the demo follows the day after.
        recorder: the history recorder, likewise.
        tracker: the outcome tracker, likewise.
        served: the web server and the dashboard (on their own thread), when served.
        t: seconds of the session played so far.
    """

    engine: Replay

    def __init__(self, session: dict[str, Any], *, out: TextIO, quiet: bool) -> None:
        self._groups = Recording.from_dict(session["telegram"]).groups
        self._start, self._end = int(session["start"]), int(session["end"])
        self._symbols = symbols(session)
        self._peak = dict.fromkeys(self._symbols, 0)
        self.clock = FakeClock(float(self._start))
        self.sink = PrintSink(out, quiet, self.clock, self._start)
        self.gecko: FakeGeckoTerminal | None = None
        self.recorder: HistoryRecorder | None = None
        self.tracker: OutcomeTracker | None = None
        self.served: roles.Served | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.t = 0

    @property
    def settings(self) -> Settings:
        """The demo's settings."""
        return self.engine.settings

    @property
    def parts(self) -> roles.Parts:
        """The run's shared parts (store, market data, event hub)."""
        return self.engine.parts

    @contextlib.asynccontextmanager
    async def follow(self, history: SQLHistory) -> AsyncIterator[None]:
        """Attach the history recorder and the outcome tracker to the run's hub; the tracker
        takes in the events as the live one does, every step, and replies through the printer."""
        self.recorder = roles.build_recorder(self.parts, history)
        # Unlike the engine's roles, the tracker's client may pause (rate limit, retries): on
        # the simulated clock, as the live one does on the wall clock.
        parts = attrs.evolve(self.parts, sleep=ClockSleep(self.clock))
        async with roles.open_tracker(
            parts, history=history, repliers={self.sink.name: self.sink}
        ) as tracker:
            if tracker is not None:
                await tracker.start()
                self.engine.add_periodic(Periodic(STEP, _intake(tracker), "outcome tracker"))
            self.tracker = tracker
            yield

    def serve(self, serve: Serve) -> None:
        """Build the dashboard and the web server and run them beside the session (on their
        own thread and loop, as ``run`` serves them)."""
        services: list[Service] = [self.parts.events, self.engine.aggregator, self.engine.scorer]
        sources = None
        if self.tracker is not None:
            sources = roles.outcome_sources(self.tracker, self.settings, clock=self.clock)
        self.served = roles.build_served(
            self.parts, services, dashboard=True, sources=sources, rate=serve.speed
        )
        self._tasks.append(asyncio.create_task(self.served.host.run(self._stop), name="demo-web"))

    async def listening(self) -> int:
        """The web server's port once it listens (served demos only)."""
        if self.served is None:
            raise RuntimeError("the demo is not served")
        listening = asyncio.ensure_future(self.served.listening())
        done, _ = await asyncio.wait({listening, *self._tasks}, return_when="FIRST_COMPLETED")
        if listening in done and not listening.cancelled() and listening.exception() is None:
            return listening.result()
        listening.cancel()
        # The server failed to start: raise its own error (a port in use), which ends its
        # task at about the moment the wait for its port gives up.
        await asyncio.wait(self._tasks, timeout=10)
        for task in self._tasks:
            if task.done():
                task.result()
        raise RuntimeError("the web server stopped before listening")

    async def on_dashboard(self, fn: Callable[[Dashboard], T]) -> T:
        """``fn(dashboard)`` on the dashboard's own loop once it has every event so far."""
        if self.served is None:
            raise RuntimeError("the demo is not served")
        for task in self._tasks:
            if task.done():
                task.result()  # the server failed: its error, not a wait for a restart
                raise RuntimeError("the web server has stopped")
        await self.parts.events.drain()
        return await self.served.on_dashboard(fn)

    async def step(self) -> bool:
        """Play the next :data:`STEP` seconds of the session; ``False`` once it is over."""
        if self.t > self._end:
            return False
        await self.engine.advance(float(self._start + self.t))
        counts = await self.parts.store.counts(list(self._peak))
        for token, n in counts.items():
            self._peak[token] = max(self._peak[token], n)
        self.t += STEP
        return True

    def add_pair(self, pair: dict[str, Any]) -> None:
        """Market data learns of a DexScreener pair now (tests inject tokens this way)."""
        market = self.engine.market
        if not isinstance(market, RecordedMarket):
            raise TypeError("the session's market data is recorded")
        for observation in pair_observations([pair], self.clock.time()):
            market.observe(observation)

    async def deliver(self, message: RecordedMessage) -> None:
        """A message of one of the session's groups arrives now (tests inject calls so)."""
        taped = session_message(self._groups, message, float(self._start))
        await self.engine.deliver(attrs.evolve(taped, at=self.clock.time()))

    async def finish(self) -> str:
        """The summary of the session."""
        if self.served is not None:
            # The simulated clock stops with the session.
            await self.on_dashboard(lambda dashboard: dashboard.set_rate(0.0))
        return summary(
            metrics=self.engine.metrics,
            delivered=self.engine.delivered,
            peak=self._peak,
            alerts=self.sink.sent,
            scored=self.engine.scored,
            symbols=self._symbols,
        )

    async def follow_through(self) -> str:
        """Run the simulated clock through the day after the session: the tracker makes its
        fetches as they come due (the follow-up replies print as they go); record the history;
        return the closing text: each alert's outcome, the report table, where the history is."""
        if self.tracker is None or self.recorder is None:
            return ""
        s = self.settings
        await follow_through(self.tracker, self.clock, self._start + self._end + DAY_AFTER)
        await self.recorder.flush()
        window, latency = s.store.window_seconds, s.outcomes.latency_seconds
        records = await self.tracker.ledger.records(window=window, latency=latency)
        lines = day_after(records, self._symbols)
        lines += ["", "──── report ────"]
        lines.append(await report_text(self.tracker, window=window, latency=latency))
        lines.append(f"history: {self.tracker.ledger.where}")
        return "\n".join(lines)

    async def close(self) -> None:
        """Stop the dashboard and the web server."""
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
