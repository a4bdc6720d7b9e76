"""The types every layer shares: what came in, what was found, what was decided.

This is the bottom of the package: it imports nothing from callsbot but :mod:`callsbot.errors`'s
siblings, so sources, pure logic, stores and sinks can all speak in these values without
importing each other.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

import attrs

# -- messages ----------------------------------------------------------------------------------


@attrs.frozen
class Entity:
    """One Telegram formatting entity, with Bot-API type names.

    Attributes:
        type: Bot-API name such as ``"text_url"`` (alias ``"text_link"``), ``"url"``, ``"code"``,
            ``"pre"``, ``"bold"``.
        offset: Start, in UTF-16 code units of the plain message text.
        length: Length, in UTF-16 code units.
        url: Hidden target URL of a ``text_url`` entity, else ``None``.
    """

    type: str
    offset: int
    length: int
    url: str | None = None


@attrs.frozen
class ForwardHeader:
    """Where a forwarded message came from (Telegram's ``fwd_from``).

    Attributes:
        origin_peer: peer id of the original chat or channel (``-100…`` for channels), or the
            user id of the original sender; ``None`` when Telegram hides it (a privacy setting).
        origin_name: the original author's name when the peer is hidden, else ``None``.
        origin_message_id: the message id in the original channel (channel posts only).
        origin_date: unix seconds of the original message.
    """

    origin_peer: int | None = None
    origin_name: str | None = None
    origin_message_id: int | None = None
    origin_date: int | None = None


@attrs.frozen
class MessageRef:
    """Which message a mention came from, and when it was seen.

    Attributes:
        source: ``live``, ``edit``, ``catch_up``, ``backfill`` or ``replay``.
        chat_id: Telegram's peer id of the group.
        group: the name mentions are recorded under (``@username``, else ``str(chat_id)``).
        message_id: the message's id within the chat.
        ts: the message's own date (Telegram's server clock), unix seconds.
        received_at: unix seconds when callsbot received it (``None`` when unknown).
    """

    source: str
    chat_id: int
    group: str
    message_id: int
    ts: int
    received_at: float | None = None


@attrs.frozen
class IncomingMessage:
    """One Telegram message from a call group, whatever delivered it.

    Attributes:
        chat_id: Telegram's peer id of the group (``-100…`` for channels and supergroups).
        group: the name mentions are recorded under: ``@username``, else ``str(chat_id)``.
        message_id: the message's id within the chat.
        ts: the message's own date (Telegram's server clock), unix seconds.
        text: the plain text (``message.message``, not the markdown rendering).
        entities: formatting entities, Bot-API names, UTF-16 offsets.
        source: ``live``, ``edit``, ``catch_up``, ``backfill`` or ``replay``.
        sender_id: the posting user's id, when Telegram names one (``None`` for channel posts).
        forward: the forward header when the message is a forward.
        received_at: unix seconds when callsbot received it.
    """

    chat_id: int
    group: str
    message_id: int
    ts: int
    text: str
    entities: tuple[Entity, ...] = ()
    source: str = "live"
    sender_id: int | None = None
    forward: ForwardHeader | None = None
    received_at: float | None = None

    @property
    def ref(self) -> MessageRef:
        """The message reference that every mention from this message carries."""
        return MessageRef(
            self.source, self.chat_id, self.group, self.message_id, self.ts, self.received_at
        )


def message_to_json(m: IncomingMessage) -> dict[str, Any]:
    """A JSON-ready dict of ``m`` (spools, recordings); :func:`message_from_json` reads it."""
    return attrs.asdict(m, recurse=True)


def message_from_json(raw: dict[str, Any]) -> IncomingMessage:
    """The message :func:`message_to_json` wrote.

    Raises:
        TypeError, KeyError, ValueError: ``raw`` is not such a dict.
    """
    fields = dict(raw)
    entities = tuple(Entity(**e) for e in fields.pop("entities", ()))
    forward = fields.pop("forward", None)
    return IncomingMessage(
        **fields,
        entities=entities,
        forward=None if forward is None else ForwardHeader(**forward),
    )


@attrs.frozen
class Call:
    """One group's latest call of a token inside the window (what consensus is computed over).

    Attributes:
        group: the group's name.
        ts: unix seconds of its latest mention of the token.
    """

    group: str
    ts: int


# -- the feed ----------------------------------------------------------------------------------


@attrs.frozen
class Buy:
    """A wallet paid a quote asset (token0) and received ``token`` (token1).

    Attributes:
        tx_hash: the transaction signature / hash.
        wallet: the buying wallet.
        wallet_label: Cielo's label of the wallet, when it has one.
        token: the bought token's address.
        symbol: its symbol as Cielo reported it (may be empty).
        name: its name as Cielo reported it (may be empty).
        usd: trade size in USD, ``None`` when Cielo sent no usable amount.
        ts: unix seconds of the trade.
        dex: where it traded (may be empty).
        chain: the chain id (``solana``, ``ethereum``, ...).
        first_interaction: the wallet's first trade of this token.
    """

    tx_hash: str
    wallet: str
    wallet_label: str | None
    token: str
    symbol: str
    name: str
    usd: float | None
    ts: float
    dex: str
    chain: str
    first_interaction: bool


# -- market data -------------------------------------------------------------------------------


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


@attrs.frozen
class Candle:
    """One OHLCV interval of a pool, priced in USD for one token.

    Attributes:
        ts: start of the interval, unix seconds.
        open: first trade's price.
        high: highest trade's price.
        low: lowest trade's price.
        close: last trade's price.
        volume: traded volume in USD.
    """

    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float


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


def candle_series(rows: Iterable[Candle]) -> tuple[Candle, ...]:
    """``rows`` sorted by start, one candle per start: of duplicates, the last given wins.

    Providers send rows newest first, oldest first or with the in-progress candle twice; every
    consumer of a series goes through this, so none of them assumes an order. Gaps (minutes
    without trades) stay gaps.
    """
    by_start: dict[int, Candle] = {}
    for row in rows:
        by_start[row.ts] = row
    return tuple(by_start[ts] for ts in sorted(by_start))
