"""``python -m callsbot demo``: replay a recorded hour through the real components, in seconds.

The bundled session (``data/session.json``, written by ``scripts/make_demo_session.py``) holds
six call groups' Telegram messages, the Cielo feed items and DexScreener's pairs, all in the
real schemas. The demo is the replay engine (:mod:`callsbot.replay`, docs/backtest.md) over
that session: the real pipeline, store and scorer on a simulated clock, the market data and the
feed answered in-process from the recording, the alerts printed as Telegram shows them. No
network, no credentials.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import html
import json
import re
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any, TextIO

import attrs

from callsbot.alert import Alert, render_html
from callsbot.clock import Clock, FakeClock
from callsbot.config import Settings
from callsbot.dashboard.service import Dashboard
from callsbot.metrics import Metrics
from callsbot.replay.engine import Replay
from callsbot.replay.load import SESSION_STEP, pair_observations, session_message, tape_from_session
from callsbot.replay.market import RecordedMarket
from callsbot.runtime import roles
from callsbot.runtime.service import Service
from callsbot.scorer import Scored
from callsbot.sources.replay import RecordedMessage, Recording
from callsbot.store import SignalStore, open_store
from callsbot.store.redis import RedisStore
from callsbot.tasks import wait_stop
from callsbot.web import WebServer

#: Simulated seconds per step: the heartbeat interval of the listener.
STEP = int(SESSION_STEP)


def load_session() -> dict[str, Any]:
    """The bundled recorded session."""
    text = resources.files("callsbot.demo").joinpath("data/session.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def visible(message_html: str) -> str:
    """What a Telegram user sees of an HTML message: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", message_html))


@attrs.define
class PrintSink:
    """An alert sink that prints each alert as the Telegram group would show it."""

    out: TextIO
    quiet: bool
    clock: Clock
    start: int
    sent: list[Alert] = attrs.field(factory=list)
    name: str = "demo"

    async def send(self, alert: Alert) -> None:
        self.sent.append(alert)
        if self.quiet:
            return
        minute = (self.clock.time() - self.start) / 60
        print(f"\n──── alert at +{minute:.0f} min ────", file=self.out)
        print(visible(render_html(alert)), file=self.out)

    async def aclose(self) -> None:
        return None


def demo_settings(settings: Settings, *, groups: list[str]) -> Settings:
    """The user's settings with the session's groups and none of the real sinks."""
    return attrs.evolve(
        settings,
        telegram=attrs.evolve(settings.telegram, groups=tuple(groups)),
        tg_bot=attrs.evolve(settings.tg_bot, token=None, chat_id=None),
        alerts=attrs.evolve(settings.alerts, jsonl_path=None, log=False),
    )


async def _forget_demo_keys(store: SignalStore, session: dict[str, Any]) -> None:
    """On a shared Redis, drop what an earlier demo run left, and nothing else."""
    if not isinstance(store, RedisStore):
        return
    from callsbot.store import keys

    client = store.client
    names = [keys.token(p["baseToken"]["address"]) for p in session["dexscreener"]["pairs"]]
    names += [
        keys.claim(keys.alert_claim(p["baseToken"]["address"]))
        for p in session["dexscreener"]["pairs"]
    ]
    for group in session["telegram"]["groups"]:
        chat_id = -(10**12 + int(group["channel_id"]))
        async for name in client.scan_iter(match=keys.seen_mentions_of_chat(chat_id), count=500):
            names.append(name)
        await client.hdel(keys.CURSORS, f"msg:{chat_id}")
    if names:
        await client.delete(*names)
    await client.zrem(
        keys.ACTIVE, *[p["baseToken"]["address"] for p in session["dexscreener"]["pairs"]]
    )


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
) -> int:
    """Replay the bundled session and print alerts and a summary; return the exit status.

    With ``serve``, the dashboard is served while the session plays at ``serve.speed`` and
    after it ends, until ``stop`` is set.
    """
    stop = stop if stop is not None else asyncio.Event()
    async with open_demo(settings, out=out, quiet=quiet, serve=serve) as demo:
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
        summary = await demo.finish()
        print(summary, file=out, flush=True)
        if serve is not None and not stop.is_set():
            print("replay finished; the dashboard stays up until Ctrl-C", file=out, flush=True)
            await stop.wait()
    return 0


@contextlib.asynccontextmanager
async def open_demo(
    settings: Settings, *, out: TextIO, quiet: bool = False, serve: Serve | None = None
) -> AsyncIterator[DemoRun]:
    """The demo ready to play step by step (:meth:`DemoRun.step`), closed on exit.

    With ``serve``, the dashboard and the web server run beside it (on the wall clock; the
    session's clock is simulated).
    """
    session = load_session()
    tape = tape_from_session(session)
    clock = FakeClock(tape.start)
    s = demo_settings(settings, groups=list(Recording.from_dict(session["telegram"]).groups))
    if serve is not None:
        s = attrs.evolve(s, web=attrs.evolve(s.web, port=serve.port))
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(s.store, clock=clock))
        await _forget_demo_keys(store, session)
        sink = PrintSink(out, quiet, clock, int(tape.start))
        replay = Replay(tape, s, store=store, sinks=[sink], standard=True, clock=clock)
        stack.push_async_callback(replay.aclose)
        demo = DemoRun(s, session, replay, sink)
        await demo.start(serve)
        try:
            yield demo
        finally:
            await demo.close()


class DemoRun:
    """The recorded session played through the replay engine, :data:`STEP` seconds a step.

    Attributes:
        settings: the demo's settings.
        replay: the engine playing the session.
        clock: the simulated clock.
        parts: the shared parts (store, market data, event hub).
        aggregator: the pipeline.
        scorer: the scorer.
        dashboard: the dashboard, when served.
        web: the web server, when served.
        t: seconds of the session played so far.
    """

    def __init__(
        self, settings: Settings, session: dict[str, Any], replay: Replay, sink: PrintSink
    ) -> None:
        self.settings = settings
        self.replay = replay
        self.clock = replay.clock
        self.parts = replay.parts
        self.aggregator = replay.aggregator
        self.scorer = replay.scorer
        self._session = session
        self._groups = Recording.from_dict(session["telegram"]).groups
        self._sink = sink
        self._start, self._end = int(session["start"]), int(session["end"])
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.dashboard: Dashboard | None = None
        self.web: WebServer | None = None
        self.t = 0

    async def start(self, serve: Serve | None) -> None:
        """Start the dashboard and the web server when served."""
        if serve is None:
            return
        services: list[Service] = [self.parts.events, self.aggregator, self.scorer]
        self.dashboard = roles.build_dashboard(self.parts, services, rate=serve.speed)
        self.web = roles.build_web(self.parts, services, dashboard=self.dashboard)
        self._tasks += [
            asyncio.create_task(self.dashboard.run(self._stop), name="demo-dashboard"),
            asyncio.create_task(self.web.run(self._stop), name="demo-web"),
        ]

    async def listening(self) -> int:
        """The web server's port once it listens (served demos only)."""
        if self.web is None:
            raise RuntimeError("the demo is not served")
        listening = asyncio.ensure_future(self.web.listening())
        done, _ = await asyncio.wait({listening, *self._tasks}, return_when="FIRST_COMPLETED")
        if listening not in done:
            listening.cancel()
            for task in done:
                task.result()  # the server failed to start: raise its error
            raise RuntimeError("the web server stopped before listening")
        return listening.result()

    async def step(self) -> bool:
        """Play the next :data:`STEP` seconds of the session; ``False`` once it is over."""
        if self.t > self._end:
            return False
        await self.replay.advance(float(self._start + self.t))
        self.t += STEP
        return True

    def add_pair(self, pair: dict[str, Any]) -> None:
        """Market data learns of a DexScreener pair now (tests inject tokens this way)."""
        for observation in pair_observations([pair], self.clock.time()):
            market = self.replay.market
            if isinstance(market, RecordedMarket):
                market.observe(observation)

    async def deliver(self, message: RecordedMessage) -> None:
        """A Telegram message of the session's groups arrives now."""
        tape_message = session_message(self._groups, message, float(self._start))
        await self.replay.deliver(attrs.evolve(tape_message, at=self.clock.time()))

    async def finish(self) -> str:
        """The summary of what happened."""
        if self.dashboard is not None:
            self.dashboard.set_rate(0.0)  # the simulated clock stops with the session
        return _summary(self.replay, self._sink, self._session)

    async def close(self) -> None:
        """Stop the dashboard and the web server."""
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _sample(metrics: Metrics, name: str, **labels: str) -> int:
    return int(metrics.registry.get_sample_value(name, labels) or 0)


def _by_label(metrics: Metrics, metric: str, label: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == metric and label in sample.labels:
                found[sample.labels[label]] = int(sample.value)
    return {k: v for k, v in sorted(found.items()) if v}


def _summary(replay: Replay, sink: PrintSink, session: dict[str, Any]) -> str:
    metrics = replay.metrics
    symbols = {
        p["baseToken"]["address"]: p["baseToken"]["symbol"] for p in session["dexscreener"]["pairs"]
    }
    peak = dict.fromkeys(symbols, 0)
    for level in replay.result().levels:
        if level.token in peak:
            peak[level.token] = max(peak[level.token], level.level)
    recorded = _by_label(metrics, "callsbot_mentions_recorded_total", "kind")
    rejected = _by_label(metrics, "callsbot_mentions_rejected_total", "reason")
    feed = _by_label(metrics, "callsbot_feed_items_total", "outcome")
    by_count = collections.Counter(min(n, 3) for n in peak.values())
    rows = [
        ("Telegram messages replayed", str(replay.delivered)),
        ("mentions recorded", f"{sum(recorded.values())} ({_fmt(recorded)})"),
        ("mentions rejected", f"{sum(rejected.values())} ({_fmt(rejected)})"),
        (
            "tokens by groups (at peak)",
            ", ".join(
                f"{'3+' if k == 3 else k} group{'' if k == 1 else 's'}: {v}"
                for k, v in sorted(by_count.items())
            ),
        ),
        ("Cielo feed items", _fmt(feed)),
        ("alerts", ", ".join(f"${a.symbol}" for a in sink.sent) or "none"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = ["", "──── summary ────"]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines += ["", "scored tokens:"]
    scored: dict[str, Scored] = replay.scored
    for token, result in scored.items():
        card = result.card
        line = f"  ${symbols.get(token, token[:6]):<9} {result.outcome:<15}"
        if card is not None:
            line += f" score {card.total:4.1f}  {card.consensus.reason}"
        lines.append(line)
    return "\n".join(lines)


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"
