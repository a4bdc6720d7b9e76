"""The tracker's outcomes as the reputation job's hit labels (outcomes.md section 5).

A group's call is labelled by the outcome of the level it made: each group's first mention of
a token in a window raises the count by one, and the tracker follows every level reached with
entry at the call + latency (60 s by default) and ``win`` = 2× within 24 h, exactly the label's
definition. The deciding group is the newest first call among the level's groups.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from callsbot.history import schema
from callsbot.history.sql import SQLHistory
from callsbot.outcomes.report import EventKind
from callsbot.reputation.inputs import Label


class HistoryLabels:
    """A :class:`~callsbot.reputation.inputs.Labels` over the outcomes in the history.

    ``resolved_at`` is when the outcome row was last written, never earlier than the moment the
    label became known: a weight computed at ``t`` therefore never sees a label that resolved
    after ``t`` (no leakage), at worst one that resolved a little before ``t`` is seen late.
    """

    def __init__(self, history: SQLHistory) -> None:
        self._history = history

    async def labels(self, since: float, until: float) -> Sequence[Label]:
        """Decided labels of calls made in ``[since, until)``, oldest first.

        Raises:
            HistoryUnavailable: the history could not be read.
        """
        e, o = schema.tracked_events, schema.outcomes
        query = (
            sa.select(e.c.event_ts, e.c.token, e.c.groups, o.c.win, o.c.at)
            .join(o, o.c.event_id == e.c.id)
            .where(
                e.c.kind == EventKind.LEVEL_REACHED.value,
                o.c.win.is_not(None),
                e.c.event_ts >= since,
                e.c.event_ts < until,
            )
            .order_by(e.c.event_ts)
        )
        async with self._history.guard("read"), self._history.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            Label(
                group=str(groups[-1]),
                token=str(token),
                called_at=float(ts),
                hit=bool(win),
                resolved_at=float(at),
            )
            for ts, token, groups, win, at in rows
            if groups
        ]
