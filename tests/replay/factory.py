"""Small tapes for the replay tests: snapshots, messages, buys and price paths."""

from __future__ import annotations

import math

from callsbot.models import Buy, Candle, IncomingMessage, MarketSnapshot
from callsbot.replay.tape import Observation, PricePath, Tape, TapeBuy, TapeMessage
from callsbot.testing.geckoterminal import aggregate
from tests.tg import mint

T0 = 1_800_000_000.0
GROUPS = tuple(f"@group{i}" for i in range(6))
TOKENS = tuple(mint(900 + i) for i in range(6))


def chat_of(group: str) -> int:
    return -(10**12) - 1_000_000 - GROUPS.index(group)


def snapshot(
    token: str,
    *,
    liquidity: float = 60_000.0,
    volume: float = 250_000.0,
    price: float = 0.001,
    created: float = T0 - 6 * 3600,
) -> MarketSnapshot:
    return MarketSnapshot(
        chain="solana",
        token=token,
        pair_address="P" + token[1:],
        dex="raydium",
        name=f"Token {token[:4]}",
        symbol=token[:4].upper(),
        price_usd=price,
        liquidity_usd=liquidity,
        volume_h24=volume,
        volume_h1=volume / 10,
        market_cap=1_000_000.0,
        fdv=None,
        pair_created_at=created,
        price_change_h1=5.0,
        price_change_h24=20.0,
    )


def observation(at: float, token: str, **kw: float) -> Observation:
    return Observation(at, "solana", token, snapshot(token, **kw))


def message(at: float, group: str, token: str, message_id: int) -> TapeMessage:
    return TapeMessage(
        at,
        IncomingMessage(
            chat_id=chat_of(group),
            group=group,
            message_id=message_id,
            ts=int(at),
            text=f"🔥 CA: {token}",
            received_at=at,
        ),
    )


def buy(
    at: float, token: str, *, usd: float = 6_000.0, n: int = 0, label: str | None = None
) -> TapeBuy:
    return TapeBuy(
        at,
        Buy(
            tx_hash=f"tx-{token[:6]}-{n}-{int(at)}",
            wallet=f"wallet{n}",
            wallet_label=label,
            token=token,
            symbol=token[:4].upper(),
            name="",
            usd=usd,
            ts=at,
            dex="raydium",
            chain="solana",
            first_interaction=True,
        ),
    )


def path(token: str, start: float, closes: list[float], *, step: int = 60) -> PricePath:
    """Candles of ``step`` seconds from ``start`` (open at the last close, wicks of 1 %), and
    the same aggregated to 5 minutes (what the path maths read after 4 h)."""
    candles = []
    last = closes[0]
    for i, close in enumerate(closes):
        ts = int(start) + i * step
        candles.append(
            Candle(ts, last, max(last, close) * 1.01, min(last, close) * 0.99, close, 500.0)
        )
        last = close
    end = float(int(start) + len(closes) * step)
    return PricePath(token, "P" + token[1:], tuple(candles), aggregate(candles, 300), end)


def pump(token: str, start: float, *, peak: float, minutes: int = 1500) -> PricePath:
    """A smooth rise to ``peak``× at the middle, then back down."""
    closes = [1.0 + (peak - 1.0) * math.sin(math.pi * i / minutes) for i in range(minutes)]
    return path(token, start, closes)


def tape(
    messages: list[TapeMessage],
    buys: list[TapeBuy],
    observations: list[Observation],
    *,
    paths: dict[str, PricePath] | None = None,
    end: float | None = None,
) -> Tape:
    times = [m.at for m in messages] + [b.at for b in buys] + [o.at for o in observations]
    return Tape(
        start=T0,
        end=end if end is not None else max(times, default=T0),
        messages=tuple(sorted(messages, key=lambda m: m.at)),
        buys=tuple(sorted(buys, key=lambda b: b.at)),
        observations=tuple(sorted(observations, key=lambda o: o.at)),
        paths=paths or {},
        source="test tape",
    )
