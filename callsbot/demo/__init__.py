"""``python -m callsbot demo``: replay a recorded hour through the real components, in seconds.

The bundled session (``data/session.json``, written by ``scripts/make_demo_session.py``) holds
six call groups' Telegram messages, the Cielo feed items and DexScreener's pairs, all in the
real schemas. The demo serves the feed and the market data from local HTTP servers
(:mod:`callsbot.testing`), plays the messages through the real Telegram listener (as real
Telethon message objects), the real pipeline, store, market validator, feed client and scorer,
on a simulated clock. No network, no credentials.
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
from callsbot.clock import FakeClock
from callsbot.config import Settings
from callsbot.dashboard.service import Dashboard
from callsbot.metrics import Metrics
from callsbot.runtime import roles
from callsbot.runtime.service import Service
from callsbot.scorer import Scored
from callsbot.sources.replay import Recording, ReplayGateway
from callsbot.store import SignalStore
from callsbot.store.redis import RedisStore
from callsbot.tasks import wait_stop
from callsbot.testing.cielo import FakeCielo
from callsbot.testing.dexscreener import ClockSleep, FakeDexScreener
from callsbot.web import WebServer

DEMO_KEY = "demo-key-not-a-secret"
#: Simulated seconds per step: the heartbeat interval of the listener.
STEP = 5


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
    clock: FakeClock
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


def demo_settings(
    settings: Settings, *, dex_url: str, cielo_url: str, groups: list[str]
) -> Settings:
    """The user's settings with the demo's sources and sinks in place of the real ones."""
    return attrs.evolve(
        settings,
        telegram=attrs.evolve(settings.telegram, groups=tuple(groups)),
        dexscreener=attrs.evolve(settings.dexscreener, url=dex_url),
        cielo=attrs.evolve(settings.cielo, url=cielo_url, api_key=DEMO_KEY),
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
    tokens = [p["baseToken"]["address"] for p in session["dexscreener"]["pairs"]]
    names += [keys.claim(keys.alert_claim(t)) for t in tokens]
    names += [keys.claim(keys.alert_lease(t)) for t in tokens]
    for table in (keys.PENDING_BUYS, keys.WATCH_LIST) if tokens else ():
        await client.hdel(keys.table(table), *tokens)
    names += [keys.claim(keys.seen_tx(f["item"]["tx_hash"])) for f in session["cielo"]]
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
    """The demo ready to play step by step (:meth:`DemoRun.step`), its fakes closed on exit.

    With ``serve``, the dashboard and the web server run beside it (on the wall clock; the
    session's clock is simulated).
    """
    session = load_session()
    clock = FakeClock(float(session["start"]))
    metrics = Metrics.create()
    recording = Recording.from_dict(session["telegram"])
    async with contextlib.AsyncExitStack() as stack:
        dex = await stack.enter_async_context(FakeDexScreener(clock=clock))
        cielo = await FakeCielo(api_key=DEMO_KEY, clock=clock).start()
        stack.push_async_callback(cielo.close)
        for pair in session["dexscreener"]["pairs"]:
            dex.add_pair(pair)
        s = demo_settings(
            settings, dex_url=dex.url, cielo_url=cielo.url, groups=list(recording.groups)
        )
        if serve is not None:
            s = attrs.evolve(s, web=attrs.evolve(s.web, port=serve.port))
        parts = await stack.enter_async_context(
            roles.open_parts(s, clock=clock, metrics=metrics, sleep=ClockSleep(clock))
        )
        demo = DemoRun(s, session, recording, clock, metrics, dex, cielo, parts, out, quiet)
        await demo.start(serve)
        try:
            yield demo
        finally:
            await demo.close()


class DemoRun:
    """The recorded session played through the real parts, :data:`STEP` simulated seconds a step.

    Attributes:
        settings: the demo's settings.
        clock: the simulated clock.
        parts: the shared parts (store, market data, event hub).
        gateway: the replayed Telegram session.
        dex: the local DexScreener.
        dashboard: the dashboard, when served.
        web: the web server, when served.
        t: seconds of the session played so far.
    """

    def __init__(
        self,
        settings: Settings,
        session: dict[str, Any],
        recording: Recording,
        clock: FakeClock,
        metrics: Metrics,
        dex: FakeDexScreener,
        cielo: FakeCielo,
        parts: roles.Parts,
        out: TextIO,
        quiet: bool,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.parts = parts
        self.dex = dex
        self._session = session
        self._cielo = cielo
        self._metrics = metrics
        self._start, self._end = int(session["start"]), int(session["end"])
        self._rate_limited = set(session["dexscreener"].get("rate_limited_at", []))
        self._sink = PrintSink(out, quiet, clock, self._start)
        self.aggregator = roles.build_pipeline(parts)
        self.gateway = ReplayGateway(recording, clock=clock)
        self.listener = roles.build_listener(parts, self.gateway, self.aggregator)
        self._feed = roles.build_feed(parts)
        self.scorer = roles.build_scorer(parts, feed=self._feed, sinks=[self._sink])
        self._pending = collections.deque(recording.messages)
        self._scored: dict[str, Scored] = {}
        self._tokens = [p["baseToken"]["address"] for p in session["dexscreener"]["pairs"]]
        self._peak = dict.fromkeys(self._tokens, 0)
        self._stop = asyncio.Event()
        self._pipe_stop = asyncio.Event()
        self._pipeline: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.dashboard: Dashboard | None = None
        self.web: WebServer | None = None
        self.t = 0

    async def start(self, serve: Serve | None) -> None:
        """Clear an earlier run's keys, start the pipeline and the listener (and the server)."""
        await _forget_demo_keys(self.parts.store, self._session)
        if serve is not None:
            services: list[Service] = [self.parts.events, self.aggregator, self.listener]
            services.append(self.scorer)
            self.dashboard = roles.build_dashboard(self.parts, services, rate=serve.speed)
            self.web = roles.build_web(self.parts, services, dashboard=self.dashboard)
            self._tasks += [
                asyncio.create_task(self.dashboard.run(self._stop), name="demo-dashboard"),
                asyncio.create_task(self.web.run(self._stop), name="demo-web"),
            ]
        self._pipeline = asyncio.create_task(self.aggregator.run(self._pipe_stop), name="demo-pipe")
        await self.listener.start()

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
        t = self.t
        if t > self._end:
            return False
        s, store = self.settings, self.parts.store
        self.clock.set(max(self.clock.time(), float(self._start + t)))
        if any(t - STEP < r <= t for r in self._rate_limited):
            self.dex.fail_next(429, retry_after=20)
        while self._pending and self._pending[0].at <= t:
            await self.gateway.deliver(self._pending.popleft())
        await self.aggregator.drain()
        await self.parts.events.drain()
        for token, n in (await store.counts(self._tokens)).items():
            self._peak[token] = max(self._peak[token], n)
        await self.listener.tick()
        if t % int(s.cielo.poll_seconds) == 0:
            await self.aggregator.retry_deferred()
            items = [f["item"] for f in self._session["cielo"] if f["at"] <= t]
            self._cielo.serve(list(reversed(items))[: s.cielo.limit])
            for result in [*await self.scorer.poll_once(), *await self.scorer.tick()]:
                self._scored[result.buy.token] = result
            await self.parts.events.drain()
        self.t += STEP
        return True

    async def finish(self) -> str:
        """Stop the pipeline and the feed; the summary of what happened."""
        if self.dashboard is not None:
            self.dashboard.set_rate(0.0)  # the simulated clock stops with the session
        await self._stop_pipeline()
        return _summary(
            self._metrics, self._sink, self._scored, self._session, self.gateway, self._peak
        )

    async def _stop_pipeline(self) -> None:
        if self._pipeline is None:
            return
        self._pipe_stop.set()
        pipeline, self._pipeline = self._pipeline, None
        try:
            await pipeline
        finally:
            await self._feed.aclose()
            await self.parts.events.drain()

    async def close(self) -> None:
        """Stop everything started here."""
        try:
            await self._stop_pipeline()
        finally:
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


def _summary(
    metrics: Metrics,
    sink: PrintSink,
    scored: dict[str, Scored],
    session: dict[str, Any],
    gateway: ReplayGateway,
    peak: dict[str, int],
) -> str:
    symbols = {
        p["baseToken"]["address"]: p["baseToken"]["symbol"] for p in session["dexscreener"]["pairs"]
    }
    recorded = _by_label(metrics, "callsbot_mentions_recorded_total", "kind")
    rejected = _by_label(metrics, "callsbot_mentions_rejected_total", "reason")
    feed = _by_label(metrics, "callsbot_feed_items_total", "outcome")
    seen = feed.pop("seen", 0)
    by_count = collections.Counter(min(n, 3) for n in peak.values())
    rows = [
        ("Telegram messages replayed", str(gateway.delivered_count)),
        ("mentions recorded", f"{sum(recorded.values())} ({_fmt(recorded)})"),
        ("mentions rejected", f"{sum(rejected.values())} ({_fmt(rejected)})"),
        (
            "tokens by groups (at peak)",
            ", ".join(
                f"{'3+' if k == 3 else k} group{'' if k == 1 else 's'}: {v}"
                for k, v in sorted(by_count.items())
            ),
        ),
        ("Cielo feed items", f"{_fmt(feed)} (and {seen} re-served by later polls)"),
        ("alerts", ", ".join(f"${a.symbol}" for a in sink.sent) or "none"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = ["", "──── summary ────"]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines += ["", "scored tokens:"]
    for token, result in scored.items():
        card = result.card
        line = f"  ${symbols.get(token, token[:6]):<9} {result.outcome:<15}"
        if card is not None:
            line += f" score {card.total:4.1f}  {card.consensus.reason}"
        lines.append(line)
    return "\n".join(lines)


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"
