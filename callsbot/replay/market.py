"""Market data "as of" the simulated clock: the :class:`MarketData` a replay hands the roles.

:class:`RecordedMarket` answers from the snapshots the live system observed: for a token asked
about at ``t``, the latest snapshot observed at or before ``t``, judged by the run's own
``[market]`` thresholds. Nothing observed yet means "unknown right now" (the pipeline defers,
the scorer parks the buy), exactly what a live lookup failure means; a later snapshot is
never used early.

:class:`CandleGate` stands in when no snapshot was recorded (a Telegram export): it judges a
token by the volume of its cached candles that closed in the 24 h before ``t``. Today's market
data would be look-ahead and survivorship; candle volume is the honest stand-in, and a run on it
is labelled "approximate gate".

Neither opens a connection; both publish a :class:`~callsbot.events.VerdictMade` the first time
an observation serves, as the live validator does for each fetch.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence

import attrs

from callsbot.clock import Clock
from callsbot.config import MarketSettings
from callsbot.errors import MarketUnavailable
from callsbot.events import EventHub, VerdictMade
from callsbot.market.dexscreener import address_key
from callsbot.market.gate import judge, unknown
from callsbot.models import Candle, MarketSnapshot, Reason, Status, Verdict
from callsbot.replay.tape import Observation, Outage, PricePath, Resolution

#: The volume window of the approximate gate (DexScreener's ``volume.h24``).
DAY = 86400
HOUR = 3600
_OUTAGE = "market data unavailable (recorded outage)"


class _Timeline:
    """Values of one key in the order they became visible; "the latest at or before t"."""

    __slots__ = ("times", "values")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.values: list[Observation] = []

    def add(self, obs: Observation) -> None:
        i = bisect.bisect_right(self.times, obs.at)
        self.times.insert(i, obs.at)
        self.values.insert(i, obs)

    def at(self, t: float) -> Observation | None:
        i = bisect.bisect_right(self.times, t)
        return self.values[i - 1] if i else None


class RecordedMarket:
    """Verdicts, pair resolutions and chains from recorded snapshots, as of ``clock``.

    Args:
        observations: the snapshots, any order.
        settings: the gate thresholds of the configuration being replayed.
        clock: the simulated clock.
        absent: the answer for a token never observed: ``"unknown"`` or ``"no_pairs"``.
        outages: spans in which every lookup fails (a recorded rate limit).
        resolutions: pair addresses the live run resolved (its recorded mentions of a pair),
            usable from their ``at`` on; snapshots resolve their own pair too.
        events: where a :class:`VerdictMade` goes the first time each observation serves.
    """

    def __init__(
        self,
        observations: Iterable[Observation],
        *,
        settings: MarketSettings,
        clock: Clock,
        absent: str = "unknown",
        outages: Sequence[Outage] = (),
        resolutions: Iterable[Resolution] = (),
        events: EventHub | None = None,
    ) -> None:
        if absent not in ("unknown", "no_pairs"):
            raise ValueError(f"absent must be 'unknown' or 'no_pairs', got {absent!r}")
        self._settings = settings
        self._clock = clock
        self._absent = absent
        self._outages = tuple(sorted(outages, key=lambda o: o.start))
        self._events = events
        self._tokens: dict[tuple[str, str], _Timeline] = {}
        self._chains: dict[str, list[Observation]] = {}
        self._pairs: dict[tuple[str, str], _Timeline] = {}
        self._judged: dict[int, Verdict] = {}
        for obs in observations:
            self.observe(obs)
        for r in resolutions:
            self._pair_timeline(r.chain, r.pair).add(Observation(r.at, r.chain, r.token, None))

    def _pair_timeline(self, chain: str, pair: str) -> _Timeline:
        key = (chain.lower(), address_key(pair))
        line = self._pairs.get(key)
        if line is None:
            line = self._pairs[key] = _Timeline()
        return line

    def observe(self, obs: Observation) -> None:
        """Add one observation (the loaders, and tests that inject one mid-run)."""
        key = (obs.chain.lower(), address_key(obs.token))
        line = self._tokens.get(key)
        if line is None:
            line = self._tokens[key] = _Timeline()
        line.add(obs)
        self._chains.setdefault(address_key(obs.token), []).append(obs)
        if obs.snapshot is not None:
            snap = obs.snapshot
            self._pair_timeline(snap.chain, snap.pair_address).add(
                Observation(obs.at, snap.chain, snap.token, None)
            )

    def _down(self, now: float) -> bool:
        return bool(self._outages) and any(o.start <= now < o.end for o in self._outages)

    async def verdicts(
        self, tokens: Sequence[str], *, chain: str = "solana"
    ) -> Mapping[str, Verdict]:
        """The verdict of every token as of now (see the module's docstring)."""
        now = self._clock.time()
        chain = chain.lower()
        out: dict[str, Verdict] = {}
        down = self._down(now)
        for token in dict.fromkeys(tokens):
            if down:
                out[token] = unknown(token, _OUTAGE)
                continue
            line = self._tokens.get((chain, token)) or self._tokens.get((chain, address_key(token)))
            obs = line.at(now) if line is not None else None
            if obs is None:
                if self._absent == "no_pairs":
                    out[token] = judge(token, None, self._settings, chain=chain)
                else:
                    out[token] = unknown(token, "no snapshot observed yet")
                continue
            verdict = self._judged.get(id(obs))
            if verdict is None:
                # Judged once per observation: the live validator, too, judges once per fetch.
                verdict = judge(token, obs.snapshot, self._settings, chain=chain)
                self._judged[id(obs)] = verdict
                if self._events is not None:
                    self._events.publish(VerdictMade(at=now, chain=obs.chain, verdict=verdict))
            out[token] = verdict if verdict.token == token else attrs.evolve(verdict, token=token)
        return out

    async def resolve_pairs(
        self, pairs: Sequence[str], *, chain: str = "solana"
    ) -> Mapping[str, str | None]:
        """The base token of each pair seen at or before now; ``None`` for a pair never seen.

        Raises:
            MarketUnavailable: inside a recorded outage.
        """
        now = self._clock.time()
        if self._down(now):
            raise MarketUnavailable(_OUTAGE)
        out: dict[str, str | None] = {}
        for pair in dict.fromkeys(pairs):
            line = self._pairs.get((chain.lower(), address_key(pair)))
            obs = line.at(now) if line is not None else None
            out[pair] = obs.token if obs is not None else None
        return out

    async def locate(self, tokens: Sequence[str]) -> Mapping[str, str | None]:
        """The chain of each token's most liquid snapshot observed at or before now.

        Raises:
            MarketUnavailable: inside a recorded outage.
        """
        now = self._clock.time()
        if self._down(now):
            raise MarketUnavailable(_OUTAGE)
        out: dict[str, str | None] = {}
        for token in dict.fromkeys(tokens):
            seen = [
                o
                for o in self._chains.get(address_key(token), [])
                if o.at <= now and o.snapshot is not None
            ]
            out[token] = max(seen, key=_liquidity).chain if seen else None
        return out


class CandleGate:
    """The approximate gate: a token trades when its cached candles say so, as of ``clock``.

    A token is valid when the candles that closed in the 24 h before now traded at least
    ``[market] min_volume_h24_usd``; liquidity is not known from candles and is not judged
    (the snapshot's liquidity is ``None``, which the scorer scores as unknown). No cached path
    is "unknown right now"; a path without a closed candle yet is "no pairs"; otherwise a
    volume below the threshold is "low volume".

    Args:
        paths: cached price paths by mint.
        settings: the gate thresholds.
        clock: the simulated clock.
        chain: the chain the paths are on.
        events: where a :class:`VerdictMade` goes per verdict given.
    """

    def __init__(
        self,
        paths: Mapping[str, PricePath],
        *,
        settings: MarketSettings,
        clock: Clock,
        chain: str = "solana",
        events: EventHub | None = None,
    ) -> None:
        self._paths = {address_key(k): v for k, v in paths.items()}
        self._pools = {address_key(p.pool): p.token for p in paths.values()}
        self._settings = settings
        self._clock = clock
        self._chain = chain
        self._events = events

    def snapshot(self, path: PricePath, now: float) -> MarketSnapshot | None:
        """The snapshot ``path``'s candles give at ``now``; ``None`` before any closed."""
        closed = closed_candles(path, now)
        if not closed:
            return None
        day = [c for c, _ in closed if c.ts >= now - DAY]
        hour = [c for c, _ in closed if c.ts >= now - HOUR]
        return MarketSnapshot(
            chain=self._chain,
            token=path.token,
            pair_address=path.pool,
            dex="",
            name=path.name,
            symbol=path.symbol,
            price_usd=closed[-1][0].close,
            liquidity_usd=None,
            volume_h24=sum(c.volume for c in day),
            volume_h1=sum(c.volume for c in hour),
            market_cap=None,
            fdv=None,
            pair_created_at=None,
            price_change_h1=None,
            price_change_h24=None,
        )

    async def verdicts(
        self, tokens: Sequence[str], *, chain: str = "solana"
    ) -> Mapping[str, Verdict]:
        """The approximate verdict of every token as of now."""
        now = self._clock.time()
        out: dict[str, Verdict] = {}
        for token in dict.fromkeys(tokens):
            path = self._paths.get(address_key(token))
            if path is None:
                out[token] = unknown(token, "no cached candles")
                continue
            snap = self.snapshot(path, now) if chain.lower() == self._chain else None
            verdict = _judge_volume(token, snap, self._settings)
            if self._events is not None:
                self._events.publish(VerdictMade(at=now, chain=chain, verdict=verdict))
            out[token] = verdict
        return out

    async def resolve_pairs(
        self, pairs: Sequence[str], *, chain: str = "solana"
    ) -> Mapping[str, str | None]:
        """The mint of each cached pool (``None`` for any other address)."""
        same = chain.lower() == self._chain
        return {p: self._pools.get(address_key(p)) if same else None for p in dict.fromkeys(pairs)}

    async def locate(self, tokens: Sequence[str]) -> Mapping[str, str | None]:
        """The cache's chain for a cached mint, else ``None``."""
        return {
            t: self._chain if address_key(t) in self._paths else None for t in dict.fromkeys(tokens)
        }


def _liquidity(obs: Observation) -> float:
    return (obs.snapshot.liquidity_usd or 0.0) if obs.snapshot is not None else 0.0


def closed_candles(path: PricePath, now: float) -> list[tuple[Candle, int]]:
    """The path's candles that had closed by ``now`` with their length, oldest first.

    1-minute candles where there are any, 5-minute candles before the first of them.
    """
    minute = [(c, 60) for c in path.minute if c.ts + 60 <= now]
    first = path.minute[0].ts if path.minute else None
    five = [
        (c, 300)
        for c in path.five_minute
        if c.ts + 300 <= now and (first is None or c.ts + 300 <= first)
    ]
    return five + minute


def _judge_volume(token: str, snap: MarketSnapshot | None, settings: MarketSettings) -> Verdict:
    if snap is None:
        return Verdict(token, Status.INVALID, Reason.NO_PAIRS, None, "no closed candle yet")
    volume = snap.volume_h24 or 0.0
    if volume < settings.min_volume_h24_usd:
        detail = f"candle volume 24h ${volume:,.0f} < ${settings.min_volume_h24_usd:,.0f}"
        return Verdict(token, Status.INVALID, Reason.LOW_VOLUME, snap, detail)
    return Verdict(token, Status.VALID, Reason.OK, snap, f"candle volume 24h ${volume:,.0f}")
