"""Hit labels inside a replay, each usable only once the live tracker would have known it.

Group reputation (outcomes.md section 5) weighs a group by whether its calls hit: group g's
call of token T is a hit when T reached 2× within 24 h of g's *first* mention + 60 s. In a
replay a label may only be used after it was resolved; otherwise a group's weight at noon would
know what its 11:00 call did at 18:00.

:class:`RunLabels` follows the run's own mentions (the first of each group and token) and
resolves each label on the cached price path exactly as the tracker would: with the same
:func:`~callsbot.outcomes.path.compute_outcome`, at the tracker's fetch times (t + 17 min,
t + 62 min, t + 4 h 02, t + 24 h 02, then one more 5-minute fetch for a late entry), each
reading only the candles that had closed by then. The label's ``resolved_at`` is the first fetch
at which the outcome's ``win`` was decided. :meth:`RunLabels.labels` answers the ``Labels``
interface of weighted consensus (``labels(since, until)``) and never returns a label resolved at
or after the simulated "now", whatever ``until`` asks for.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

from callsbot.clock import Clock
from callsbot.config import OutcomesSettings
from callsbot.events import MentionRecorded
from callsbot.models import Candle
from callsbot.outcomes.path import OutcomeRules, compute_outcome
from callsbot.replay.tape import PricePath
from callsbot.reputation.inputs import Label

__all__ = ["FETCHES", "Label", "RunLabels", "resolve_label"]

#: The tracker's fetches after an event, seconds (outcomes.md section 2), and the extra
#: 5-minute fetch a late entry needs.
FETCHES: tuple[int, ...] = (17 * 60, 62 * 60, 4 * 3600 + 120, 24 * 3600 + 120, 24 * 3600 + 420)

#: Length of a fine candle (s).
MINUTE = 60


def _closed_by(candles: Sequence[Candle], at: float, length: int) -> Sequence[Candle]:
    """The leading candles (ascending by start) that closed at or before ``at``."""
    return candles[: bisect.bisect_right(candles, at - length, key=lambda c: c.ts)]


def resolve_label(
    group: str,
    token: str,
    called_at: int,
    path: PricePath,
    *,
    latency: int,
    rules: OutcomeRules,
) -> Label | None:
    """The label of one call, or ``None`` when the cached candles never decide it.

    Each fetch reads only the candles that had closed by then: the cache holds each candle's
    final values, which a fetch during it could not have seen.
    """
    for offset in FETCHES:
        fetch = called_at + offset
        outcome = compute_outcome(
            called_at,
            _closed_by(path.minute, fetch, MINUTE),
            _closed_by(path.five_minute, fetch, rules.coarse_seconds),
            as_of=min(fetch, path.as_of),
            latency=latency,
            rules=rules,
        )
        if outcome.win is not None:
            return Label(group, token, float(called_at), outcome.win, float(fetch))
    return None


class RunLabels:
    """The labels of a run's own calls, each from its resolution on (see the module).

    Args:
        paths: cached price paths by mint.
        settings: latency, win multiple, horizon and stop.
        clock: the simulated clock ("now").
    """

    def __init__(
        self, paths: Mapping[str, PricePath], *, settings: OutcomesSettings, clock: Clock
    ) -> None:
        self._paths = paths
        self._latency = settings.latency_seconds
        self._rules = OutcomeRules(
            win_multiple=settings.win_multiple,
            horizon_seconds=settings.horizon_seconds,
            stop=settings.stop,
        )
        self._clock = clock
        self._first: dict[tuple[str, str], int] = {}
        self._pending: list[tuple[str, str, int]] = []
        self._resolved: list[Label] = []

    def called(self, event: MentionRecorded) -> None:
        """Note a recorded mention (the engine calls this for each, in order)."""
        key = (event.ref.group, event.token)
        if key in self._first or event.token not in self._paths:
            return
        self._first[key] = event.ref.ts
        self._pending.append((event.ref.group, event.token, event.ref.ts))

    def _settle(self, now: float) -> None:
        waiting: list[tuple[str, str, int]] = []
        for group, token, ts in self._pending:
            if ts + FETCHES[0] >= now:
                waiting.append((group, token, ts))
                continue
            label = resolve_label(
                group, token, ts, self._paths[token], latency=self._latency, rules=self._rules
            )
            if label is not None:
                self._resolved.append(label)
        self._pending = waiting

    async def labels(self, since: float, until: float) -> Sequence[Label]:
        """Labels of calls made at or after ``since``, resolved at or before ``until`` and
        strictly before now."""
        now = self._clock.time()
        self._settle(now)
        return [
            lb
            for lb in self._resolved
            if lb.called_at >= since and lb.resolved_at <= until and lb.resolved_at < now
        ]
