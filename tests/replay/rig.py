"""A live-style run of the demo's session: every adapter over its local fake server.

The Telegram messages go through the replay gateway and the real listener (real Telethon
message objects), the market data through the real DexScreener client and validator over the
local DexScreener, the buys through the real Cielo client over the local Cielo feed; the
pipeline runs its own workers and the scorer reacts to mentions as its loop does. Every event
the hub carries is kept, so the run can be written as a ``history export``: what a production
process would have recorded. The replay engine has to find the same alerts from that export
(and from the session file itself) without any of those adapters.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import attrs

from callsbot.alert import Alert
from callsbot.clock import FakeClock
from callsbot.config import Settings
from callsbot.events import Event
from callsbot.history import recording
from callsbot.metrics import Metrics
from callsbot.runtime import roles
from callsbot.sources.replay import Recording, ReplayGateway
from callsbot.testing.cielo import FakeCielo
from callsbot.testing.dexscreener import ClockSleep, FakeDexScreener

STEP = 5
KEY = "rig-key-not-a-secret"


@attrs.define
class KeepSink:
    """Keeps every alert it is sent."""

    sent: list[Alert] = attrs.field(factory=list)
    name: str = "rig"

    async def send(self, alert: Alert) -> None:
        self.sent.append(alert)

    async def aclose(self) -> None:
        return None


@attrs.frozen
class LiveRun:
    """What the live-style run did: its alerts and every event, in publication order."""

    alerts: tuple[Alert, ...]
    events: tuple[Event, ...]

    def export(self) -> str:
        """The events as a ``history export`` (time order, then kind, as the export writes)."""
        order = {cls.kind: i for i, cls in enumerate(recording.EVENT_TYPES)}
        events = sorted(self.events, key=lambda e: (e.at, order[e.kind]))
        out = io.StringIO()
        recording.write(events, out)
        return out.getvalue()


async def live_run(session: dict[str, Any], settings: Settings | None = None) -> LiveRun:
    """Play ``session`` through the real adapters on a fake clock, 5 simulated seconds a step."""
    settings = settings if settings is not None else Settings()
    start, end = int(session["start"]), int(session["end"])
    clock = FakeClock(float(start))
    telegram = Recording.from_dict(session["telegram"])
    rate_limited = set(session["dexscreener"].get("rate_limited_at", []))
    kept: list[Event] = []
    sink = KeepSink()

    async def keep(event: Event) -> None:
        kept.append(event)

    async with FakeDexScreener(clock=clock) as dex:
        cielo = await FakeCielo(api_key=KEY, clock=clock).start()
        try:
            for pair in session["dexscreener"]["pairs"]:
                dex.add_pair(pair)
            s = attrs.evolve(
                settings,
                telegram=attrs.evolve(settings.telegram, groups=tuple(telegram.groups)),
                dexscreener=attrs.evolve(settings.dexscreener, url=dex.url),
                cielo=attrs.evolve(settings.cielo, url=cielo.url, api_key=KEY),
                alerts=attrs.evolve(settings.alerts, jsonl_path=None, log=False),
            )
            async with roles.open_parts(
                s, clock=clock, metrics=Metrics.create(), sleep=ClockSleep(clock)
            ) as parts:
                parts.events.subscribe("rig", keep)
                pipeline = roles.build_pipeline(parts)
                gateway = ReplayGateway(telegram, clock=clock)
                listener = roles.build_listener(parts, gateway, pipeline)
                feed = roles.build_feed(parts)
                scorer = roles.build_scorer(parts, feed=feed, sinks=[sink])
                stop = asyncio.Event()
                task = asyncio.create_task(pipeline.run(stop))
                await listener.start()
                pending = list(telegram.messages)
                poll = int(s.cielo.poll_seconds)
                try:
                    for t in range(0, end + 1, STEP):
                        clock.set(max(clock.time(), float(start + t)))
                        if any(t - STEP < r <= t for r in rate_limited):
                            dex.fail_next(429, retry_after=20)
                        while pending and pending[0].at <= t:
                            await gateway.deliver(pending.pop(0))
                        await pipeline.drain()
                        await parts.events.drain()
                        await scorer.react()
                        await parts.events.drain()
                        await listener.tick()
                        if t % poll == 0:
                            await pipeline.retry_deferred()
                            items = [f["item"] for f in session["cielo"] if f["at"] <= t]
                            cielo.serve(list(reversed(items))[: s.cielo.limit])
                            await scorer.poll_once()
                            await scorer.tick()
                            await parts.events.drain()
                finally:
                    stop.set()
                    await task
                    await feed.aclose()
                    await gateway.aclose()
                    await parts.events.drain()
        finally:
            await cielo.close()
    return LiveRun(tuple(sink.sent), tuple(kept))
