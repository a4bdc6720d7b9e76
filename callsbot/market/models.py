"""What the aggregator and the scorer need from market data (the values are in callsbot.models)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from callsbot.models import Verdict


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
