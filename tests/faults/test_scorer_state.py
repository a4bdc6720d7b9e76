"""Issue 17, items 2 and 4 in one process: what the scorer owes survives it, and what it sent is
never sent again. The real scorer and Cielo feed over a fake Cielo and a fake Bot API, a memory
store shared by successive "processes" (new Scorer and feed objects, as after a restart), market
data from a fixed table; time is a FakeClock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callsbot.alert import Alert
from callsbot.clock import FakeClock
from callsbot.config import ConsensusSettings, ScoringSettings
from callsbot.events import AlertSent
from callsbot.history.sql import SQLHistory
from callsbot.metrics import Metrics
from callsbot.runtime.roles import build_feed, build_scorer, make_parts
from callsbot.scoring import consensus, score
from callsbot.store import keys
from callsbot.store.memory import MemoryStore
from callsbot.testing.cielo import FakeCielo, swap
from callsbot.testing.telegram_bot import FakeTelegramBot
from tests.test_scorer import (
    OTHER,
    TOKEN,
    FixedMarket,
    FlakyStore,
    Rig,
    a_buy,
    beat,
    call,
    make_rig,
    snapshot,
    valid,
)


@pytest.fixture
async def cielo() -> AsyncIterator[FakeCielo]:
    server = await FakeCielo().start()
    yield server
    await server.close()


@pytest.fixture
async def bot() -> AsyncIterator[FakeTelegramBot]:
    server = await FakeTelegramBot().start()
    yield server
    await server.close()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics.create()


def sent(bot: FakeTelegramBot, token: str) -> int:
    return sum(token in m["visible"] for m in bot.sent)


async def test_a_buy_read_but_never_handled_comes_back_after_its_lease(
    cielo: FakeCielo, bot: FakeTelegramBot, clock: FakeClock, metrics: Metrics, tmp_path: Path
) -> None:
    store = MemoryStore(window=3600, clock=clock)
    await beat(store)
    await call(store, TOKEN, "@a", "@b", "@c")
    cielo.serve([swap("tx1", TOKEN)])
    died = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    read = await died.feed.poll()  # read, then the process died before scoring it
    assert [b.tx_hash for b in read.buys] == ["tx1"]

    restarted = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    assert await restarted.scorer.poll_once() == []  # leased: maybe still being handled
    clock.advance(121)  # cielo.claim_lease_seconds = 120
    await beat(store)
    [scored] = await restarted.scorer.poll_once()
    assert scored.outcome == "alerted"
    clock.advance(600)  # handled now: done for cielo.seen_ttl_seconds, not for a lease
    assert await restarted.scorer.poll_once() == []
    await restarted.close()
    assert sent(bot, TOKEN) == 1


async def test_pending_buys_and_the_watch_list_survive_a_restart(
    cielo: FakeCielo, bot: FakeTelegramBot, clock: FakeClock, metrics: Metrics, tmp_path: Path
) -> None:
    store = MemoryStore(window=3600, clock=clock)
    await beat(store)
    market = FixedMarket({OTHER: valid(snapshot(OTHER))})
    first = make_rig(cielo, bot, store, clock, metrics, tmp_path, market=market)
    cielo.serve([swap("w", OTHER)])
    [watched] = await first.scorer.poll_once()  # 6 - 1 (nobody called it): watching
    assert watched.outcome == "watching"
    market.fail = True
    cielo.serve([swap("p", TOKEN), swap("w", OTHER)])
    [parked] = await first.scorer.poll_once()
    assert parked.outcome == "market_unknown"
    # The process ends here (SIGTERM or SIGKILL alike: nothing is saved on the way out).

    second = make_rig(cielo, bot, store, clock, metrics, tmp_path, market=market)
    await second.scorer.restore()
    assert (second.scorer.watching, second.scorer.pending) == ((OTHER,), (TOKEN,))
    market.fail = False
    market.table[TOKEN] = valid(snapshot())
    await call(store, TOKEN, "@a", "@b", "@c")
    await call(store, OTHER, "@a", "@b")  # late consensus: 6 + 1
    clock.advance(30)
    await beat(store)
    ticked = {r.buy.token: r.outcome for r in await second.scorer.tick()}
    await second.close()
    assert ticked == {TOKEN: "alerted", OTHER: "alerted"}
    assert (sent(bot, TOKEN), sent(bot, OTHER)) == (1, 1)
    assert await store.rows(keys.WATCH_LIST) == {}
    assert await store.rows(keys.PENDING_BUYS) == {}


async def test_alerts_and_claims_made_while_the_store_was_away_are_written_back(
    cielo: FakeCielo, bot: FakeTelegramBot, clock: FakeClock, metrics: Metrics, tmp_path: Path
) -> None:
    store = FlakyStore(window=3600, clock=clock)
    first = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    store.down = True
    cielo.serve([swap("during", TOKEN, usd=9000, label="Whale")])
    [during] = await first.scorer.poll_once()  # 8 without consensus: alerted, degraded
    assert during.outcome == "alerted"
    store.down = False
    clock.advance(30)
    await first.scorer.poll_once()  # the feed writes its claims back when it polls
    await first.scorer.tick()  # the scorer its alert claims
    await first.close()
    assert await store.claim(keys.alert_claim(TOKEN), 1) is False  # the cooldown is there
    assert await store.claim(keys.seen_tx("during"), 1) is False

    restarted = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    cielo.serve([swap("after", TOKEN, usd=9000, label="Whale"), swap("during", TOKEN)])
    [after] = await restarted.scorer.poll_once()
    await restarted.close()
    assert after.outcome == "cooldown"
    assert sent(bot, TOKEN) == 1


async def test_a_restarted_scorer_learns_the_recent_alerts_from_the_history(
    cielo: FakeCielo, bot: FakeTelegramBot, clock: FakeClock, metrics: Metrics, tmp_path: Path
) -> None:
    history = SQLHistory(f"sqlite:///{tmp_path / 'history.sqlite3'}")
    await history.upgrade()
    bought = a_buy(clock, usd=9000.0)
    cons = consensus(None, heartbeat_age=None, settings=ConsensusSettings())
    card = score(bought, snapshot(), cons, settings=ScoringSettings(), now=clock.time())
    alert = Alert(bought, snapshot(), card, clock.time() - 600)
    await history.record([AlertSent(at=clock.time() - 600, alert=alert, deliveries=())])
    # The store lost everything (a Redis restart without persistence): only the history knows.
    store = MemoryStore(window=3600, clock=clock)
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    parts = make_parts(
        rig.scorer._settings, clock=clock, metrics=metrics, store=store, market=rig.market
    )
    scorer = build_scorer(parts, feed=build_feed(parts), sinks=rig.sinks, history=history)
    cielo.serve([swap("again", TOKEN, usd=9000, label="Whale")])
    await scorer.restore()
    [again] = await scorer.poll_once()
    assert again.outcome == "cooldown"
    assert await store.claim(keys.alert_claim(TOKEN), 1) is False  # and the store knows again
    clock.advance(3001)  # the cooldown of the alert sent 600 s ago is over
    cielo.serve([swap("later", TOKEN, usd=9000, label="Whale")])
    [later] = await scorer.poll_once()
    await scorer.aclose()
    await rig.close()
    await history.aclose()
    assert later.outcome == "alerted"
    assert sent(bot, TOKEN) == 1


async def test_a_send_lease_left_by_a_dead_scorer_only_delays_the_alert(
    cielo: FakeCielo, bot: FakeTelegramBot, clock: FakeClock, metrics: Metrics, tmp_path: Path
) -> None:
    store = MemoryStore(window=3600, clock=clock)
    await beat(store)
    await call(store, TOKEN, "@a", "@b", "@c")
    # A scorer was killed mid-send: its lease stays for scoring.alert_lease_seconds (30 s).
    assert await store.lease(keys.alert_lease(TOKEN), "scorer@dead", 30)
    rig: Rig = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    cielo.serve([swap("tx1", TOKEN)])
    [busy] = await rig.scorer.poll_once()
    assert busy.outcome == "alert_busy"
    assert rig.scorer.watching == (TOKEN,)  # kept, to be asked again
    clock.advance(31)
    await beat(store)
    [retried] = await rig.scorer.tick()
    await rig.close()
    assert retried.outcome == "alerted"
    assert sent(bot, TOKEN) == 1
    assert await store.is_claimed(keys.alert_claim(TOKEN))  # the cooldown, from the delivery
    assert not await store.is_claimed(keys.alert_lease(TOKEN))


async def test_a_running_scorer_asks_the_history_before_sending_what_the_store_forgot(
    cielo: FakeCielo, bot: FakeTelegramBot, clock: FakeClock, metrics: Metrics, tmp_path: Path
) -> None:
    """Another scorer alerted the token; then the store lost its claims (a Redis restart without
    persistence). This scorer, running all along, never heard of that alert."""
    history = SQLHistory(f"sqlite:///{tmp_path / 'history.sqlite3'}")
    await history.upgrade()
    store = MemoryStore(window=3600, clock=clock)
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    parts = make_parts(
        rig.scorer._settings, clock=clock, metrics=metrics, store=store, market=rig.market
    )
    scorer = build_scorer(parts, feed=build_feed(parts), sinks=rig.sinks, history=history)
    await scorer.restore()  # nothing to learn yet
    bought = a_buy(clock, usd=9000.0)
    cons = consensus(None, heartbeat_age=None, settings=ConsensusSettings())
    card = score(bought, snapshot(), cons, settings=ScoringSettings(), now=clock.time())
    await history.record(
        [
            AlertSent(
                at=clock.time(), alert=Alert(bought, snapshot(), card, clock.time()), deliveries=()
            )
        ]
    )
    clock.advance(60)
    cielo.serve([swap("again", TOKEN, usd=9000, label="Whale")])
    [again] = await scorer.poll_once()
    await scorer.aclose()
    await rig.close()
    await history.aclose()
    assert again.outcome == "cooldown"
    assert bot.sent == []
    assert await store.is_claimed(keys.alert_claim(TOKEN))  # and the store knows it again
