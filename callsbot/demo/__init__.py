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
import html
import json
import re
from importlib import resources
from typing import Any, TextIO

import attrs

from callsbot.alert import Alert, render_html
from callsbot.clock import FakeClock
from callsbot.config import Settings
from callsbot.metrics import Metrics
from callsbot.runtime import roles
from callsbot.scorer import Scored
from callsbot.sources.replay import Recording, ReplayGateway
from callsbot.store import SignalStore
from callsbot.store.redis import RedisStore
from callsbot.testing.cielo import FakeCielo
from callsbot.testing.dexscreener import ClockSleep, FakeDexScreener

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
    names += [
        keys.claim(keys.alert_claim(p["baseToken"]["address"]))
        for p in session["dexscreener"]["pairs"]
    ]
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


async def demo_command(settings: Settings, *, out: TextIO, quiet: bool = False) -> int:
    """Replay the bundled session and print alerts and a summary; return the exit status."""
    session = load_session()
    start, _end = int(session["start"]), int(session["end"])
    clock = FakeClock(float(start))
    metrics = Metrics.create()
    recording = Recording.from_dict(session["telegram"])
    async with FakeDexScreener(clock=clock) as dex:
        cielo = await FakeCielo(api_key=DEMO_KEY, clock=clock).start()
        try:
            for pair in session["dexscreener"]["pairs"]:
                dex.add_pair(pair)
            s = demo_settings(
                settings, dex_url=dex.url, cielo_url=cielo.url, groups=list(recording.groups)
            )
            summary = await _replay(s, session, recording, clock, metrics, dex, cielo, out, quiet)
        finally:
            await cielo.close()
    print(summary, file=out)
    return 0


async def _replay(
    s: Settings,
    session: dict[str, Any],
    recording: Recording,
    clock: FakeClock,
    metrics: Metrics,
    dex: FakeDexScreener,
    cielo: FakeCielo,
    out: TextIO,
    quiet: bool,
) -> str:
    start, end = int(session["start"]), int(session["end"])
    rate_limited = set(session["dexscreener"].get("rate_limited_at", []))
    sink = PrintSink(out, quiet, clock, start)
    parts_cm = roles.open_parts(s, clock=clock, metrics=metrics, sleep=ClockSleep(clock))
    async with parts_cm as parts:
        store = parts.store
        await _forget_demo_keys(store, session)
        aggregator = roles.build_pipeline(parts)
        gateway = ReplayGateway(recording, clock=clock)
        listener = roles.build_listener(parts, gateway, aggregator)
        feed = roles.build_feed(parts)
        scorer = roles.build_scorer(parts, feed=feed, sinks=[sink])
        stop = asyncio.Event()
        workers = asyncio.create_task(aggregator.run(stop))
        scored: dict[str, Scored] = {}
        tokens = [p["baseToken"]["address"] for p in session["dexscreener"]["pairs"]]
        peak = dict.fromkeys(tokens, 0)
        try:
            await listener.start()
            pending = collections.deque(recording.messages)
            poll_every = int(s.cielo.poll_seconds)
            for t in range(0, end + STEP, STEP):
                clock.set(max(clock.time(), float(start + t)))
                if any(t - STEP < r <= t for r in rate_limited):
                    dex.fail_next(429, retry_after=20)
                while pending and pending[0].at <= t:
                    await gateway.deliver(pending.popleft())
                await aggregator.drain()
                await parts.events.drain()
                for token, n in (await store.counts(tokens)).items():
                    peak[token] = max(peak[token], n)
                await listener.tick()
                if t % poll_every == 0:
                    await aggregator.retry_deferred()
                    items = [f["item"] for f in session["cielo"] if f["at"] <= t]
                    cielo.serve(list(reversed(items))[: s.cielo.limit])
                    for result in [*await scorer.poll_once(), *await scorer.tick()]:
                        scored[result.buy.token] = result
        finally:
            stop.set()
            await workers
            await feed.aclose()
            await parts.events.drain()
        return _summary(metrics, sink, scored, session, gateway, peak)


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
