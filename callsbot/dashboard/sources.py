"""Where the dashboard's panels get what the event stream does not carry.

Every provider is optional: outcomes, the report's scoreboard and group leaderboards come from
the history and outcomes parts when those are wired; until then their panels say "not
available". Values are plain frozen records so providers can be written against them alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

import attrs

#: Outcome horizons shown for each alert, in order (the outcomes module's ``p_5m`` … ``p_24h``).
HORIZONS: tuple[str, ...] = ("5m", "15m", "1h", "4h", "24h")


@attrs.frozen
class AlertKey:
    """One alert: the token and when the alert was made (unix seconds)."""

    token: str
    at: float


@attrs.frozen
class Interval:
    """A rate with its interval (e.g. Wilson 95 %), all as fractions 0..1.

    Attributes:
        rate: the point estimate, ``None`` when ``n`` is 0.
        low: lower end of the interval.
        high: upper end of the interval.
        n: decided events behind it.
    """

    rate: float | None
    low: float
    high: float
    n: int


@attrs.frozen
class ScoreboardRow:
    """Win rate of one consensus level (``"0"``, ``"1"``, ``"2"``, ``"3+"``)."""

    level: str
    win: Interval


@attrs.frozen
class GroupRow:
    """One group on the leaderboard: its calls' win rate and how often it was first."""

    group: str
    win: Interval
    calls: int
    first: int = 0


@attrs.frozen
class CopyRelation:
    """``follower`` tends to call what ``leader`` called, ``lag_s`` seconds later (median)."""

    leader: str
    follower: str
    n: int
    lag_s: float


@attrs.frozen
class GroupsView:
    """The groups panel: the leaderboard and the copy relations."""

    leaderboard: tuple[GroupRow, ...] = ()
    copies: tuple[CopyRelation, ...] = ()


@attrs.frozen
class CallWeight:
    """A group's weight in weighted consensus and the discount applied to this call."""

    weight: float
    discount: float = 0.0


#: Readiness reasons of the process (every service's ``health()``); empty when ready.
Health = Callable[[], Sequence[str]]
#: Outcome multiples per alert and horizon (``None``: not resolved yet).
Outcomes = Callable[[Sequence[AlertKey]], Awaitable[Mapping[AlertKey, Mapping[str, float | None]]]]
#: Win rate by consensus level, from the report.
Scoreboard = Callable[[], Awaitable[Sequence[ScoreboardRow]]]
#: The group leaderboard and copy relations.
Groups = Callable[[], Awaitable[GroupsView]]
#: Weights of ``groups`` for ``token`` in weighted consensus (cheap, never waits).
Weights = Callable[[str, Sequence[str]], Mapping[str, CallWeight]]


@attrs.frozen
class DashboardSources:
    """The optional providers; a ``None`` one shows its panel as "not available".

    Attributes:
        health: readiness reasons, polled every refresh.
        outcomes: outcome cells of recent alerts, polled every refresh.
        scoreboard: the report's win rate by level, polled every refresh.
        groups: the leaderboard and copy relations, polled every refresh.
        weights: per-call weights and discounts (weighted consensus), read on every change.
    """

    health: Health | None = None
    outcomes: Outcomes | None = None
    scoreboard: Scoreboard | None = None
    groups: Groups | None = None
    weights: Weights | None = None
