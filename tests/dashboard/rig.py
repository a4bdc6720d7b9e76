"""Builders shared by the dashboard tests: events from plain values, a served dashboard."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import attrs
from aiohttp import ClientResponse

from callsbot.alert import Alert
from callsbot.clock import FakeClock
from callsbot.config import Settings
from callsbot.dashboard.service import Dashboard
from callsbot.dashboard.sources import DashboardSources
from callsbot.events import AlertSent, BuyScored, Event, MentionRecorded, VerdictMade
from callsbot.metrics import Metrics
from callsbot.models import Buy, MarketSnapshot, MessageRef, Reason, Status, Verdict
from callsbot.runtime.roles import Parts, build_dashboard, build_web, make_parts
from callsbot.scoring import Consensus, ScoreCard, ScoreLine
from callsbot.store import MemoryStore
from callsbot.web import WebContext, WebServer

T0 = 1_700_000_000
TOKEN = "4SnveCiNfJHt4JwQhJRWzFTudUTAFbzCNwiTST4rpump"


def mention(token: str, group: str, at: float, *, count: int = 1, msg: int = 1) -> MentionRecorded:
    """A MentionRecorded as the pipeline publishes it."""
    ref = MessageRef("live", -100, group, msg, int(at), at)
    return MentionRecorded(
        at=at, ref=ref, token=token, mention_kind="mint", chain="solana", count=count
    )


def snapshot(
    token: str, *, name: str = "Moon Cat", symbol: str = "MOONCAT", price: float = 0.002
) -> MarketSnapshot:
    """A market snapshot with the numbers that matter here."""
    return MarketSnapshot(
        chain="solana",
        token=token,
        pair_address="Pair" + token[:8],
        dex="raydium",
        name=name,
        symbol=symbol,
        price_usd=price,
        liquidity_usd=85_000.0,
        volume_h24=420_000.0,
        volume_h1=40_000.0,
        market_cap=1_800_000.0,
        fdv=1_800_000.0,
        pair_created_at=T0 - 86_400,
        price_change_h1=12.0,
        price_change_h24=80.0,
    )


def verdict(token: str, at: float, *, valid: bool = True, **kwargs: Any) -> VerdictMade:
    """A VerdictMade: valid with a snapshot, or invalid for low liquidity."""
    if valid:
        v = Verdict(token, Status.VALID, Reason.OK, snapshot(token, **kwargs))
    else:
        v = Verdict(token, Status.INVALID, Reason.LOW_LIQUIDITY, snapshot(token), "liquidity $900")
    return VerdictMade(at=at, chain="solana", verdict=v)


def buy(token: str, at: float, *, usd: float = 2500.0) -> Buy:
    return Buy(
        tx_hash=f"tx{at}",
        wallet="CcMyWa11etAddressxxxxxxxxxxxxxxxxxxxxxxsv62",
        wallet_label="Smart Money #7",
        token=token,
        symbol="MOONCAT",
        name="Moon Cat",
        usd=usd,
        ts=at,
        dex="raydium",
        chain="solana",
        first_interaction=True,
    )


def card(
    total: float, *, points: int = 1, groups: tuple[str, ...] = ("@a",), degraded: bool = False
) -> ScoreCard:
    reason = "⚠️ CONSENSUS UNKNOWN: 0 (aggregator no heartbeat)" if degraded else "🤝 consensus"
    cons = Consensus(0 if degraded else points, groups, degraded, reason)
    base = total - cons.points
    return ScoreCard((ScoreLine(base, "smart-money buy"),), base, cons, total)


def scored(token: str, at: float, total: float, outcome: str, **kwargs: Any) -> BuyScored:
    return BuyScored(at=at, buy=buy(token, at), card=card(total, **kwargs), outcome=outcome)


def alert_sent(token: str, at: float, *, total: float = 8.0, price: float = 0.002) -> AlertSent:
    alert = Alert(buy(token, at), snapshot(token, price=price), card(total), at)
    return AlertSent(at=at, alert=alert, deliveries=(("log", None),))


@attrs.define
class Served:
    """A dashboard over a memory store and a fake clock, and the web context that serves it."""

    parts: Parts
    clock: FakeClock
    ctx: WebContext
    dashboard: Dashboard
    web: WebServer

    async def publish(self, *events: Event) -> None:
        """Publish through the hub and deliver at once."""
        for event in events:
            self.parts.events.publish(event)
        await self.parts.events.drain()


def served(
    settings: Settings | None = None,
    *,
    clock: FakeClock | None = None,
    sources: DashboardSources | None = None,
) -> Served:
    """Parts, the dashboard subscribed to their hub and the web context, as ``run`` wires them."""
    settings = settings if settings is not None else Settings()
    clock = clock if clock is not None else FakeClock(float(T0))
    metrics = Metrics.create()
    store = MemoryStore(window=settings.store.window_seconds, clock=clock)
    parts = make_parts(settings, clock=clock, metrics=metrics, store=store, market=None)
    dash = build_dashboard(parts, [parts.events], sources=sources)
    web = build_web(parts, [parts.events, dash], dashboard=dash)
    return Served(parts, clock, web.context, dash, web)


@attrs.frozen
class Frame:
    """One server-sent event as a browser parses it."""

    id: int | None
    event: str | None
    data: Any
    retry: int | None = None
    comment: str | None = None


async def read_frames(resp: ClientResponse, n: int, *, seconds: float = 5.0) -> list[Frame]:
    """The next ``n`` frames (events, retry lines and comments) of an SSE response."""
    frames: list[Frame] = []
    fields: dict[str, str] = {}
    async with asyncio.timeout(seconds):
        while len(frames) < n:
            raw = await resp.content.readline()
            if not raw:
                break
            line = raw.decode().rstrip("\n")
            if line == "":
                if fields:
                    frames.append(
                        Frame(
                            int(fields["id"]) if "id" in fields else None,
                            fields.get("event"),
                            json.loads(fields["data"]) if "data" in fields else None,
                            int(fields["retry"]) if "retry" in fields else None,
                            fields.get(":"),
                        )
                    )
                fields = {}
                continue
            if line.startswith(":"):
                fields[":"] = line[1:].strip()
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
    return frames


async def events_only(resp: ClientResponse, n: int) -> AsyncIterator[Frame]:
    """Yield the next ``n`` frames that carry an event."""
    got = 0
    while got < n:
        for frame in await read_frames(resp, 1):
            if frame.event is not None:
                got += 1
                yield frame
