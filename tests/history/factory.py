"""Events of every kind the history keeps, with every optional field filled in."""

from __future__ import annotations

from callsbot.alert import Alert
from callsbot.events import AlertSent, BuyScored, Event, LevelReached, MentionRecorded, VerdictMade
from callsbot.models import (
    Buy,
    ForwardHeader,
    MarketSnapshot,
    MessageRef,
    Reason,
    Status,
    Verdict,
)
from callsbot.scoring import Consensus, ScoreCard, ScoreLine
from tests.tg import mint

T0 = 1_700_000_000.0
CHAT = -1_001_234_567_890


def text(i: int) -> str:
    return f"🚀 NEW CALL #{i}\nCA: {mint(i)}\nMC 45k, LP burned 🔥 https://t.me/alpha?start=r-{i}"


def mention(
    i: int = 1,
    *,
    at: float = T0,
    token: str | None = None,
    chat_id: int = CHAT,
    group: str = "@alpha",
    message_id: int | None = None,
    source: str = "live",
    body: str | None = None,
    forward: ForwardHeader | None = None,
    count: int = 1,
) -> MentionRecorded:
    return MentionRecorded(
        at=at,
        ref=MessageRef(
            source, chat_id, group, message_id if message_id is not None else i, int(at) - 3, at - 1
        ),
        token=token or mint(i),
        mention_kind="mint",
        chain="solana",
        count=count,
        pair=None,
        text=text(i) if body is None else body,
        sender_id=4242,
        forward=forward,
    )


def forwarded(i: int = 2, *, at: float = T0) -> MentionRecorded:
    return mention(
        i,
        at=at,
        forward=ForwardHeader(
            origin_peer=-1_009_999, origin_name=None, origin_message_id=77, origin_date=int(at) - 60
        ),
    )


def level(i: int = 1, *, at: float = T0, level_: int = 2) -> LevelReached:
    ref = MessageRef("live", CHAT, "@alpha", i, int(at) - 3, at - 1)
    return LevelReached(
        at=at,
        token=mint(i),
        chain="solana",
        level=level_,
        ts=int(at) - 3,
        groups=("@beta", "@alpha"),
        ref=ref,
    )


def snapshot(i: int = 1) -> MarketSnapshot:
    return MarketSnapshot(
        chain="solana",
        token=mint(i),
        pair_address=mint(1000 + i),
        dex="raydium",
        name="Pepe <b>",
        symbol="PEPE",
        price_usd=0.00123,
        liquidity_usd=50_000.0,
        volume_h24=120_000.0,
        volume_h1=9_000.0,
        market_cap=1_200_000.0,
        fdv=None,
        pair_created_at=1_699_990_000.0,
        price_change_h1=12.5,
        price_change_h24=-3.0,
        buys_h24=420,
        sells_h24=380,
        side="base",
    )


def verdict(i: int = 1, *, at: float = T0, valid: bool = True) -> VerdictMade:
    v = (
        Verdict(mint(i), Status.VALID, Reason.OK, snapshot(i))
        if valid
        else Verdict(mint(i), Status.INVALID, Reason.LOW_LIQUIDITY, snapshot(i), "liq $900")
    )
    return VerdictMade(at=at, chain="solana", verdict=v)


def buy(i: int = 1) -> Buy:
    return Buy(
        tx_hash=f"tx{i}",
        wallet=f"wallet{i % 3}",
        wallet_label="smart 🐋" if i % 2 else None,
        token=mint(i),
        symbol="PEPE",
        name="Pepe",
        usd=1234.5,
        ts=T0 - 5 + i,  # a transaction has one time, however often it is scored
        dex="raydium",
        chain="solana",
        first_interaction=True,
    )


def card(groups: tuple[str, ...] = ("@alpha", "@beta")) -> ScoreCard:
    return ScoreCard(
        lines=(ScoreLine(2.0, "tracked wallet bought"), ScoreLine(-0.5, "pair age 5 min")),
        base=1.5,
        consensus=Consensus(1, groups, False, "🤝 MULTI-BOT CONSENSUS: +1"),
        total=2.5,
    )


def scored(i: int = 1, *, at: float = T0, rescore: bool = False) -> BuyScored:
    return BuyScored(at=at, buy=buy(i), card=card(), outcome="watching", rescore=rescore)


def alert(i: int = 1, *, at: float = T0) -> AlertSent:
    a = Alert(buy=buy(i), snapshot=snapshot(i), card=card(), created_at=at - 0.25)
    return AlertSent(at=at, alert=a, deliveries=(("telegram", "981"), ("jsonl", None)))


def one_of_each(i: int = 1, *, at: float = T0) -> list[Event]:
    """One event of every kind, ``at`` apart by a second each, in time order."""
    return [
        mention(i, at=at),
        forwarded(i + 1, at=at + 1),
        level(i, at=at + 2),
        verdict(i, at=at + 3),
        verdict(i + 1, at=at + 3.5, valid=False),
        scored(i, at=at + 4),
        alert(i, at=at + 5),
    ]
