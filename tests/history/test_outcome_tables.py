"""The outcome tracker's tables (revision 0002): the same contract on SQLite and PostgreSQL."""

from __future__ import annotations

import attrs
import pytest

from callsbot.history.sql import SQLHistory
from callsbot.models import Candle
from callsbot.outcomes.ledger import FetchState, NewEvent, OutcomeLedger, ScheduleStatus
from callsbot.outcomes.path import Outcome, OutcomeStatus
from callsbot.outcomes.report import EventKind
from tests.history import factory as f
from tests.history.conftest import both_backends
from tests.tg import mint

T = 1_700_000_000
TOKEN = mint(1)
WINDOW = 3600


def event(
    kind: EventKind = EventKind.LEVEL_REACHED,
    *,
    level: int = 1,
    at: int = T,
    token: str = TOKEN,
    pool: str | None = "POOL",
    **kw: object,
) -> NewEvent:
    return NewEvent(
        kind=kind,
        chain="solana",
        token=token,
        level=level,
        event_ts=at,
        at=at + 1.5,
        groups=("@a", "@b")[:level],
        pool=pool,
        pool_source="verdict" if pool else None,
        **kw,  # type: ignore[arg-type]
    )


def outcome(at: int = T, status: OutcomeStatus = OutcomeStatus.RESOLVED, **kw: object) -> Outcome:
    return Outcome(event_ts=at, latency=60, status=status, **kw)  # type: ignore[arg-type]


@pytest.fixture
def ledger(history: SQLHistory) -> OutcomeLedger:
    return OutcomeLedger(history)


@both_backends()
class TestOutcomeTables:
    async def test_events_are_stored_once_and_share_one_schedule(
        self, ledger: OutcomeLedger
    ) -> None:
        first = await ledger.register(event(), window=WINDOW, now=T)
        assert first is not None
        assert await ledger.register(event(), window=WINDOW, now=T) is None  # the same again
        second = await ledger.register(event(level=2, at=T + 600), window=WINDOW, now=T + 600)
        alert = await ledger.register(
            event(
                EventKind.ALERT,
                level=2,
                at=T + 660,
                alert_created_at=T + 659.5,
                reply_sink="telegram",
                reply_to="981",
            ),
            window=WINDOW,
            now=T + 660,
        )
        assert second is not None
        assert alert is not None
        assert first.schedule_id == second.schedule_id == alert.schedule_id
        view = await ledger.view(first.schedule_id)
        assert (view.schedule.first_ts, view.schedule.last_ts) == (T, T + 660)
        assert view.schedule.status is ScheduleStatus.OPEN
        assert [e.kind for e in view.events] == [
            EventKind.LEVEL_REACHED,
            EventKind.LEVEL_REACHED,
            EventKind.ALERT,
        ]
        assert view.events[2].reply_to == "981"
        assert view.events[1].groups == ("@a", "@b")
        # One fetch per stage, due after the last event, reaching back to the first.
        plan = [(x.stage, x.step, x.before - T, x.size, x.state) for x in view.fetches]
        assert plan == [
            (1, 60, 660 + 17 * 60, 31, FetchState.PENDING),
            (2, 60, 660 + 62 * 60, 61, FetchState.PENDING),
            (3, 60, 660 + 4 * 3600 + 120, 196, FetchState.PENDING),
            (4, 300, 660 + 24 * 3600 + 120, 248, FetchState.PENDING),
        ]
        assert await ledger.pending_dues() == sorted(float(x.before) for x in view.fetches)

    async def test_a_new_window_or_a_later_fetch_starts_another_schedule(
        self, ledger: OutcomeLedger
    ) -> None:
        a = await ledger.register(event(), window=WINDOW, now=T)
        b = await ledger.register(event(level=1, at=T + WINDOW + 1), window=WINDOW, now=T)
        assert a is not None
        assert b is not None
        assert a.schedule_id != b.schedule_id
        c = await ledger.register(event(token=mint(2)), window=WINDOW, now=T)
        (stage1, stage2, *_rest) = (await ledger.view(c.schedule_id)).fetches  # type: ignore[union-attr]
        await ledger.fetched(
            stage1.id,
            pool="POOL",
            fetched_at=T + 1100,
            complete_until=T + 1020,
            candles=[],
            skipped=0,
        )
        joined = await ledger.register(
            event(token=mint(2), level=2, at=T + 1200), window=WINDOW, now=T + 1200
        )
        assert joined is not None
        assert joined.schedule_id == c.schedule_id
        await ledger.fetched(
            stage2.id,
            pool="POOL",
            fetched_at=T + 4900,
            complete_until=T + 4920,
            candles=[],
            skipped=0,
        )
        late = await ledger.register(
            event(token=mint(2), level=3, at=T + 1300), window=WINDOW, now=T + 5000
        )
        assert late is not None
        assert late.schedule_id != c.schedule_id

    async def test_only_the_first_score_of_a_window_is_kept(self, ledger: OutcomeLedger) -> None:
        assert await ledger.register(event(EventKind.SCORED, level=0), window=WINDOW, now=T)
        again = event(EventKind.SCORED, level=1, at=T + 100)
        assert await ledger.register(again, window=WINDOW, now=T) is None
        later = event(EventKind.SCORED, level=1, at=T + WINDOW)
        assert await ledger.register(later, window=WINDOW, now=T + WINDOW)

    async def test_fetches_due_retried_done_and_given_up(self, ledger: OutcomeLedger) -> None:
        stored = await ledger.register(event(), window=WINDOW, now=T)
        assert stored is not None
        sid = stored.schedule_id
        assert await ledger.due(T + 60) == []
        ((due, schedule),) = await ledger.due(T + 17 * 60)
        assert (due.stage, schedule.pool, schedule.token) == (1, "POOL", TOKEN)
        await ledger.retry(due.id, sid, due=T + 2000, error="server_error: HTTP 502", counted=True)
        await ledger.retry(due.id, sid, due=T + 2100, error="rate_limited", counted=False)
        assert await ledger.due(T + 2000) == []
        ((again, _),) = await ledger.due(T + 2100)
        assert (again.attempts, again.rate_limited, again.last_error) == (1, 1, "rate_limited")
        candles = [Candle(T + 60 * i, 1.0 + i / 7, 2.5, 0.125, 1.5, 10.0 * i) for i in range(3)]
        await ledger.fetched(
            again.id,
            pool="NEWPOOL",
            fetched_at=T + 2101.5,
            complete_until=T + 1020.0,
            candles=candles,
            skipped=1,
        )
        view = await ledger.view(sid)
        done = view.fetches[0]
        assert (done.state, done.pool, done.candles, done.skipped) == (
            FetchState.DONE,
            "NEWPOOL",
            tuple(candles),
            1,
        )
        assert view.spans(60) == [(float(T + 1020 - 20 * 60), T + 1020.0)]
        assert view.schedule.errors == 1
        # Stage 2 given up: stage 3 reaches back over its candles.
        stage2 = view.fetches[1]
        await ledger.give_up(stage2.id, sid, error="unreachable", now=T + 9000, cancel_rest=False)
        view = await ledger.view(sid)
        assert view.fetches[1].state is FetchState.FAILED
        assert view.fetches[2].window.start == stage2.window.start
        await ledger.give_up(view.fetches[2].id, sid, error="too_old", now=T, cancel_rest=True)
        states = [x.state for x in (await ledger.view(sid)).fetches]
        assert states == [
            FetchState.DONE,
            FetchState.FAILED,
            FetchState.FAILED,
            FetchState.CANCELLED,
        ]
        await ledger.close(sid)
        assert (await ledger.view(sid)).schedule.status is ScheduleStatus.DONE
        assert await ledger.pending_dues() == []

    async def test_outcomes_are_replaced_and_read_back_as_records(
        self, ledger: OutcomeLedger
    ) -> None:
        level = await ledger.register(event(), window=WINDOW, now=T)
        solo = await ledger.register(
            event(EventKind.SCORED, level=0, token=mint(3), at=T + 5), window=WINDOW, now=T
        )
        alert = await ledger.register(
            event(EventKind.ALERT, level=1, at=T + 3000, alert_created_at=T + 2999.25),
            window=WINDOW,
            now=T,
        )
        assert level
        assert solo
        assert alert
        tracking = outcome(status=OutcomeStatus.TRACKING, entry=1.0, entry_ts=T + 60, p_5m=1.1)
        await ledger.save_outcomes({level.id: tracking}, now=T + 1100)
        final = attrs.evolve(
            tracking,
            status=OutcomeStatus.RESOLVED,
            peak=2.5,
            win=True,
            stale=("p_24h",),
            t_2x=T + 600,
        )
        await ledger.save_outcomes({level.id: final, alert.id: final}, now=T + 90_000)
        records = await ledger.records(window=WINDOW, latency=60)
        by_kind = {r.kind: r for r in records}
        assert by_kind[EventKind.LEVEL_REACHED].outcome == final
        assert by_kind[EventKind.LEVEL_REACHED].alerted  # alerted 50 min later, same token
        assert not by_kind[EventKind.SCORED].alerted
        assert by_kind[EventKind.SCORED].outcome.status is OutcomeStatus.TRACKING  # none yet
        assert by_kind[EventKind.ALERT].alerted
        assert [
            r.kind
            for r in await ledger.records(since=T + 1, until=T + 3000, window=WINDOW, latency=60)
        ] == [EventKind.SCORED]
        cells = await ledger.alert_outcomes([(TOKEN, T + 2999.25), (TOKEN, 1.0)])
        assert cells == {(TOKEN, T + 2999.25): final}
        await ledger.record_followup(
            alert.id, 3600, at=T + 7000, sink="telegram", message_id="982", text="📈 +1h"
        )
        await ledger.record_followup(
            alert.id, 3600, at=T + 7001, sink="telegram", message_id="983", text="📈 +1h"
        )
        assert (await ledger.view(alert.schedule_id)).followups == {(alert.id, 3600)}

    async def test_pools_and_groups_come_from_the_recorded_events(
        self, ledger: OutcomeLedger, history: SQLHistory
    ) -> None:
        await history.record(
            [
                f.verdict(1, at=T - 100),
                f.mention(1, at=T - 50, group="@a", message_id=1),
                f.mention(1, at=T - 20, group="@b", message_id=2),
                f.mention(1, at=T + 500, group="@c", message_id=3),  # called after the event
            ]
        )
        assert await ledger.verdict_pool("solana", mint(1)) == f.snapshot(1).pair_address
        assert await ledger.verdict_pool("solana", mint(9)) is None
        groups = await ledger.mention_groups(mint(1), ts=T, window=WINDOW, recorded_by=T + 1.0)
        assert groups == ("@a", "@b")

    async def test_retention_takes_the_tracker_rows_with_their_schedule(
        self, ledger: OutcomeLedger, history: SQLHistory
    ) -> None:
        old = await ledger.register(event(at=T), window=WINDOW, now=T)
        fetching = await ledger.register(event(at=T, token=mint(2)), window=WINDOW, now=T)
        new = await ledger.register(event(at=T + 10 * WINDOW), window=WINDOW, now=T)
        assert old
        assert fetching
        assert new
        await ledger.save_outcomes({old.id: outcome(), new.id: outcome()}, now=T)
        await ledger.record_followup(old.id, 3600, at=T, sink="s", message_id=None, text="x")
        await ledger.close(old.schedule_id)
        deleted = await history.prune(T + 5 * WINDOW)
        assert deleted == 1 + 1 + 4 + 1 + 1  # follow-up, outcome, fetches, event, schedule
        counts = await history.counts()
        assert (counts["tracked_events"], counts["outcomes"], counts["price_fetches"]) == (2, 1, 8)
        assert counts["outcome_schedules"] == 2  # the one still fetching is kept
        assert await history.prune(T + 8 * 86_400) == 2 * (1 + 4 + 1) + 1  # abandoned; and new


@both_backends()
async def test_an_older_event_never_joins_a_schedule_already_fetched(ledger: OutcomeLedger) -> None:
    first = await ledger.register(event(at=T), window=WINDOW, now=T)
    assert first is not None
    ((stage1, _),) = await ledger.due(T + 17 * 60)
    await ledger.fetched(
        stage1.id, pool="POOL", fetched_at=T + 1020, complete_until=T + 1020, candles=[], skipped=0
    )
    older = await ledger.register(event(level=2, at=T - 600), window=WINDOW, now=T + 1100)
    newer = await ledger.register(event(level=3, at=T + 600), window=WINDOW, now=T + 1100)
    assert older is not None
    assert newer is not None
    assert older.schedule_id != first.schedule_id  # it needs candles from before T − 3 min
    assert newer.schedule_id == first.schedule_id
