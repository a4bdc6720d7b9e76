"""The history store on SQLAlchemy 2 Core (async): SQLite (aiosqlite, WAL) or PostgreSQL (asyncpg).

One class, two dialects, chosen by the URL: ``sqlite:///path`` (the embedded default) or
``postgresql://user@host:port/db`` (production; the password only from
``CALLSBOT_HISTORY_PASSWORD``). Rows are written with ``INSERT … ON CONFLICT DO NOTHING`` on the
tables' natural keys, so every write is idempotent; the schema comes from the Alembic migrations
shipped in ``callsbot/history/migrations``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from callsbot.alert import Alert
from callsbot.config import HistorySettings
from callsbot.errors import ConfigError, CredentialsRejected, HistoryUnavailable
from callsbot.events import (
    AlertSent,
    BuyScored,
    Event,
    LevelReached,
    MentionRecorded,
    VerdictMade,
    structure,
    unstructure,
)
from callsbot.fingerprint import fingerprint, to_signed
from callsbot.history import schema
from callsbot.history.base import HistoryStore
from callsbot.history.recording import BY_KIND, EVENT_TYPES
from callsbot.models import Buy, ForwardHeader, MarketSnapshot, MessageRef, Reason, Status, Verdict
from callsbot.scoring import Consensus, ScoreCard, ScoreLine

log = logging.getLogger("callsbot.history")

MIGRATIONS = Path(__file__).with_name("migrations")
#: Serialises concurrent ``upgrade`` calls of several processes on one PostgreSQL database.
_UPGRADE_LOCK_ID = 0x63616C6C  # "call"
#: Events turned into rows between two yields to the event loop (fingerprints cost CPU).
_ROWS_PER_SLICE = 64
_PAGE = 1000
#: An outcome schedule still open this long past the retention cut-off is pruned anyway.
_ABANDONED = 7 * 86_400.0
_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_AUTH_ERRORS = ("InvalidPasswordError", "InvalidAuthorizationSpecificationError")


def async_url(url: str, password: str | None = None) -> URL:
    """``url`` with the async driver of its dialect and ``password`` set, or ConfigError.

    ``sqlite:///`` becomes ``sqlite+aiosqlite:///``, ``postgresql://`` (or ``postgres://``)
    becomes ``postgresql+asyncpg://``; other databases are not supported.
    """
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError("history.url", "not a database URL") from None
    backend = parsed.get_backend_name()
    backend = "postgresql" if backend == "postgres" else backend
    if backend not in _DRIVERS:
        raise ConfigError("history.url", "unsupported database (sqlite:///PATH or postgresql://…)")
    parsed = parsed.set(drivername=_DRIVERS[backend])
    if password:
        parsed = parsed.set(password=password)
    return parsed


def _alembic_config() -> AlembicConfig:
    # Alembic's own INFO lines (plugins, "context impl") are noise to an operator; callsbot logs
    # the revision it reached.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    """The newest schema revision this code knows."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def _upgrade_sync(conn: Connection) -> str:
    cfg = _alembic_config()
    script = ScriptDirectory.from_config(cfg)
    current = MigrationContext.configure(conn).get_current_revision()
    known = {rev.revision for rev in script.walk_revisions()}
    if current is not None and current not in known:
        raise ConfigError(
            "history.url",
            f"the history database is at schema revision {current!r}, newer than this callsbot "
            f"knows (up to {script.get_current_head()!r}): run a newer callsbot against it",
        )
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")
    now = MigrationContext.configure(conn).get_current_revision()
    assert now is not None
    return now


def _current_sync(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _describe(exc: BaseException) -> str:
    """A one-line reason without SQL, parameters or URL (they may hold texts or secrets)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    return f"{type(orig).__name__}: {text[:200]}" if text else type(orig).__name__


class SQLHistory(HistoryStore):
    """The history on one SQLAlchemy async engine.

    Args:
        url: ``sqlite:///PATH`` or ``postgresql://user@host:port/db`` (drivers are chosen here).
        password: PostgreSQL password (from the environment only).
        keep_text: store each mention's message text (fingerprints are stored either way).
        connect_timeout: seconds before a connection attempt counts as "unavailable".
    """

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        keep_text: bool = True,
        connect_timeout: float = 5.0,
    ) -> None:
        self._url = async_url(url, password)
        self._keep_text = keep_text
        self.dialect = self._url.get_backend_name()
        if self.dialect == "sqlite":
            database = self._url.database or ""
            if database and not database.startswith(":memory:"):
                # A directory that cannot be made shows up as "unavailable" at the first use.
                with contextlib.suppress(OSError):
                    Path(database).parent.mkdir(parents=True, exist_ok=True)
            self._engine: AsyncEngine = create_async_engine(
                self._url, connect_args={"timeout": connect_timeout}
            )
            sa.event.listen(self._engine.sync_engine, "connect", _sqlite_pragmas)
            sa.event.listen(self._engine.sync_engine, "invalidate", _roll_back_invalidated)
            self._insert: Callable[[sa.Table], Any] = sqlite.insert
        else:
            self._engine = create_async_engine(
                self._url,
                pool_pre_ping=True,
                connect_args={
                    "timeout": connect_timeout,
                    "command_timeout": max(30.0, connect_timeout),
                    "server_settings": {"application_name": "callsbot"},
                },
            )
            self._insert = postgresql.insert
        # Two parts of one process (the recorder, the outcome tracker) may both migrate at
        # start; on SQLite two Alembic runs at once would both try to create the tables.
        self._upgrading = asyncio.Lock()

    @property
    def where(self) -> str:
        if self.dialect == "sqlite":
            return str(Path(self._url.database or "").resolve())
        return self._url.set(drivername="postgresql").render_as_string(hide_password=True)

    @property
    def engine(self) -> AsyncEngine:
        """The engine, for read-only queries of later modules (reports, outcomes)."""
        return self._engine

    def insert(self, table: sa.Table) -> Any:
        """This dialect's ``INSERT`` (with ``on_conflict_do_nothing``/``_do_update``)."""
        return self._insert(table)

    def guard(self, what: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Turn database failures inside into :class:`HistoryUnavailable` (later modules'
        queries use it so that they fail the way this class does)."""
        return self._guard(what)

    @contextlib.asynccontextmanager
    async def _guard(self, what: str) -> AsyncIterator[None]:
        try:
            yield
        except (ConfigError, HistoryUnavailable, CredentialsRejected):
            raise
        except (sa.exc.DBAPIError, sa.exc.TimeoutError, OSError, TimeoutError) as exc:
            orig = getattr(exc, "orig", None) or exc
            if type(orig).__name__ in _AUTH_ERRORS:
                raise CredentialsRejected(
                    f"history database refused us: {_describe(exc)}"
                ) from None
            raise HistoryUnavailable(f"history {what}: {_describe(exc)}") from None

    # -- schema --------------------------------------------------------------------------------

    async def upgrade(self) -> str:
        async with self._upgrading, self._guard("upgrade"), self._engine.begin() as conn:
            if self.dialect == "postgresql":
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_UPGRADE_LOCK_ID)))
            revision: str = await conn.run_sync(_upgrade_sync)
        return revision

    async def revision(self) -> str | None:
        """The schema revision in force, ``None`` for a database never migrated."""
        async with self._guard("revision"), self._engine.connect() as conn:
            return await conn.run_sync(_current_sync)

    async def ping(self) -> None:
        async with self._guard("ping"), self._engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def aclose(self) -> None:
        await self._engine.dispose()

    # -- writing -------------------------------------------------------------------------------

    async def record(self, events: Sequence[Event]) -> None:
        rows: dict[str, list[dict[str, Any]]] = {t.name: [] for t in schema.TABLES}
        alerts: list[tuple[dict[str, Any], tuple[tuple[str, str | None], ...]]] = []
        for i, event in enumerate(events):
            if i and i % _ROWS_PER_SLICE == 0:
                await asyncio.sleep(0)  # fingerprints cost CPU: let the hot path in between
            if isinstance(event, MentionRecorded):
                rows["mentions"].append(mention_row(event, keep_text=self._keep_text))
            elif isinstance(event, LevelReached):
                rows["levels"].append(_level_row(event))
            elif isinstance(event, VerdictMade):
                rows["verdicts"].append(_verdict_row(event))
            elif isinstance(event, BuyScored):
                rows["buys"].append(_buy_row(event.buy, event.at))
                rows["scores"].append(_score_row(event))
            elif isinstance(event, AlertSent):
                alerts.append((_alert_row(event), event.deliveries))
        async with self._guard("write"), self._engine.begin() as conn:
            for table in schema.TABLES:
                if rows[table.name]:
                    await conn.execute(
                        self._insert(table).on_conflict_do_nothing(), rows[table.name]
                    )
            for row, deliveries in alerts:
                await self._write_alert(conn, row, deliveries)

    async def _write_alert(
        self,
        conn: AsyncConnection,
        row: dict[str, Any],
        deliveries: tuple[tuple[str, str | None], ...],
    ) -> None:
        a = schema.alerts
        await conn.execute(self._insert(a).on_conflict_do_nothing(), [row])
        alert_id = await conn.scalar(
            sa.select(a.c.id).where(
                a.c.chain == row["chain"],
                a.c.token == row["token"],
                a.c.created_at == row["created_at"],
            )
        )
        if deliveries:
            await conn.execute(
                self._insert(schema.alert_deliveries).on_conflict_do_nothing(),
                [{"alert_id": alert_id, "sink": s, "message_id": m} for s, m in deliveries],
            )

    # -- reading -------------------------------------------------------------------------------

    async def events(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        kinds: Collection[str] | None = None,
        token: str | None = None,
    ) -> AsyncIterator[Event]:
        wanted = [cls.kind for cls in EVENT_TYPES if kinds is None or cls.kind in kinds]
        unknown = set(kinds or ()) - set(BY_KIND)
        if unknown:
            raise ValueError(f"unknown event kinds {sorted(unknown)}")
        streams = [self._stream(kind, since, until, token) for kind in wanted]
        heap: list[tuple[float, int, int, Event]] = []
        seq = 0
        try:
            for order, stream in enumerate(streams):
                first = await anext(stream, None)
                if first is not None:
                    heap.append((first.at, order, seq, first))
                    seq += 1
            heapq.heapify(heap)
            while heap:
                _at, order, _seq, event = heapq.heappop(heap)
                yield event
                following = await anext(streams[order], None)
                if following is not None:
                    heapq.heappush(heap, (following.at, order, seq, following))
                    seq += 1
        finally:
            for stream in streams:
                await stream.aclose()

    async def _stream(
        self, kind: str, since: float | None, until: float | None, token: str | None
    ) -> AsyncGenerator[Event, None]:
        """Events of one kind in (at, id) order, a page per query (no connection held)."""
        query, table, build = _QUERIES[kind]
        last: tuple[float, int] | None = None
        while True:
            stmt = query
            if since is not None:
                stmt = stmt.where(table.c.at >= since)
            if until is not None:
                stmt = stmt.where(table.c.at < until)
            if token is not None:
                stmt = stmt.where(table.c.token == token)
            if last is not None:
                stmt = stmt.where(
                    sa.or_(
                        table.c.at > last[0], sa.and_(table.c.at == last[0], table.c.id > last[1])
                    )
                )
            stmt = stmt.order_by(table.c.at, table.c.id).limit(_PAGE)
            async with self._guard("read"), self._engine.connect() as conn:
                rows = (await conn.execute(stmt)).mappings().all()
                extra = await _deliveries(conn, rows) if kind == AlertSent.kind else {}
            for row in rows:
                yield build(row, extra)
            if len(rows) < _PAGE:
                return
            last = (rows[-1]["at"], rows[-1]["id"])

    async def counts(self) -> dict[str, int]:
        async with self._guard("count"), self._engine.connect() as conn:
            return {
                t.name: int(await conn.scalar(sa.select(sa.func.count()).select_from(t)) or 0)
                for t in schema.ALL_TABLES
            }

    async def prune(self, before: float) -> int:
        s = schema
        deleted = 0
        async with self._guard("prune"), self._engine.begin() as conn:
            old_alerts = sa.select(s.alerts.c.id).where(s.alerts.c.at < before)
            # A schedule still fetching is kept (its last fetch comes a day after it opened)
            # unless it was abandoned a week before the cut-off.
            sched = s.outcome_schedules
            old_schedule = sa.and_(
                sched.c.at < before,
                sa.or_(sched.c.status == "done", sched.c.at < before - _ABANDONED),
            )
            old_schedules = sa.select(sched.c.id).where(old_schedule)
            old_events = sa.select(s.tracked_events.c.id).where(
                s.tracked_events.c.schedule_id.in_(old_schedules)
            )
            for stmt in (
                # The outcome tracker's rows go with the schedule they belong to.
                sa.delete(s.followups).where(s.followups.c.event_id.in_(old_events)),
                sa.delete(s.outcomes).where(s.outcomes.c.event_id.in_(old_events)),
                sa.delete(s.tracked_events).where(
                    s.tracked_events.c.schedule_id.in_(old_schedules)
                ),
                sa.delete(s.price_fetches).where(s.price_fetches.c.schedule_id.in_(old_schedules)),
                sa.delete(sched).where(old_schedule),
                sa.delete(s.alert_deliveries).where(s.alert_deliveries.c.alert_id.in_(old_alerts)),
                sa.delete(s.alerts).where(s.alerts.c.at < before),
                sa.delete(s.mentions).where(s.mentions.c.at < before),
                sa.delete(s.levels).where(s.levels.c.at < before),
                sa.delete(s.verdicts).where(s.verdicts.c.at < before),
                sa.delete(s.scores).where(s.scores.c.at < before),
                # A buy goes with its last score (a score is read back with its buy).
                sa.delete(s.buys).where(s.buys.c.at < before, ~sa.exists(_scores_of_buy())),
            ):
                result = await conn.execute(stmt)
                deleted += max(0, result.rowcount or 0)
        return deleted


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers (reports, exports) never block the recorder's writes, nor it them.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _roll_back_invalidated(dbapi_connection: Any, _record: Any, _exception: Any) -> None:
    # A statement cut off by a cancellation (a shutdown's grace running out, a pruner stopped)
    # invalidates its connection, which SQLAlchemy then closes without a rollback. The cut-off
    # statement's cursor outlives the close, and SQLite keeps a connection with an unfinalised
    # statement as a "zombie" that holds its write lock: every later write of the process
    # failed "database is locked". A rollback first releases the lock; aiosqlite runs it after
    # the cut-off statement, in order, even if this await is cancelled in turn.
    with contextlib.suppress(Exception):
        dbapi_connection.rollback()


def open_history(settings: HistorySettings) -> SQLHistory:
    """The history store ``[history]`` describes (not yet connected: nothing is awaited)."""
    return SQLHistory(
        settings.url,
        password=settings.password,
        keep_text=settings.keep_text,
        connect_timeout=settings.connect_timeout,
    )


# -- rows ----------------------------------------------------------------------------------------


def mention_row(e: MentionRecorded, *, keep_text: bool = True) -> dict[str, Any]:
    """The ``mentions`` row of one event, fingerprints computed (bench uses it too)."""
    fp = fingerprint(e.text)
    fwd = e.forward
    return {
        "at": e.at,
        "source": e.ref.source,
        "chat_id": e.ref.chat_id,
        "group_name": e.ref.group,
        "message_id": e.ref.message_id,
        "message_ts": e.ref.ts,
        "received_at": e.ref.received_at,
        "sender_id": e.sender_id,
        "is_forward": fwd is not None,
        "fwd_peer": fwd.origin_peer if fwd else None,
        "fwd_name": fwd.origin_name if fwd else None,
        "fwd_message_id": fwd.origin_message_id if fwd else None,
        "fwd_date": fwd.origin_date if fwd else None,
        "token": e.token,
        "kind": e.mention_kind,
        "chain": e.chain,
        "pair": e.pair,
        "group_count": e.count,
        "text": e.text if keep_text else None,
        "text_sha1": fp.sha1,
        "text_simhash": to_signed(fp.simhash),
    }


def _ref_columns(ref: MessageRef) -> dict[str, Any]:
    return {
        "source": ref.source,
        "chat_id": ref.chat_id,
        "group_name": ref.group,
        "message_id": ref.message_id,
        "message_ts": ref.ts,
        "received_at": ref.received_at,
    }


def _level_row(e: LevelReached) -> dict[str, Any]:
    return {
        "at": e.at,
        "token": e.token,
        "chain": e.chain,
        "level": e.level,
        "ts": e.ts,
        "groups": list(e.groups),
        **_ref_columns(e.ref),
    }


def _verdict_row(e: VerdictMade) -> dict[str, Any]:
    v, snap = e.verdict, e.verdict.snapshot
    return {
        "at": e.at,
        "token": v.token,
        "chain": e.chain,
        "status": v.status.value,
        "reason": v.reason.value,
        "detail": v.detail,
        "pair_address": snap.pair_address if snap else None,
        "price_usd": snap.price_usd if snap else None,
        "liquidity_usd": snap.liquidity_usd if snap else None,
        "volume_h24": snap.volume_h24 if snap else None,
        "market_cap": snap.market_cap if snap else None,
        "snapshot": unstructure(snap) if snap else None,
    }


def _buy_row(b: Buy, at: float) -> dict[str, Any]:
    return {
        "at": at,
        "chain": b.chain,
        "tx_hash": b.tx_hash,
        "wallet": b.wallet,
        "wallet_label": b.wallet_label,
        "token": b.token,
        "symbol": b.symbol,
        "name": b.name,
        "usd": b.usd,
        "ts": b.ts,
        "dex": b.dex,
        "first_interaction": b.first_interaction,
    }


def _score_row(e: BuyScored) -> dict[str, Any]:
    card, c = e.card, e.card.consensus
    return {
        "at": e.at,
        "token": e.buy.token,
        "chain": e.buy.chain,
        "tx_hash": e.buy.tx_hash,
        "wallet": e.buy.wallet,
        "outcome": e.outcome,
        "rescore": e.rescore,
        "base": card.base,
        "total": card.total,
        "consensus_points": c.points,
        "consensus_count": len(c.groups),
        "consensus_groups": list(c.groups),
        "degraded": c.degraded,
        "consensus_reason": c.reason,
        "lines": unstructure(card.lines),
    }


def _alert_row(e: AlertSent) -> dict[str, Any]:
    a = e.alert
    return {
        "at": e.at,
        "created_at": a.created_at,
        "token": a.token,
        "chain": a.snapshot.chain or a.buy.chain,
        "symbol": a.symbol,
        "total": a.card.total,
        "consensus_count": len(a.card.consensus.groups),
        "degraded": a.card.degraded,
        "pair_address": a.snapshot.pair_address,
        "price_usd": a.snapshot.price_usd,
        "tx_hash": a.buy.tx_hash,
        "buy": unstructure(a.buy),
        "snapshot": unstructure(a.snapshot),
        "card": unstructure(a.card),
    }


def _scores_of_buy() -> sa.Select[Any]:
    s, b = schema.scores, schema.buys
    return sa.select(s.c.id).where(
        s.c.chain == b.c.chain,
        s.c.tx_hash == b.c.tx_hash,
        s.c.wallet == b.c.wallet,
        s.c.token == b.c.token,
    )


# -- events from rows ----------------------------------------------------------------------------

Row = Any
Build = Callable[[Row, dict[int, tuple[tuple[str, str | None], ...]]], Event]


def _ref(r: Row) -> MessageRef:
    return MessageRef(
        r["source"],
        r["chat_id"],
        r["group_name"],
        r["message_id"],
        r["message_ts"],
        r["received_at"],
    )


def _mention(r: Row, _extra: Any) -> Event:
    forward = (
        ForwardHeader(r["fwd_peer"], r["fwd_name"], r["fwd_message_id"], r["fwd_date"])
        if r["is_forward"]
        else None
    )
    return MentionRecorded(
        at=r["at"],
        ref=_ref(r),
        token=r["token"],
        mention_kind=r["kind"],
        chain=r["chain"],
        count=r["group_count"],
        pair=r["pair"],
        text=r["text"] or "",
        sender_id=r["sender_id"],
        forward=forward,
    )


def _level(r: Row, _extra: Any) -> Event:
    return LevelReached(
        at=r["at"],
        token=r["token"],
        chain=r["chain"],
        level=r["level"],
        ts=r["ts"],
        groups=tuple(r["groups"]),
        ref=_ref(r),
    )


def _verdict(r: Row, _extra: Any) -> Event:
    snap = r["snapshot"]
    verdict = Verdict(
        token=r["token"],
        status=Status(r["status"]),
        reason=Reason(r["reason"]),
        snapshot=None if snap is None else structure(snap, MarketSnapshot),
        detail=r["detail"],
    )
    return VerdictMade(at=r["at"], chain=r["chain"], verdict=verdict)


def _score(r: Row, _extra: Any) -> Event:
    buy = Buy(
        tx_hash=r["tx_hash"],
        wallet=r["wallet"],
        wallet_label=r["b_wallet_label"],
        token=r["token"],
        symbol=r["b_symbol"],
        name=r["b_name"],
        usd=r["b_usd"],
        ts=r["b_ts"],
        dex=r["b_dex"],
        chain=r["chain"],
        first_interaction=bool(r["b_first_interaction"]),
    )
    consensus = Consensus(
        r["consensus_points"],
        tuple(r["consensus_groups"]),
        bool(r["degraded"]),
        r["consensus_reason"],
    )
    card = ScoreCard(
        lines=structure(r["lines"], tuple[ScoreLine, ...]),
        base=r["base"],
        consensus=consensus,
        total=r["total"],
    )
    return BuyScored(
        at=r["at"], buy=buy, card=card, outcome=r["outcome"], rescore=bool(r["rescore"])
    )


def _alert(r: Row, extra: dict[int, tuple[tuple[str, str | None], ...]]) -> Event:
    alert = Alert(
        buy=structure(r["buy"], Buy),
        snapshot=structure(r["snapshot"], MarketSnapshot),
        card=structure(r["card"], ScoreCard),
        created_at=r["created_at"],
    )
    return AlertSent(at=r["at"], alert=alert, deliveries=extra.get(r["id"], ()))


async def _deliveries(
    conn: AsyncConnection, rows: Sequence[Row]
) -> dict[int, tuple[tuple[str, str | None], ...]]:
    ids = [r["id"] for r in rows]
    if not ids:
        return {}
    d = schema.alert_deliveries
    found: dict[int, list[tuple[str, str | None]]] = {}
    result = await conn.execute(
        sa.select(d.c.alert_id, d.c.sink, d.c.message_id)
        .where(d.c.alert_id.in_(ids))
        .order_by(d.c.id)
    )
    for alert_id, sink, message_id in result:
        found.setdefault(alert_id, []).append((sink, message_id))
    return {k: tuple(v) for k, v in found.items()}


def _score_query() -> sa.Select[Any]:
    s, b = schema.scores, schema.buys
    joined = s.join(
        b,
        sa.and_(
            b.c.chain == s.c.chain,
            b.c.tx_hash == s.c.tx_hash,
            b.c.wallet == s.c.wallet,
            b.c.token == s.c.token,
        ),
    )
    buy_columns = [b.c[name].label(f"b_{name}") for name in _BUY_EXTRA]
    return sa.select(s, *buy_columns).select_from(joined)


_BUY_EXTRA = ("wallet_label", "symbol", "name", "usd", "ts", "dex", "first_interaction")

_QUERIES: dict[str, tuple[sa.Select[Any], sa.Table, Build]] = {
    MentionRecorded.kind: (sa.select(schema.mentions), schema.mentions, _mention),
    LevelReached.kind: (sa.select(schema.levels), schema.levels, _level),
    VerdictMade.kind: (sa.select(schema.verdicts), schema.verdicts, _verdict),
    BuyScored.kind: (_score_query(), schema.scores, _score),
    AlertSent.kind: (sa.select(schema.alerts), schema.alerts, _alert),
}
