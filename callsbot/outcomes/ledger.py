"""The outcome tracker's tables in the history: schedules, tracked events, fetches, outcomes.

The tracker keeps everything it needs to resume in the history database (revision 0002 of
``callsbot/history/migrations``): the events it follows, one schedule per token and window with
its due fetches and, once fetched, their candles, the latest outcome of every event and the
follow-up replies sent. A restart reads them back and carries on with the fetches that are due.

One writer per database is assumed (the tracker runs in one process: ``run`` or the scorer
role); every write is one transaction, so a crash leaves each step done or not done.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from callsbot.history import schema
from callsbot.history.sql import SQLHistory
from callsbot.models import Candle
from callsbot.outcomes.path import Outcome, OutcomeStatus
from callsbot.outcomes.report import EventKind, OutcomeRecord
from callsbot.outcomes.schedule import Window, plan


class FetchState(enum.Enum):
    """Where one scheduled fetch stands."""

    PENDING = "pending"
    DONE = "done"
    #: Given up after repeated errors (its candles may still come with a later fetch).
    FAILED = "failed"
    #: Not needed any more (the schedule ended: a permanent error).
    CANCELLED = "cancelled"


class ScheduleStatus(enum.Enum):
    """Where one schedule stands."""

    OPEN = "open"
    DONE = "done"


@attrs.frozen(kw_only=True)
class NewEvent:
    """An event to follow (outcomes.md section 1).

    Attributes:
        kind: level reached, first score or alert.
        chain: the token's chain.
        token: the token's address.
        level: distinct groups as of the event (0 = solo).
        event_ts: the event's time ``t`` (unix s): where its outcome starts.
        at: when the event was published (for retention).
        groups: the groups that had called the token as of the event, earliest first.
        pool: the pool to follow (the market snapshot's pair), when known.
        pool_source: where ``pool`` came from (``snapshot``, ``verdict``).
        alert_created_at: alerts: ``Alert.created_at`` (how the dashboard names an alert).
        reply_sink: alerts: the sink whose message the follow-ups reply to.
        reply_to: alerts: that message's id.
    """

    kind: EventKind
    chain: str
    token: str
    level: int
    event_ts: int
    at: float
    groups: tuple[str, ...] = ()
    pool: str | None = None
    pool_source: str | None = None
    alert_created_at: float | None = None
    reply_sink: str | None = None
    reply_to: str | None = None


@attrs.frozen(kw_only=True)
class TrackedEvent(NewEvent):
    """A followed event as stored: with its id and its schedule's."""

    id: int
    schedule_id: int


@attrs.frozen(kw_only=True)
class Schedule:
    """The fetches shared by a token's events within one window.

    Attributes:
        id: the row id.
        chain: the token's chain.
        token: the token.
        first_ts: the earliest event's time.
        last_ts: the latest event's time.
        pool: the pool followed (``None`` until known).
        pool_source: ``snapshot``, ``verdict``, ``history`` or ``lookup``.
        status: open or done.
        errors: failed fetch attempts so far.
        detail: the last error.
    """

    id: int
    chain: str
    token: str
    first_ts: int
    last_ts: int
    pool: str | None
    pool_source: str | None
    status: ScheduleStatus
    errors: int
    detail: str


@attrs.frozen(kw_only=True)
class Fetch:
    """One scheduled fetch (and, once done, what it brought)."""

    id: int
    schedule_id: int
    stage: int
    step: int
    before: int
    size: int
    due: float
    state: FetchState
    attempts: int
    rate_limited: int
    last_error: str
    pool: str | None = None
    fetched_at: float | None = None
    complete_until: float | None = None
    candles: tuple[Candle, ...] = ()
    skipped: int = 0

    @property
    def window(self) -> Window:
        """What it asks for."""
        return Window(self.stage, self.step, self.before, self.size)

    @property
    def span(self) -> tuple[float, float] | None:
        """The candle starts it covers, ``[start, complete_until)``; ``None`` unless done."""
        if self.state is not FetchState.DONE or self.complete_until is None:
            return None
        return (float(self.window.start), self.complete_until)


@attrs.frozen(kw_only=True)
class ScheduleView:
    """A schedule with its events, fetches (with candles), outcomes and follow-ups sent."""

    schedule: Schedule
    events: tuple[TrackedEvent, ...]
    fetches: tuple[Fetch, ...]
    outcomes: Mapping[int, Outcome]
    followups: frozenset[tuple[int, int]]

    def candles(self, step: int) -> list[Candle]:
        """Every candle of length ``step`` fetched so far, in fetch order (later fetches win
        duplicated starts)."""
        return [
            c
            for f in sorted(self.fetches, key=lambda f: (f.fetched_at or 0.0, f.id))
            if f.step == step and f.state is FetchState.DONE
            for c in f.candles
        ]

    def spans(self, step: int) -> list[tuple[float, float]]:
        """What the done fetches of length ``step`` cover."""
        return [s for f in self.fetches if f.step == step and (s := f.span) is not None]


def _candles_json(candles: Iterable[Candle]) -> list[list[float]]:
    return [[c.ts, c.open, c.high, c.low, c.close, c.volume] for c in candles]


def _candles(rows: Any) -> tuple[Candle, ...]:
    if not rows:
        return ()
    return tuple(Candle(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows)


def _schedule(r: Any) -> Schedule:
    return Schedule(
        id=r["id"],
        chain=r["chain"],
        token=r["token"],
        first_ts=r["first_ts"],
        last_ts=r["last_ts"],
        pool=r["pool"],
        pool_source=r["pool_source"],
        status=ScheduleStatus(r["status"]),
        errors=r["errors"],
        detail=r["detail"],
    )


def _event(r: Any) -> TrackedEvent:
    return TrackedEvent(
        id=r["id"],
        schedule_id=r["schedule_id"],
        kind=EventKind(r["kind"]),
        chain=r["chain"],
        token=r["token"],
        level=r["level"],
        event_ts=r["event_ts"],
        at=r["at"],
        groups=tuple(r["groups"]),
        alert_created_at=r["alert_created_at"],
        reply_sink=r["reply_sink"],
        reply_to=r["reply_to"],
    )


def _fetch(r: Any, *, with_candles: bool = True) -> Fetch:
    return Fetch(
        id=r["id"],
        schedule_id=r["schedule_id"],
        stage=r["stage"],
        step=r["step"],
        before=r["before_ts"],
        size=r["size"],
        due=r["due"],
        state=FetchState(r["state"]),
        attempts=r["attempts"],
        rate_limited=r["rate_limited"],
        last_error=r["last_error"],
        pool=r["pool"],
        fetched_at=r["fetched_at"],
        complete_until=r["complete_until"],
        candles=_candles(r["candles"]) if with_candles else (),
        skipped=r["skipped"],
    )


_FETCH_COLUMNS = [c for c in schema.price_fetches.c if c.name != "candles"]


class OutcomeLedger:
    """The tracker's reads and writes, on the history's engine.

    Args:
        history: the history store (its engine, dialect and error mapping are used).

    Every method raises :class:`~callsbot.errors.HistoryUnavailable` when the database fails.
    """

    def __init__(self, history: SQLHistory) -> None:
        self.history = history

    @property
    def where(self) -> str:
        """Where the data lives (safe to print)."""
        return self.history.where

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction for several of the methods below (each takes it as ``conn``):
        all of them or none."""
        async with self.history.guard("write"), self.history.engine.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def _tx(self, conn: AsyncConnection | None, what: str) -> AsyncIterator[AsyncConnection]:
        if conn is not None:
            yield conn
            return
        async with self.history.guard(what), self.history.engine.begin() as own:
            yield own

    @contextlib.asynccontextmanager
    async def _read(
        self, conn: AsyncConnection | None, what: str
    ) -> AsyncIterator[AsyncConnection]:
        if conn is not None:
            yield conn
            return
        async with self.history.guard(what), self.history.engine.connect() as own:
            yield own

    async def upgrade(self) -> str:
        """Bring the schema to this code's version (the tracker's tables are revision 0002)."""
        return await self.history.upgrade()

    # -- events and schedules ------------------------------------------------------------------

    async def register(self, event: NewEvent, *, window: int, now: float) -> TrackedEvent | None:
        """Store ``event`` and (re)plan its schedule's fetches; ``None`` when it is not new.

        Not new: the same event again (same kind, token, level and time), or a ``scored`` event
        while the token already has one within ``window`` seconds before it (only the first
        score of a window is an event).

        The event joins the token's open schedule when all of that schedule's events and it fit
        in ``window`` seconds and nothing past the first fetch was made yet (nothing at all, for
        an event dated before the schedule's first); else it starts a schedule of its own.
        """
        e, s = schema.tracked_events, schema.outcome_schedules
        async with self.history.guard("register"), self.history.engine.begin() as conn:
            same = await conn.scalar(
                sa.select(e.c.id).where(
                    e.c.kind == event.kind.value,
                    e.c.chain == event.chain,
                    e.c.token == event.token,
                    e.c.level == event.level,
                    e.c.event_ts == event.event_ts,
                )
            )
            if same is not None:
                return None
            if event.kind is EventKind.SCORED:
                earlier = await conn.scalar(
                    sa.select(e.c.id)
                    .where(
                        e.c.kind == EventKind.SCORED.value,
                        e.c.chain == event.chain,
                        e.c.token == event.token,
                        e.c.event_ts > event.event_ts - window,
                        e.c.event_ts <= event.event_ts,
                    )
                    .limit(1)
                )
                if earlier is not None:
                    return None
            schedule = await self._joinable(conn, event, window)
            if schedule is None:
                schedule_id = await self._new_schedule(conn, event)
            else:
                schedule_id = schedule.id
                values: dict[str, Any] = {
                    "first_ts": min(schedule.first_ts, event.event_ts),
                    "last_ts": max(schedule.last_ts, event.event_ts),
                }
                if schedule.pool is None and event.pool:
                    values |= {"pool": event.pool, "pool_source": event.pool_source}
                await conn.execute(sa.update(s).where(s.c.id == schedule_id).values(**values))
            event_id = await conn.scalar(
                sa.insert(e)
                .values(
                    schedule_id=schedule_id,
                    at=event.at,
                    kind=event.kind.value,
                    chain=event.chain,
                    token=event.token,
                    level=event.level,
                    event_ts=event.event_ts,
                    groups=list(event.groups),
                    alert_created_at=event.alert_created_at,
                    reply_sink=event.reply_sink,
                    reply_to=event.reply_to,
                )
                .returning(e.c.id)
            )
            await self._replan(conn, schedule_id, now)
        return TrackedEvent(
            id=int(event_id), schedule_id=schedule_id, **attrs.asdict(event, recurse=False)
        )

    async def _joinable(
        self, conn: AsyncConnection, event: NewEvent, window: int
    ) -> Schedule | None:
        s, f = schema.outcome_schedules, schema.price_fetches
        rows = (
            (
                await conn.execute(
                    sa.select(s)
                    .where(
                        s.c.chain == event.chain,
                        s.c.token == event.token,
                        s.c.status == ScheduleStatus.OPEN.value,
                        s.c.first_ts <= event.event_ts + window,
                        s.c.last_ts >= event.event_ts - window,
                    )
                    .order_by(s.c.first_ts.desc())
                )
            )
            .mappings()
            .all()
        )
        for row in rows:
            schedule = _schedule(row)
            spread = max(schedule.last_ts, event.event_ts) - min(schedule.first_ts, event.event_ts)
            if spread > window:
                continue
            # Once a fetch is made, an event before the first would need candles it did not
            # reach back for; once the second is made, a later one would miss early numbers.
            earlier = event.event_ts < schedule.first_ts
            settled = await conn.scalar(
                sa.select(f.c.id)
                .where(
                    f.c.schedule_id == schedule.id,
                    f.c.stage >= (1 if earlier else 2),
                    f.c.state != FetchState.PENDING.value,
                )
                .limit(1)
            )
            if settled is None:
                return schedule
        return None

    async def _new_schedule(self, conn: AsyncConnection, event: NewEvent) -> int:
        s = schema.outcome_schedules
        schedule_id = await conn.scalar(
            sa.insert(s)
            .values(
                at=event.at,
                chain=event.chain,
                token=event.token,
                first_ts=event.event_ts,
                last_ts=event.event_ts,
                pool=event.pool,
                pool_source=event.pool_source if event.pool else None,
                status=ScheduleStatus.OPEN.value,
                errors=0,
                detail="",
            )
            .returning(s.c.id)
        )
        return int(schedule_id)

    async def _replan(self, conn: AsyncConnection, schedule_id: int, now: float) -> None:
        s, f = schema.outcome_schedules, schema.price_fetches
        row = (await conn.execute(sa.select(s).where(s.c.id == schedule_id))).mappings().one()
        fetches = [
            _fetch(r, with_candles=False)
            for r in (
                await conn.execute(sa.select(*_FETCH_COLUMNS).where(f.c.schedule_id == schedule_id))
            ).mappings()
        ]
        settled = {x.stage for x in fetches if x.state is not FetchState.PENDING}
        lost = [x.window for x in fetches if x.state is FetchState.FAILED]
        windows = plan(row["first_ts"], row["last_ts"], done=settled, lost=lost, now=now)
        by_stage = {x.stage: x for x in fetches}
        planned = {w.stage for w in windows}
        for window in windows:
            current = by_stage.get(window.stage)
            if current is None:
                await conn.execute(sa.insert(f).values(**self._fetch_row(schedule_id, window)))
                continue
            # A fetch waiting for a retry keeps its later time.
            due = max(window.due, current.due) if current.attempts else window.due
            await conn.execute(
                sa.update(f)
                .where(f.c.id == current.id)
                .values(before_ts=window.before, size=window.size, due=due)
            )
        merged = [
            x.id
            for x in fetches
            if x.state is FetchState.PENDING and x.stage not in planned and x.stage <= 4
        ]
        if merged:
            await conn.execute(sa.delete(f).where(f.c.id.in_(merged)))

    @staticmethod
    def _fetch_row(schedule_id: int, window: Window) -> dict[str, Any]:
        return {
            "schedule_id": schedule_id,
            "stage": window.stage,
            "step": window.step,
            "before_ts": window.before,
            "size": window.size,
            "due": window.due,
            "state": FetchState.PENDING.value,
            "attempts": 0,
            "rate_limited": 0,
            "last_error": "",
            "skipped": 0,
        }

    async def add_fetch(
        self, schedule_id: int, window: Window, *, conn: AsyncConnection | None = None
    ) -> bool:
        """Schedule one more fetch (a late entry's); ``False`` when that stage already exists."""
        f = schema.price_fetches
        async with self._tx(conn, "schedule") as conn:
            result = await conn.execute(
                self.history.insert(f)
                .values(**self._fetch_row(schedule_id, window))
                .on_conflict_do_nothing()
            )
            return bool(result.rowcount)

    # -- fetches -------------------------------------------------------------------------------

    async def due(self, now: float, *, limit: int = 50) -> list[tuple[Fetch, Schedule]]:
        """Pending fetches due at ``now``, oldest due first, with their schedules."""
        f, s = schema.price_fetches, schema.outcome_schedules
        query = (
            sa.select(*_FETCH_COLUMNS, *[c.label(f"s_{c.name}") for c in s.c])
            .select_from(f.join(s, s.c.id == f.c.schedule_id))
            .where(f.c.state == FetchState.PENDING.value, f.c.due <= now)
            .order_by(f.c.due, f.c.id)
            .limit(limit)
        )
        async with self.history.guard("read"), self.history.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        out = []
        for r in rows:
            sched = _schedule({k[2:]: v for k, v in r.items() if k.startswith("s_")})
            out.append((_fetch(r, with_candles=False), sched))
        return out

    async def pending_dues(self) -> list[float]:
        """Due times of every pending fetch, ascending."""
        f = schema.price_fetches
        async with self.history.guard("read"), self.history.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(f.c.due).where(f.c.state == FetchState.PENDING.value).order_by(f.c.due)
            )
            return [float(r[0]) for r in rows]

    async def fetched(
        self,
        fetch_id: int,
        *,
        pool: str,
        fetched_at: float,
        complete_until: float,
        candles: Sequence[Candle],
        skipped: int,
        conn: AsyncConnection | None = None,
    ) -> None:
        """A fetch brought ``candles``: keep them, the fetch is done."""
        f = schema.price_fetches
        async with self._tx(conn, "write") as conn:
            await conn.execute(
                sa.update(f)
                .where(f.c.id == fetch_id)
                .values(
                    state=FetchState.DONE.value,
                    pool=pool,
                    fetched_at=fetched_at,
                    complete_until=complete_until,
                    candles=_candles_json(candles),
                    skipped=skipped,
                    last_error="",
                )
            )

    async def retry(
        self, fetch_id: int, schedule_id: int, *, due: float, error: str, counted: bool
    ) -> None:
        """Try the fetch again at ``due``; ``counted`` errors count towards giving up."""
        f, s = schema.price_fetches, schema.outcome_schedules
        async with self.history.guard("write"), self.history.engine.begin() as conn:
            values: dict[str, Any] = {"due": due, "last_error": error[:500]}
            if counted:
                values["attempts"] = f.c.attempts + 1
            else:
                values["rate_limited"] = f.c.rate_limited + 1
            await conn.execute(sa.update(f).where(f.c.id == fetch_id).values(**values))
            if counted:
                await conn.execute(
                    sa.update(s)
                    .where(s.c.id == schedule_id)
                    .values(errors=s.c.errors + 1, detail=error[:500])
                )

    async def give_up(
        self,
        fetch_id: int,
        schedule_id: int,
        *,
        error: str,
        now: float,
        cancel_rest: bool,
        conn: AsyncConnection | None = None,
    ) -> None:
        """Stop trying a fetch (its candles may come with a later one: the plan reaches back
        over it); ``cancel_rest`` cancels every other pending fetch of the schedule too."""
        f, s = schema.price_fetches, schema.outcome_schedules
        async with self._tx(conn, "write") as conn:
            await conn.execute(
                sa.update(f)
                .where(f.c.id == fetch_id)
                .values(
                    state=FetchState.FAILED.value,
                    attempts=f.c.attempts + 1,
                    last_error=error[:500],
                )
            )
            await conn.execute(
                sa.update(s)
                .where(s.c.id == schedule_id)
                .values(errors=s.c.errors + 1, detail=error[:500])
            )
            if cancel_rest:
                await conn.execute(
                    sa.update(f)
                    .where(f.c.schedule_id == schedule_id, f.c.state == FetchState.PENDING.value)
                    .values(state=FetchState.CANCELLED.value)
                )
            else:
                await self._replan(conn, schedule_id, now)

    async def set_pool(
        self, schedule_id: int, pool: str, source: str, *, conn: AsyncConnection | None = None
    ) -> None:
        """Follow ``pool`` from now on (found by a lookup, or after a 404)."""
        s = schema.outcome_schedules
        async with self._tx(conn, "write") as conn:
            await conn.execute(
                sa.update(s).where(s.c.id == schedule_id).values(pool=pool, pool_source=source)
            )

    async def close(self, schedule_id: int, *, conn: AsyncConnection | None = None) -> None:
        """Nothing more to fetch for the schedule."""
        s = schema.outcome_schedules
        async with self._tx(conn, "write") as conn:
            await conn.execute(
                sa.update(s).where(s.c.id == schedule_id).values(status=ScheduleStatus.DONE.value)
            )

    # -- outcomes ------------------------------------------------------------------------------

    async def view(self, schedule_id: int, *, conn: AsyncConnection | None = None) -> ScheduleView:
        """The schedule with its events, fetches (candles included), outcomes and follow-ups."""
        s, e, f = schema.outcome_schedules, schema.tracked_events, schema.price_fetches
        o, fu = schema.outcomes, schema.followups
        events = (
            sa.select(e, o.c.fields)
            .select_from(e.outerjoin(o, o.c.event_id == e.c.id))
            .where(e.c.schedule_id == schedule_id)
            .order_by(e.c.id)
        )
        async with self._read(conn, "read") as conn:
            srow = (await conn.execute(sa.select(s).where(s.c.id == schedule_id))).mappings().one()
            erows = (await conn.execute(events)).mappings().all()
            query = sa.select(f).where(f.c.schedule_id == schedule_id).order_by(f.c.stage)
            frows = (await conn.execute(query)).mappings().all()
            furows: Sequence[Any] = []
            if any(r["kind"] == EventKind.ALERT.value for r in erows):
                ids = [r["id"] for r in erows]
                query = sa.select(fu.c.event_id, fu.c.checkpoint).where(fu.c.event_id.in_(ids))
                furows = (await conn.execute(query)).all()
        return ScheduleView(
            schedule=_schedule(srow),
            events=tuple(_event(r) for r in erows),
            fetches=tuple(_fetch(r) for r in frows),
            outcomes={
                r["id"]: Outcome.from_dict(r["fields"]) for r in erows if r["fields"] is not None
            },
            followups=frozenset((int(a), int(b)) for a, b in furows),
        )

    async def save_outcomes(
        self, outcomes: Mapping[int, Outcome], *, now: float, conn: AsyncConnection | None = None
    ) -> None:
        """Store (or replace) the outcome of each event id."""
        if not outcomes:
            return
        o = schema.outcomes
        rows = [
            {
                "event_id": event_id,
                "at": now,
                "status": outcome.status.value,
                "entry": outcome.entry,
                "peak": outcome.peak,
                "peak_close": outcome.peak_close,
                "win": outcome.win,
                "fields": outcome.as_dict(),
            }
            for event_id, outcome in outcomes.items()
        ]
        stmt = self.history.insert(o)
        stmt = stmt.on_conflict_do_update(
            index_elements=[o.c.event_id],
            set_={
                name: stmt.excluded[name]
                for name in ("at", "status", "entry", "peak", "peak_close", "win", "fields")
            },
        )
        async with self._tx(conn, "write") as conn:
            await conn.execute(stmt, rows)

    async def record_followup(
        self,
        event_id: int,
        checkpoint: int,
        *,
        at: float,
        sink: str,
        message_id: str | None,
        text: str,
    ) -> None:
        """A follow-up reply was sent."""
        fu = schema.followups
        async with self.history.guard("write"), self.history.engine.begin() as conn:
            await conn.execute(
                self.history.insert(fu)
                .values(
                    event_id=event_id,
                    checkpoint=checkpoint,
                    at=at,
                    sink=sink,
                    message_id=message_id,
                    text=text,
                )
                .on_conflict_do_nothing()
            )

    # -- what other parts read -----------------------------------------------------------------

    async def latest_event_at(self) -> float | None:
        """``at`` of the newest tracked event (where a catch-up starts)."""
        e = schema.tracked_events
        async with self.history.guard("read"), self.history.engine.connect() as conn:
            value = await conn.scalar(sa.select(sa.func.max(e.c.at)))
        return None if value is None else float(value)

    async def verdict_pool(self, chain: str, token: str) -> str | None:
        """The pair of the latest valid market verdict the history holds for ``token``."""
        v = schema.verdicts
        async with self.history.guard("read"), self.history.engine.connect() as conn:
            pool = await conn.scalar(
                sa.select(v.c.pair_address)
                .where(
                    v.c.chain == chain,
                    v.c.token == token,
                    v.c.status == "valid",
                    v.c.pair_address.is_not(None),
                )
                .order_by(v.c.at.desc())
                .limit(1)
            )
        return None if pool is None else str(pool)

    async def mention_groups(
        self, token: str, *, ts: int, window: int, recorded_by: float
    ) -> tuple[str, ...]:
        """Groups with a mention of ``token`` dated in ``(ts − window, ts]`` and recorded by
        ``recorded_by``: who had called it as of a level event, earliest first."""
        m = schema.mentions
        async with self.history.guard("read"), self.history.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(m.c.group_name, sa.func.min(m.c.message_ts).label("first"))
                .where(
                    m.c.token == token,
                    m.c.message_ts > ts - window,
                    m.c.message_ts <= ts,
                    m.c.at <= recorded_by,
                )
                .group_by(m.c.group_name)
                .order_by("first", m.c.group_name)
            )
            return tuple(str(r[0]) for r in rows)

    async def records(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        window: int,
        latency: int,
    ) -> list[OutcomeRecord]:
        """Every tracked event with ``since ≤ t < until`` and its latest outcome.

        An event without an outcome yet is ``tracking``. ``alerted`` is true for an alert, and
        for another event when the token was alerted within ``window`` seconds of it (before or
        after).
        """
        e, o = schema.tracked_events, schema.outcomes
        query = sa.select(e, o.c.fields).select_from(e.outerjoin(o, o.c.event_id == e.c.id))
        if since is not None:
            query = query.where(e.c.event_ts >= since)
        if until is not None:
            query = query.where(e.c.event_ts < until)
        alerts = sa.select(e.c.chain, e.c.token, e.c.event_ts).where(
            e.c.kind == EventKind.ALERT.value
        )
        if since is not None:
            alerts = alerts.where(e.c.event_ts >= since - window)
        if until is not None:
            alerts = alerts.where(e.c.event_ts < until + window)
        async with self.history.guard("read"), self.history.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(e.c.event_ts, e.c.id))).mappings().all()
            alerted_at: dict[tuple[str, str], list[int]] = {}
            for chain, token, ts in await conn.execute(alerts):
                alerted_at.setdefault((chain, token), []).append(int(ts))
        out = []
        for r in rows:
            event = _event(r)
            fields = r["fields"]
            outcome = (
                Outcome.from_dict(fields)
                if fields is not None
                else Outcome(
                    event_ts=event.event_ts, latency=latency, status=OutcomeStatus.TRACKING
                )
            )
            alerted = event.kind is EventKind.ALERT or any(
                abs(ts - event.event_ts) <= window
                for ts in alerted_at.get((event.chain, event.token), ())
            )
            out.append(
                OutcomeRecord(
                    kind=event.kind,
                    token=event.token,
                    level=event.level,
                    alerted=alerted,
                    groups=event.groups,
                    outcome=outcome,
                )
            )
        return out

    async def alert_outcomes(
        self, alerts: Collection[tuple[str, float]]
    ) -> dict[tuple[str, float], Outcome]:
        """The latest outcome of each alert named by ``(token, created_at)``."""
        if not alerts:
            return {}
        e, o = schema.tracked_events, schema.outcomes
        wanted = set(alerts)
        tokens = sorted({token for token, _ in wanted})
        async with self.history.guard("read"), self.history.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(e.c.token, e.c.alert_created_at, o.c.fields)
                    .select_from(e.join(o, o.c.event_id == e.c.id))
                    .where(e.c.kind == EventKind.ALERT.value, e.c.token.in_(tokens))
                )
            ).all()
        return {
            (token, created): Outcome.from_dict(fields)
            for token, created, fields in rows
            if (token, created) in wanted
        }
