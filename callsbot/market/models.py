"""Market-data value objects shared by the aggregator (validation) and the scorer (scoring)."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Protocol

import attrs


@attrs.frozen
class MarketSnapshot:
    """The best pair of a token on its own chain, as DexScreener reported it.

    Numbers DexScreener may omit are ``None``; prices arrive as strings and are parsed here.
    """

    chain: str
    token: str
    pair_address: str
    dex: str
    name: str
    symbol: str
    price_usd: float | None
    liquidity_usd: float | None
    volume_h24: float | None
    volume_h1: float | None
    market_cap: float | None
    fdv: float | None
    pair_created_at: float | None  # unix seconds (the API sends milliseconds)
    price_change_h1: float | None
    price_change_h24: float | None
    buys_h24: int | None = None
    sells_h24: int | None = None
    #: ``"base"``, or ``"quote"`` when the token is only the quote side of its best pair; then
    #: ``price_usd`` is derived (priceUsd / priceNative) and base-token-only numbers
    #: (market cap, FDV, price change) are ``None``.
    side: str = "base"


class Status(enum.Enum):
    """Whether a token counts."""

    VALID = "valid"
    INVALID = "invalid"
    #: Could not tell right now (429, 5xx, timeout, broken body): ask again later, never cache.
    UNKNOWN = "unknown"


class Reason(enum.Enum):
    """Why a verdict is what it is."""

    OK = "ok"
    NO_PAIRS = "no_pairs"
    LOW_LIQUIDITY = "low_liquidity"
    LOW_VOLUME = "low_volume"
    UNKNOWN_NOW = "unknown_now"


@attrs.frozen
class Verdict:
    """The market gate's answer for one token."""

    token: str
    status: Status
    reason: Reason
    snapshot: MarketSnapshot | None = None
    detail: str = ""

    @property
    def valid(self) -> bool:
        return self.status is Status.VALID


class MarketData(Protocol):
    """What the aggregator and the scorer need from market data."""

    async def verdicts(
        self, tokens: Sequence[str], *, chain: str = "solana"
    ) -> Mapping[str, Verdict]:
        """A verdict for every token in ``tokens`` (batched, cached, rate limited)."""
        ...

    async def resolve_pairs(
        self, pairs: Sequence[str], *, chain: str = "solana"
    ) -> Mapping[str, str | None]:
        """Base token of each pair address; ``None`` when the pair is unknown.

        Raises:
            MarketUnavailable: could not ask right now (the caller retries later).
        """
        ...

    async def locate(self, tokens: Sequence[str]) -> Mapping[str, str | None]:
        """The chain of each token's most liquid pair on any chain; ``None`` when it has none.

        Raises:
            MarketUnavailable: could not ask right now (the caller retries later).
        """
        ...


class MarketUnavailable(Exception):
    """Market data could not be fetched right now (rate limited, 5xx, timeout, bad body)."""
