"""What a replay plays: one recording, whatever its file format, as frozen values in time order.

A :class:`Tape` holds only what the live system could see, each item stamped with the moment it
became visible (``at``): messages as they were received, buys as the feed served them, market
snapshots as they were observed, price paths as cached OHLCV bodies. The engine reads an item
only once its ``at`` has passed on the simulated clock (docs/backtest.md, "no look-ahead").
The loaders in :mod:`callsbot.replay.load` build tapes from the three recording formats.
"""

from __future__ import annotations

import enum

import attrs

from callsbot.models import Buy, Candle, IncomingMessage, MarketSnapshot


class Gate(enum.Enum):
    """How the market gate is answered during a replay."""

    #: From the market snapshots the live system observed (the history's verdicts).
    RECORDED = "recorded"
    #: From candle volume, because no snapshot was recorded: the run is labelled so.
    APPROXIMATE = "approximate gate"


@attrs.frozen
class TapeMessage:
    """A call-group message and the moment the live system received it.

    Attributes:
        at: when it reaches the pipeline (unix seconds).
        message: the message as the listener hands it over.
        dated_at_delivery: the message's date is the moment of delivery (a Telegram session
            recording, whose times are offsets: the demo's), not ``message.ts``.
    """

    at: float
    message: IncomingMessage
    dated_at_delivery: bool = False


@attrs.frozen
class TapeBuy:
    """A buy and the moment the feed served it."""

    at: float
    buy: Buy


@attrs.frozen
class FeedSkip:
    """A feed item that was not a buy (a sell, a transfer...), for the run's counts."""

    at: float
    reason: str


@attrs.frozen
class Observation:
    """A market snapshot observed at ``at`` (``snapshot`` ``None``: no pairs were found)."""

    at: float
    chain: str
    token: str
    snapshot: MarketSnapshot | None


@attrs.frozen
class Resolution:
    """A pair address the live run resolved to its base token (a recorded pair mention)."""

    at: float
    chain: str
    pair: str
    token: str


@attrs.frozen
class Outage:
    """A span in which market data could not be had (a recorded 429): verdicts are unknown."""

    start: float
    end: float


@attrs.frozen
class PricePath:
    """A token's cached candles on one pool.

    Attributes:
        token: the mint the prices are for.
        pool: the pool they were fetched from.
        minute: 1-minute candles, ascending, one per start.
        five_minute: 5-minute candles, likewise.
        as_of: the candles are complete up to this time (the latest fetch).
        symbol: the token's symbol as the body's ``meta`` names it (may be empty).
        name: its name, likewise.
    """

    token: str
    pool: str
    minute: tuple[Candle, ...]
    five_minute: tuple[Candle, ...] = ()
    as_of: float = 0.0
    symbol: str = ""
    name: str = ""


@attrs.frozen
class RecordedAlert:
    """An alert the recorded run sent (for comparing a replay with what really happened)."""

    at: float
    token: str
    total: float


@attrs.frozen
class Tape:
    """One recording, ready to replay.

    Attributes:
        start: the first moment of the recording (unix seconds).
        end: the last moment; nothing later is played.
        messages: call-group messages in delivery order.
        buys: feed buys in the order they were served.
        skipped: feed items that were not buys.
        observations: market snapshots in the order observed.
        outages: spans without market data.
        resolutions: pair addresses resolved by the live run.
        paths: cached price paths by mint.
        absent: what the market says of a token never observed: ``"unknown"`` (a history: not
            asked yet) or ``"no_pairs"`` (a complete market recording: the demo's).
        gate: whether the gate is answered from snapshots or approximated from candle volume.
        step: deliver messages only on this grid of seconds after ``start`` (0: at their own
            time); a session recording was captured in the listener's 5-second steps.
        feed_poll: buys are taken at the scorer's polls (every ``cielo.poll_seconds`` from
            ``start``) rather than at their own time (a history's buys carry their poll's time).
        recorded_alerts: what the recorded run sent, when the recording says.
        rebuilt_texts: messages whose text was not kept and was rebuilt from their addresses.
        source: what the tape was read from (for people).
    """

    start: float
    end: float
    messages: tuple[TapeMessage, ...] = ()
    buys: tuple[TapeBuy, ...] = ()
    skipped: tuple[FeedSkip, ...] = ()
    observations: tuple[Observation, ...] = ()
    outages: tuple[Outage, ...] = ()
    resolutions: tuple[Resolution, ...] = ()
    paths: dict[str, PricePath] = attrs.field(factory=dict)
    absent: str = "unknown"
    gate: Gate = Gate.RECORDED
    step: float = 0.0
    feed_poll: bool = False
    recorded_alerts: tuple[RecordedAlert, ...] = ()
    rebuilt_texts: int = 0
    source: str = ""

    @property
    def days(self) -> float:
        """The recording's length in days."""
        return max(self.end - self.start, 0.0) / 86400.0
