"""Market data: DexScreener client, quality gate and the batched, cached validator."""

from callsbot.errors import MarketUnavailable
from callsbot.market.dexscreener import (
    BadResponse,
    ConnectionFailed,
    CoolingDown,
    DexScreenerClient,
    DexScreenerError,
    HttpError,
    Pair,
    RateLimited,
    RequestTimeout,
    ServerError,
    TokenRef,
    address_key,
    build_limiter,
    parse_pairs,
    same_address,
)
from callsbot.market.gate import MarketValidator, best_pair, judge, open_market, snapshot_of
from callsbot.market.models import MarketData, MarketSnapshot, Reason, Status, Verdict

__all__ = [
    "BadResponse",
    "ConnectionFailed",
    "CoolingDown",
    "DexScreenerClient",
    "DexScreenerError",
    "HttpError",
    "MarketData",
    "MarketSnapshot",
    "MarketUnavailable",
    "MarketValidator",
    "Pair",
    "RateLimited",
    "Reason",
    "RequestTimeout",
    "ServerError",
    "Status",
    "TokenRef",
    "Verdict",
    "address_key",
    "best_pair",
    "build_limiter",
    "judge",
    "open_market",
    "parse_pairs",
    "same_address",
    "snapshot_of",
]
