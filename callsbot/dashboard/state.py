"""The dashboard's state: what the events said, kept in memory, as JSON-ready rows.

No I/O and no waiting: :meth:`DashboardState.apply` takes one event and returns the changes to
send to the browsers (:class:`Update`); :meth:`DashboardState.snapshot` is the whole state for a
first load or a reconnect. Every string that came from outside (token names and symbols, wallet
labels, group names, score reasons) goes through :func:`callsbot.alert.clean` here: control and
bidi-override characters removed, length capped, the same rule the Telegram alert uses. The
browser then only ever sets text (``textContent``), so what is left cannot become markup.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from callsbot.alert import MAX_FIELD_CHARS, MAX_LINE_CHARS, Alert, clean
from callsbot.config import Tier
from callsbot.dashboard.sources import (
    HORIZONS,
    AlertKey,
    CallWeight,
    GroupsView,
    Interval,
    ScoreboardRow,
    Weights,
)
from callsbot.events import AlertSent, BuyScored, Event, MentionRecorded, VerdictMade
from callsbot.models import Buy, Reason, Status, Verdict
from callsbot.scoring import ScoreCard, tier_points

#: Longest group name shown (Telegram usernames are at most 32; chat ids are shorter).
MAX_GROUP_CHARS = 48


@attrs.frozen
class Update:
    """One change for the browsers: the server-sent event ``kind`` carrying ``data``."""

    kind: str
    data: dict[str, Any]


@attrs.frozen
class Limits:
    """How much the state keeps.

    Attributes:
        tokens: rows kept; past it the least recently changed row goes.
        alerts: alerts kept, newest first.
        verdicts: recent verdicts remembered for tokens that have no row yet (their names).
    """

    tokens: int = 300
    alerts: int = 100
    verdicts: int = 2000


@attrs.define
class _Token:
    token: str
    chain: str
    calls: dict[str, int] = attrs.field(factory=dict)
    symbol: str = ""
    name: str = ""
    buys: int = 0
    last_buy: Buy | None = None
    card: ScoreCard | None = None
    outcome: str | None = None
    scored_at: float | None = None
    rescore: bool = False
    verdict: Verdict | None = None
    verdict_at: float | None = None
    updated: float = 0.0


@attrs.define
class _Alert:
    key: AlertKey
    alert: Alert
    price: float | None
    outcomes: dict[str, float | None] = attrs.field(factory=dict)


class DashboardState:
    """Consensus forming per token, alerts, health and the provider panels.

    Args:
        window: the store's window, seconds (a call counts this long).
        tiers: the consensus tiers (``[consensus] tiers``).
        threshold: the alert threshold (``[scoring] alert_threshold``).
        limits: what is kept.
        weights: per-call weights and discounts (weighted consensus), when wired.
    """

    def __init__(
        self,
        *,
        window: int,
        tiers: Sequence[Tier],
        threshold: float,
        limits: Limits | None = None,
        weights: Weights | None = None,
    ) -> None:
        self._window = window
        self._tiers = tuple(tiers)
        self._threshold = threshold
        self._limits = limits if limits is not None else Limits()
        self._weights = weights
        self._tokens: dict[str, _Token] = {}
        self._alerts: collections.deque[_Alert] = collections.deque(maxlen=self._limits.alerts)
        self._verdicts: collections.OrderedDict[str, tuple[Verdict, float]] = (
            collections.OrderedDict()
        )
        self._health: tuple[str, ...] | None = None
        self._scoreboard: tuple[ScoreboardRow, ...] | None = None
        self._groups: GroupsView | None = None
        self._outcomes_available = False

    # -- reading -------------------------------------------------------------------------------

    @property
    def tokens(self) -> tuple[str, ...]:
        """Tokens with a row."""
        return tuple(self._tokens)

    @property
    def alert_keys(self) -> tuple[AlertKey, ...]:
        """The alerts kept, newest first."""
        return tuple(a.key for a in self._alerts)

    def row(self, token: str, now: float) -> dict[str, Any] | None:
        """The row of ``token`` as the browser gets it, ``None`` when it has none."""
        entry = self._tokens.get(token)
        return None if entry is None else self._token_json(entry, now)

    def snapshot(self, now: float) -> dict[str, Any]:
        """The whole state (calls that left the window are not shown)."""
        rows = [self._token_json(t, now) for t in self._tokens.values()]
        rows.sort(key=lambda r: (-r["groups"], -r["updated"]))
        return {
            "now": now,
            "window_s": self._window,
            "threshold": self._threshold,
            "tiers": [{"min_groups": t.min_groups, "points": t.points} for t in self._tiers],
            "horizons": list(HORIZONS),
            "tokens": rows,
            "alerts": [self._alert_json(a) for a in self._alerts],
            "health": self._health_json(),
            "scoreboard": self._scoreboard_json(),
            "groups": self._groups_json(),
        }

    # -- events --------------------------------------------------------------------------------

    def apply(self, event: Event) -> list[Update]:
        """Take one event; return what changed for the browsers."""
        if isinstance(event, MentionRecorded):
            return self._mention(event)
        if isinstance(event, BuyScored):
            return self._scored(event)
        if isinstance(event, AlertSent):
            return self._alerted(event)
        if isinstance(event, VerdictMade):
            return self._verdict(event)
        return []

    def seed(self, calls: Mapping[str, Mapping[str, int]], now: float) -> list[Update]:
        """Rows for the calls already in the window (the store's snapshot at start)."""
        updates: list[Update] = []
        for token, groups in calls.items():
            entry = self._entry(token, "", now)
            for group, ts in groups.items():
                entry.calls[group] = max(entry.calls.get(group, 0), int(ts))
            updates.append(self._row_update(entry, now, at=now))
        return updates + self._trim(now)

    def _entry(self, token: str, chain: str, at: float) -> _Token:
        entry = self._tokens.pop(token, None)
        if entry is None:
            entry = _Token(token, chain)
            known = self._verdicts.get(token)
            if known is not None:
                self._take_verdict(entry, *known)
        elif chain and not entry.chain:
            entry.chain = chain
        entry.updated = max(entry.updated, at)
        self._tokens[token] = entry  # most recently changed last: trimming starts at the front
        return entry

    def _mention(self, event: MentionRecorded) -> list[Update]:
        known = event.token in self._tokens
        entry = self._entry(event.token, event.chain, event.at)
        ts = min(event.ref.ts, int(event.at))  # the store clamps future dates to now, likewise
        ts = max(entry.calls.get(event.ref.group, 0), ts)
        entry.calls[event.ref.group] = ts
        if known and self._weights is None:
            # The hot path: a call on a row the browsers have is sent as just the call (the
            # browser counts the groups and the tier itself), not as the whole row again.
            call = {"group": clean(event.ref.group, MAX_GROUP_CHARS), "ts": ts}
            return [Update("call", {"at": event.at, "token": event.token, "call": call})]
        return [self._row_update(entry, event.at, at=event.at), *self._trim(event.at)]

    def _scored(self, event: BuyScored) -> list[Update]:
        entry = self._entry(event.buy.token, event.buy.chain, event.at)
        if not event.rescore and event.buy != entry.last_buy:
            entry.buys += 1
        entry.last_buy = event.buy
        entry.card = event.card
        entry.outcome = event.outcome
        entry.scored_at = event.at
        entry.rescore = event.rescore
        if not entry.symbol and event.buy.symbol:
            entry.symbol = clean(event.buy.symbol, 32)
        if not entry.name and event.buy.name:
            entry.name = clean(event.buy.name)
        return [self._row_update(entry, event.at, at=event.at), *self._trim(event.at)]

    def _alerted(self, event: AlertSent) -> list[Update]:
        alert = event.alert
        item = _Alert(AlertKey(alert.token, alert.created_at), alert, alert.snapshot.price_usd)
        known = self._tokens.get(alert.token)
        if (
            known is not None
            and known.verdict is not None
            and known.verdict.snapshot is not None
            and (known.verdict_at or 0.0) > alert.created_at
        ):
            item.price = known.verdict.snapshot.price_usd
        self._alerts.appendleft(item)
        return [Update("alert", {"at": event.at, "alert": self._alert_json(item)})]

    def _verdict(self, event: VerdictMade) -> list[Update]:
        verdict = event.verdict
        self._verdicts[verdict.token] = (verdict, event.at)
        self._verdicts.move_to_end(verdict.token)
        while len(self._verdicts) > self._limits.verdicts:
            self._verdicts.popitem(last=False)
        updates: list[Update] = []
        entry = self._tokens.get(verdict.token)
        if entry is not None and verdict.status is not Status.UNKNOWN:
            self._take_verdict(entry, verdict, event.at)
            entry.updated = max(entry.updated, event.at)
            updates.append(self._row_update(entry, event.at, at=event.at))
        price = verdict.snapshot.price_usd if verdict.snapshot is not None else None
        if price is not None:
            for item in self._alerts:
                if item.key.token == verdict.token and item.price != price:
                    item.price = price
                    updates.append(
                        Update("alert", {"at": event.at, "alert": self._alert_json(item)})
                    )
        return updates

    def _take_verdict(self, entry: _Token, verdict: Verdict, at: float) -> None:
        entry.verdict, entry.verdict_at = verdict, at
        snap = verdict.snapshot
        if snap is not None:
            entry.symbol = clean(snap.symbol, 32) or entry.symbol
            entry.name = clean(snap.name) or entry.name
            entry.chain = entry.chain or snap.chain

    # -- time, health and providers ------------------------------------------------------------

    def expire(self, now: float) -> list[Update]:
        """Drop calls that left the window and rows with nothing left to show."""
        updates: list[Update] = []
        for token, entry in list(self._tokens.items()):
            live = {g: ts for g, ts in entry.calls.items() if ts + self._window > now}
            if live and len(live) == len(entry.calls):
                continue
            entry.calls = live
            if not live and entry.updated + self._window <= now:
                del self._tokens[token]
                updates.append(Update("token_removed", {"token": token}))
            else:
                updates.append(self._row_update(entry, now, at=now))
        return updates

    def _trim(self, now: float) -> list[Update]:
        updates: list[Update] = []
        while len(self._tokens) > self._limits.tokens:
            token = next(iter(self._tokens))
            del self._tokens[token]
            updates.append(Update("token_removed", {"token": token}))
        return updates

    def set_health(self, reasons: Iterable[str]) -> list[Update]:
        """New readiness reasons; an update only when they changed."""
        cleaned = tuple(clean(r, MAX_LINE_CHARS) for r in reasons)
        if cleaned == self._health:
            return []
        self._health = cleaned
        return [Update("health", {"health": self._health_json()})]

    def set_scoreboard(self, rows: Sequence[ScoreboardRow] | None) -> list[Update]:
        """The report's win rates by level (``None``: not available)."""
        value = None if rows is None else tuple(rows)
        if value == self._scoreboard:
            return []
        self._scoreboard = value
        return [Update("scoreboard", {"scoreboard": self._scoreboard_json()})]

    def set_groups(self, view: GroupsView | None) -> list[Update]:
        """The group leaderboard and copy relations (``None``: not available)."""
        if view == self._groups:
            return []
        self._groups = view
        return [Update("groups", {"groups": self._groups_json()})]

    def set_outcomes(
        self, cells: Mapping[AlertKey, Mapping[str, float | None]] | None
    ) -> list[Update]:
        """Outcome cells of the alerts kept (``None``: no outcome source)."""
        updates: list[Update] = []
        available = cells is not None
        changed_availability = available != self._outcomes_available
        self._outcomes_available = available
        for item in self._alerts:
            new = {h: (cells or {}).get(item.key, {}).get(h) for h in HORIZONS} if available else {}
            if new != item.outcomes or changed_availability:
                item.outcomes = new
                updates.append(Update("alert", {"alert": self._alert_json(item)}))
        return updates

    # -- JSON ----------------------------------------------------------------------------------

    def _row_update(self, entry: _Token, now: float, *, at: float) -> Update:
        return Update("token", {"at": at, "token": self._token_json(entry, now)})

    def _token_json(self, t: _Token, now: float) -> dict[str, Any]:
        calls = sorted(
            ((g, ts) for g, ts in t.calls.items() if ts + self._window > now),
            key=lambda kv: (kv[1], kv[0]),
        )
        weights: Mapping[str, CallWeight] = (
            self._weights(t.token, [g for g, _ in calls]) if self._weights is not None else {}
        )
        status, why = self._status(t)
        return {
            "token": t.token,
            "chain": t.chain,
            "symbol": t.symbol,
            "name": t.name,
            "groups": len(calls),
            "tier_points": tier_points(len(calls), self._tiers),
            "calls": [_call_json(g, ts, weights.get(g)) for g, ts in calls],
            "smart_money": _buy_json(t),
            "score": _card_json(t),
            "market": _verdict_json(t),
            "status": status,
            "why": why,
            "updated": t.updated,
        }

    def _status(self, t: _Token) -> tuple[str, str]:
        v = t.verdict
        if (
            v is not None
            and v.status is Status.INVALID
            and (t.scored_at is None or (t.verdict_at or 0.0) >= t.scored_at)
        ):
            detail = f" ({clean(v.detail, MAX_LINE_CHARS)})" if v.detail else ""
            return "market_invalid", f"market invalid: {_REASONS.get(v.reason, v.reason.value)}" + (
                detail
            )
        card = t.card
        if card is None:
            return "no_buy", "no smart-money buy yet"
        if t.outcome == "alerted":
            return "alerted", f"alerted at {card.total:.1f}"
        if t.outcome == "cooldown":
            return "cooldown", f"cooldown: already alerted (score {card.total:.1f})"
        if t.outcome == "alert_failed":
            return "alert_failed", "alert not delivered: every sink failed; retrying"
        gap = f"{card.total:.1f} < {self._threshold:.1f}"
        if card.degraded:
            return "degraded", f"degraded: {clean(card.consensus.reason, MAX_LINE_CHARS)}; {gap}"
        if card.total < self._threshold:
            return "below_threshold", f"below threshold: {gap}"
        return t.outcome or "scored", clean(t.outcome or "scored")

    def _alert_json(self, item: _Alert) -> dict[str, Any]:
        a, c = item.alert, item.alert.card
        entry = a.snapshot.price_usd
        return {
            "key": f"{a.token}@{a.created_at}",
            "at": a.created_at,
            "token": a.token,
            "symbol": clean(a.symbol, 32),
            "name": clean(a.name),
            "score": c.total,
            "base": c.base,
            "consensus": c.consensus.points,
            "degraded": c.degraded,
            "groups": len(c.consensus.groups),
            "reason": clean(c.consensus.reason, MAX_LINE_CHARS),
            "entry": entry,
            "price": item.price,
            "multiple": (item.price / entry) if item.price is not None and entry else None,
            "outcomes": (
                {h: item.outcomes.get(h) for h in HORIZONS} if self._outcomes_available else None
            ),
        }

    def _health_json(self) -> dict[str, Any]:
        if self._health is None:
            return {"available": False}
        return {"available": True, "ready": not self._health, "reasons": list(self._health)}

    def _scoreboard_json(self) -> dict[str, Any]:
        if self._scoreboard is None:
            return {"available": False}
        return {
            "available": True,
            "rows": [
                {"level": clean(r.level, 8), **_interval_json(r.win)} for r in self._scoreboard
            ],
        }

    def _groups_json(self) -> dict[str, Any]:
        if self._groups is None:
            return {"available": False}
        return {
            "available": True,
            "leaderboard": [
                {
                    "group": clean(g.group, MAX_GROUP_CHARS),
                    "calls": g.calls,
                    "first": g.first,
                    **_interval_json(g.win),
                }
                for g in self._groups.leaderboard
            ],
            "copies": [
                {
                    "leader": clean(c.leader, MAX_GROUP_CHARS),
                    "follower": clean(c.follower, MAX_GROUP_CHARS),
                    "n": c.n,
                    "lag_s": c.lag_s,
                }
                for c in self._groups.copies
            ],
        }


_REASONS = {
    Reason.NO_PAIRS: "no pairs",
    Reason.LOW_LIQUIDITY: "low liquidity",
    Reason.LOW_VOLUME: "low volume",
    Reason.UNKNOWN_NOW: "unknown right now",
    Reason.OK: "ok",
}


def _call_json(group: str, ts: int, weight: CallWeight | None) -> dict[str, Any]:
    call: dict[str, Any] = {"group": clean(group, MAX_GROUP_CHARS), "ts": ts}
    if weight is not None:
        call["weight"], call["discount"] = weight.weight, weight.discount
    return call


def _interval_json(i: Interval) -> dict[str, Any]:
    return {"rate": i.rate, "low": i.low, "high": i.high, "n": i.n}


def short_wallet(wallet: str) -> str:
    """``ABCD…WXYZ``: enough to recognise a wallet, short enough for a table cell."""
    wallet = clean(wallet, 100)
    return wallet if len(wallet) <= 10 else f"{wallet[:4]}…{wallet[-4:]}"


def _buy_json(t: _Token) -> dict[str, Any] | None:
    b = t.last_buy
    if b is None:
        return None
    return {
        "buys": t.buys,
        "usd": b.usd,
        "wallet": short_wallet(b.wallet),
        "label": clean(b.wallet_label, MAX_FIELD_CHARS) if b.wallet_label else None,
        "ts": b.ts,
        "first": b.first_interaction,
    }


def _card_json(t: _Token) -> dict[str, Any] | None:
    c = t.card
    if c is None:
        return None
    return {
        "total": c.total,
        "base": c.base,
        "consensus": c.consensus.points,
        "degraded": c.degraded,
        "outcome": t.outcome,
        "at": t.scored_at,
        "rescore": t.rescore,
        "lines": [
            {"points": line.points, "reason": clean(line.reason, MAX_LINE_CHARS)}
            for line in c.lines
        ],
    }


def _verdict_json(t: _Token) -> dict[str, Any] | None:
    v = t.verdict
    if v is None:
        return None
    s = v.snapshot
    return {
        "valid": v.valid,
        "reason": v.reason.value,
        "price": s.price_usd if s is not None else None,
        "liquidity": s.liquidity_usd if s is not None else None,
        "mcap": (s.market_cap if s.market_cap is not None else s.fdv) if s is not None else None,
        "at": t.verdict_at,
    }
