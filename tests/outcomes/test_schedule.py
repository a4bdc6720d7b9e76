"""The section-2 schedule and what its fetches cover (pure)."""

from __future__ import annotations

from callsbot.outcomes.schedule import (
    MAX_LIMIT,
    Window,
    absorbs,
    as_of,
    covered_until,
    late_entry_fetch,
    plan,
)

T = 1_700_000_023


def test_one_event_gets_the_four_fetches_of_section_2() -> None:
    windows = plan(T, T, now=T)
    assert [(w.stage, w.step, w.before - T, w.size) for w in windows] == [
        (1, 60, 17 * 60, 20),
        (2, 60, 62 * 60, 50),
        (3, 60, 4 * 3600 + 120, 185),
        (4, 300, 24 * 3600 + 120, 245),
    ]
    assert [w.due for w in windows] == [float(w.before) for w in windows]
    # Together: 1-minute candles from t − 3 min to t + 4 h 02, 5-minute from t + 3 h 37.
    assert windows[0].start == T - 180
    assert covered_until(T - 180, [(w.start, w.before) for w in windows[:3]]) == windows[2].before
    assert windows[3].start == T + 3 * 3600 + 37 * 60


def test_events_on_one_token_share_fetches_that_reach_over_all_of_them() -> None:
    shared = plan(T, T + 540, now=T)
    assert [w.before - T for w in shared] == [
        540 + 17 * 60,
        540 + 62 * 60,
        540 + 4 * 3600 + 120,
        540 + 24 * 3600 + 120,
    ]
    assert [w.size for w in shared] == [29, 59, 194, 247]
    for offset in (0, 200, 540):  # every event's own windows are inside the shared ones
        for own, common in zip(plan(T + offset, T + offset, now=T), shared, strict=True):
            assert common.start <= own.start
            assert own.before <= common.before


def test_done_stages_are_not_planned_and_lost_ones_are_reached_over() -> None:
    assert [w.stage for w in plan(T, T, done={1, 2}, now=T)] == [3, 4]
    lost = plan(T, T, now=T)[1]
    windows = plan(T, T, done={1, 2}, lost=[lost], now=T)
    assert windows[0].stage == 3
    assert windows[0].start == lost.start
    assert absorbs(windows, lost)
    assert not absorbs(windows[1:], lost)
    last_five = plan(T, T, now=T)[3]
    assert plan(T, T, done={1, 2, 3, 4}, lost=[last_five], now=T) == []


def test_fetches_already_due_are_merged_into_one_request() -> None:
    # An event learnt of 5 hours late: the three 1-minute fetches are one request now.
    windows = plan(T, T, now=T + 5 * 3600)
    assert [(w.stage, w.start - T, w.before - T) for w in windows] == [
        (3, -180, 4 * 3600 + 120),
        (4, 3 * 3600 + 37 * 60, 24 * 3600 + 120),
    ]
    assert windows[0].size == 245
    # Never past the API's ceiling: 3 days late, 5-minute candles beyond 1,000 stay apart.
    assert all(w.size <= MAX_LIMIT for w in plan(T, T + 3500, now=T + 3 * 86400))


def test_coverage_stops_at_the_first_hole() -> None:
    spans = [(100.0, 200.0), (150.0, 300.0), (301.0, 400.0)]
    assert covered_until(120, spans) == 300.0
    assert covered_until(50, spans) is None
    assert covered_until(100, []) is None
    assert covered_until(100, [(0.0, 100.0)]) is None


def test_as_of_is_where_the_path_stops_being_complete() -> None:
    windows = plan(T, T, now=T)
    spans = [(float(w.start), float(w.before)) for w in windows]
    minute, five = spans[:3], spans[3:]
    assert as_of(T, [], five) is None
    assert as_of(T, minute[:1], []) == T + 17 * 60 - 1
    assert as_of(T, minute[:2], []) == T + 62 * 60 - 1
    switch = (T + 4 * 3600) // 300 * 300
    assert as_of(T, minute, []) == switch - 1  # the 5-minute part not fetched yet
    assert as_of(T, minute, five) == T + 24 * 3600 + 120 - 1
    # A hole (the +62 min fetch failed) ends completeness however much came after it.
    assert as_of(T, [minute[0], minute[2]], five) == T + 17 * 60 - 1


def test_a_late_entry_gets_a_fetch_to_the_end_of_its_horizon() -> None:
    entry = T + 6 * 3600 + 37
    window = late_entry_fetch(entry, after=T + 24 * 3600 + 120)
    assert window == Window(5, 300, entry + 86400 + 60, window.size)
    assert window.start <= T + 24 * 3600 + 120 - 300
