"""Helpers of the issue-17 fault tests: the real scorer asked for one token's consensus."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from callsbot.clock import Clock
from callsbot.config import Settings
from callsbot.events import MentionRecorded
from callsbot.metrics import Metrics
from callsbot.models import Buy, MarketSnapshot, MessageRef, Reason, Status, Verdict
from callsbot.scorer import Scorer
from callsbot.scoring import Consensus
from callsbot.sources.cielo import PollResult
from callsbot.store.base import SignalStore


class Feed:
    """A feed that serves what :meth:`add` queued, once."""

    def __init__(self) -> None:
        self.queued: list[Buy] = []

    def add(self, buy: Buy) -> None:
        self.queued.append(buy)

    async def poll(self) -> PollResult:
        buys, self.queued = tuple(self.queued), []
        return PollResult(buys=buys, outcome="ok")

    async def handled(self, buys: Sequence[Buy]) -> None:
        return None


class Market:
    """Every token trades: a valid snapshot for each."""

    async def verdicts(
        self, tokens: Sequence[str], *, chain: str = "solana"
    ) -> Mapping[str, Verdict]:
        return {t: Verdict(t, Status.VALID, Reason.OK, snapshot(t)) for t in tokens}

    async def resolve_pairs(
        self, pairs: Sequence[str], *, chain: str = "solana"
    ) -> Mapping[str, str | None]:
        return dict.fromkeys(pairs)


def snapshot(token: str) -> MarketSnapshot:
    return MarketSnapshot(
        chain="solana",
        token=token,
        pair_address="Gz3K8xkFPXg3bsJx4m9V5zJbGpXj5r7Ck3m1b1a2c3d4",
        dex="raydium",
        name="Moon Dog",
        symbol="MDOG",
        price_usd=0.00042,
        liquidity_usd=50_000.0,
        volume_h24=120_000.0,
        volume_h1=5_000.0,
        market_cap=1_000_000.0,
        fdv=1_000_000.0,
        pair_created_at=1_600_000_000.0,
        price_change_h1=5.0,
        price_change_h24=20.0,
    )


@attrs.define
class ConsensusProbe:
    """The real :class:`Scorer` over ``store``: each :meth:`ask` scores one new buy of a token
    and returns the consensus it used (nothing alerts: the threshold is out of reach)."""

    scorer: Scorer
    feed: Feed
    clock: Clock
    seq: int = 0

    @classmethod
    def over(
        cls, store: SignalStore, clock: Clock, settings: Settings | None = None
    ) -> ConsensusProbe:
        settings = settings or Settings()
        settings = attrs.evolve(
            settings, scoring=attrs.evolve(settings.scoring, alert_threshold=99.0)
        )
        feed = Feed()
        scorer = Scorer(settings, store, Market(), feed, [], clock=clock, metrics=Metrics.create())
        return cls(scorer, feed, clock)

    async def ask(self, token: str) -> Consensus:
        self.seq += 1
        self.feed.add(
            Buy(
                tx_hash=f"tx-{self.seq}",
                wallet="Wallet1111111111111111111111111111111111111",
                wallet_label=None,
                token=token,
                symbol="MDOG",
                name="Moon Dog",
                usd=2500.0,
                ts=self.clock.time(),
                dex="raydium",
                chain="solana",
                first_interaction=True,
            )
        )
        [scored] = await self.scorer.poll_once()
        assert scored.card is not None, scored
        return scored.card.consensus


def mention(
    token: str, group: str, chat_id: int, message_id: int, ts: int, *, at: float
) -> MentionRecorded:
    """What the pipeline publishes (and the recorder writes) for one recorded mention."""
    return MentionRecorded(
        at=at,
        ref=MessageRef("live", chat_id, group, message_id, ts, at),
        token=token,
        mention_kind="mint",
        chain="solana",
        count=1,
    )
