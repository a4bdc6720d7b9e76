"""``python -m callsbot demo``: replay a recorded hour through the real components, in seconds.

The bundled session (``data/session.json``, written by ``scripts/make_demo_session.py``) holds
six call groups' Telegram messages, the Cielo feed items and DexScreener's pairs, all in the
real schemas. The demo serves the feed and the market data from local HTTP servers
(:mod:`callsbot.testing`), plays the messages through the real Telegram listener (as real
Telethon message objects), the real pipeline, store, market validator, feed client and scorer,
on a simulated clock. No network, no credentials.

Then the day after: the outcome tracker fetches the recorded GeckoTerminal answers
(``data/ohlcv.json``) as they come due through +24 h, replies to the alerts at +1 h and +24 h,
and the demo ends with the report table. Every event is recorded in a history database in the
current directory (:data:`~callsbot.demo.tracking.HISTORY_FILE`, made afresh by each run),
whose path it prints.
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
from pathlib import Path
from typing import Any, TextIO

import attrs

from callsbot.alert import Alert, render_html
from callsbot.clock import FakeClock
from callsbot.config import Settings
from callsbot.dashboard.service import Dashboard
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
from callsbot.metrics import Metrics
from callsbot.outcomes.followup import percent
from callsbot.outcomes.report import EventKind
from callsbot.outcomes.tracker import OutcomeTracker
from callsbot.runtime import roles
from callsbot.runtime.service import Service
from callsbot.scorer import Scored
from callsbot.sources.replay import Recording, ReplayGateway
from callsbot.store import SignalStore
from callsbot.store.redis import RedisStore
from callsbot.tasks import wait_stop
from callsbot.testing.cielo import FakeCielo
from callsbot.testing.dexscreener import ClockSleep, FakeDexScreener
from callsbot.testing.geckoterminal import FakeGeckoTerminal
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
    """An alert sink that prints each alert as the Telegram group would show it, and the
    follow-up replies to them."""

    out: TextIO
    quiet: bool
    clock: FakeClock
    start: int
    sent: list[Alert] = attrs.field(factory=list)
    replies: list[str] = attrs.field(factory=list)
    name: str = "demo"

    async def send(self, alert: Alert) -> str:
        self.sent.append(alert)
        if not self.quiet:
            minute = (self.clock.time() - self.start) / 60
            print(f"\n──── alert at +{minute:.0f} min ────", file=self.out)
            print(visible(render_html(alert)), file=self.out)
        return str(len(self.sent))  # the message id follow-ups reply to

    async def reply(self, text: str, *, reply_to: str) -> str:
        self.replies.append(text)
        if not self.quiet:
            symbol = self.sent[int(reply_to) - 1].symbol
            hours = (self.clock.time() - self.start) / 3600
            print(f"──── reply to the ${symbol} alert, at +{hours:.1f} h ────", file=self.out)
            print(text, file=self.out)
        return f"{reply_to}.{len(self.replies)}"

    async def aclose(self) -> None:
        return None


def demo_settings(
    settings: Settings,
    *,
    dex_url: str,
    cielo_url: str,
    groups: list[str],
    gecko_url: str | None = None,
) -> Settings:
    """The user's settings with the demo's sources and sinks in place of the real ones."""
    s = attrs.evolve(
        settings,
        telegram=attrs.evolve(settings.telegram, groups=tuple(groups)),
        dexscreener=attrs.evolve(settings.dexscreener, url=dex_url),
        cielo=attrs.evolve(settings.cielo, url=cielo_url, api_key=DEMO_KEY),
        tg_bot=attrs.evolve(settings.tg_bot, token=None, chat_id=None),
        alerts=attrs.evolve(settings.alerts, jsonl_path=None, log=False),
    )
    if gecko_url is not None:
        s = attrs.evolve(
            s,
            geckoterminal=attrs.evolve(s.geckoterminal, url=gecko_url, network="solana"),
            # The demo's database is new: nothing to catch up on; the tracker always runs.
            outcomes=attrs.evolve(s.outcomes, tracker=True, catch_up_seconds=0),
        )
    return s


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
    for pair in session["dexscreener"]["pairs"]:
        pattern = keys.followup_claims_of(pair["baseToken"]["address"])
        async for name in client.scan_iter(match=pattern, count=500):
            names.append(name)
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
        summary = await demo.finish()
        print(summary, file=out, flush=True)
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
    """The demo ready to play step by step (:meth:`DemoRun.step`), its fakes closed on exit.

    With ``history_path``, every event is recorded there (a new database) and the outcome
    tracker follows the session's tokens against the recorded GeckoTerminal answers
    (:meth:`DemoRun.follow_through`). With ``serve``, the dashboard and the web server run
    beside it (on the wall clock; the session's clock is simulated).
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
        gecko, gecko_url = None, None
        if history_path is not None:
            gecko = await stack.enter_async_context(FakeGeckoTerminal(clock=clock))
            serve_ohlcv(gecko, load_ohlcv())
            gecko_url = gecko.url
        s = demo_settings(
            settings,
            dex_url=dex.url,
            cielo_url=cielo.url,
            groups=list(recording.groups),
            gecko_url=gecko_url,
        )
        if serve is not None:
            s = attrs.evolve(s, web=attrs.evolve(s.web, port=serve.port))
        parts = await stack.enter_async_context(
            roles.open_parts(s, clock=clock, metrics=metrics, sleep=ClockSleep(clock))
        )
        demo = DemoRun(s, session, recording, clock, metrics, dex, cielo, parts, out, quiet)
        demo.gecko = gecko
        if history_path is not None:
            history = SQLHistory(f"sqlite:///{fresh_history_file(history_path)}")
            stack.push_async_callback(history.aclose)
            demo.recorder = roles.build_recorder(parts, history)
            demo.tracker = await stack.enter_async_context(
                roles.open_tracker(parts, history=history, repliers={demo.sink.name: demo.sink})
            )
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
        gecko: the local GeckoTerminal, when the demo records.
        recorder: the history recorder, when the demo records.
        tracker: the outcome tracker, when the demo records.
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
        self._out = out
        self.gecko: FakeGeckoTerminal | None = None
        self.recorder: HistoryRecorder | None = None
        self.tracker: OutcomeTracker | None = None
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

    @property
    def sink(self) -> PrintSink:
        """Where alerts (and their follow-ups) are printed."""
        return self._sink

    async def start(self, serve: Serve | None) -> None:
        """Clear an earlier run's keys, start the pipeline and the listener (and the server)."""
        await _forget_demo_keys(self.parts.store, self._session)
        if self.tracker is not None:
            await self.tracker.start()
        if serve is not None:
            services: list[Service] = [self.parts.events, self.aggregator, self.listener]
            services.append(self.scorer)
            sources = None
            if self.tracker is not None:
                sources = roles.outcome_sources(self.tracker, self.settings, clock=self.clock)
            self.dashboard = roles.build_dashboard(
                self.parts, services, rate=serve.speed, sources=sources
            )
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
        if self.tracker is not None and self.tracker.pending:
            await self.tracker.ingest()  # its fetches wait until the session is over
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

    async def follow_through(self) -> str:
        """Run the simulated clock through the day after the session: the tracker makes its
        fetches as they come due (the follow-up replies print as they go); record the history;
        return the closing text: each alert's outcome, the report table, where the history is."""
        if self.tracker is None or self.recorder is None:
            return ""
        s = self.settings
        await follow_through(self.tracker, self.clock, self._start + self._end + DAY_AFTER)
        await self.recorder.flush()
        records = await self.tracker.ledger.records(
            window=s.store.window_seconds, latency=s.outcomes.latency_seconds
        )
        symbols = {
            p["baseToken"]["address"]: p["baseToken"]["symbol"]
            for p in self._session["dexscreener"]["pairs"]
        }
        lines = ["", "──── the day after: what each alert did (entry = open 60 s after it) ────"]
        for r in records:
            if r.kind is not EventKind.ALERT:
                continue
            o = r.outcome
            head = f"  ${symbols.get(r.token, r.token[:6]):<9} {o.status.value:<10}"
            if o.entry is None or o.peak is None or o.t_peak is None:
                lines.append(head)
                continue
            close = o.close_return("p_24h")
            lines.append(
                f"{head} peak {o.peak:5.2f}× at +{(o.t_peak - o.event_ts) / 3600:4.1f} h"
                f"  +24h {'–' if close is None else f'{1 + close:.2f}×':>6}"
                f"  drawdown {percent(o.max_drawdown or 0.0):>6}  {'win' if o.win else 'no win'}"
            )
        lines += [
            "",
            "──── report ────",
            await report_text(
                self.tracker, window=s.store.window_seconds, latency=s.outcomes.latency_seconds
            ),
        ]
        lines.append(f"history: {self.tracker.ledger.where}")
        return "\n".join(lines)

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
