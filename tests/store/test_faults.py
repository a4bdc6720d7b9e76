"""A Redis that refuses: each refusal is a StoreError that names its fault (issue 17, 6/8/9)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.exceptions import NoPermissionError

from callsbot.clock import FakeClock
from callsbot.config import Settings
from callsbot.errors import StoreError, StoreFault
from callsbot.metrics import Metrics
from callsbot.models import IncomingMessage
from callsbot.runtime.probes import inspect_store
from callsbot.runtime.roles import build_pipeline, make_parts
from callsbot.store import keys
from callsbot.store.redis import RedisStore, build_client
from callsbot.testing.redis_server import RedisServer
from tests.conftest import make_redis_store, mark_window_whole
from tests.tg import mint

T0 = 1_700_000_000
CHAT = -1000000000111


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A redis-server of this test's own (its memory limit and users are changed)."""
    server = RedisServer(
        config=(
            "--user",
            "reader",
            "on",
            ">reader-pw",
            "~*",
            "&*",
            "+@read",
            "+@scripting",
            "+ping",
            "--user",
            "noscripts",
            "on",
            ">noscripts-pw",
            "~*",
            "&*",
            "+@all",
            "-@scripting",
        )
    )
    server.start()
    mark_window_whole(server)
    yield server
    server.stop()


async def fault_of(call: object) -> StoreFault:
    with pytest.raises(StoreError) as caught:
        await call  # type: ignore[misc]
    return caught.value.fault


async def test_a_full_redis_refuses_every_write_as_oom(
    server: RedisServer, clock: FakeClock
) -> None:
    async with make_redis_store(server.url, clock) as store:
        server.command("CONFIG", "SET", "maxmemory", "1")  # below what Redis already uses
        assert await fault_of(store.record_once("T", "@g", T0, claim="c", ttl=60)) == "oom"
        assert await fault_of(store.record("T", "@g", T0)) == "oom"
        assert await fault_of(store.advance_cursor(keys.chat_cursor(CHAT), 5)) == "oom"
        assert await fault_of(store.claim("x", 60)) == "oom"
        assert await fault_of(store.beat("aggregator", 15)) == "oom"
        assert await fault_of(store.probe_write("p")) == "oom"
        await store.ping()  # what a PING-only readiness check saw: all well
        assert await store.groups("T") == {}  # reads still answer


async def test_under_oom_the_pipeline_buffers_and_moves_no_cursor(
    server: RedisServer, clock: FakeClock
) -> None:
    async with make_redis_store(server.url, clock) as store:
        parts = make_parts(
            Settings(), clock=clock, metrics=Metrics.create(), store=store, market=None
        )
        pipeline = build_pipeline(parts, validate=False)
        server.command("CONFIG", "SET", "maxmemory", "1")
        message = IncomingMessage(
            chat_id=CHAT, group="@alpha", message_id=7, ts=T0 - 60, text=f"CA: {mint(1)}"
        )
        [result] = await pipeline.process(message)
        assert result.outcome == "buffered"
        assert pipeline.health() == ["store writes failing: 1 mentions buffered"]
        await pipeline.flush_cursors()
        server.command("CONFIG", "SET", "maxmemory", "0")
        assert await store.get_cursor(keys.chat_cursor(CHAT)) is None
        assert await pipeline.flush_buffer() is True
        assert await store.groups(mint(1)) == {"@alpha": T0 - 60}


async def test_a_read_only_user_is_refused_as_noperm(server: RedisServer, clock: FakeClock) -> None:
    async with make_redis_store(server.url_for("reader", "reader-pw"), clock) as store:
        await store.ping()
        assert await store.groups("T") == {}
        assert await fault_of(store.probe_write("p")) == "noperm"
        assert await fault_of(store.record("T", "@g", T0)) == "noperm"
        assert await fault_of(store.eviction_policy()) == "noperm"


async def test_a_user_without_scripts_is_refused_as_noperm(
    server: RedisServer, clock: FakeClock
) -> None:
    async with make_redis_store(server.url_for("noscripts", "noscripts-pw"), clock) as store:
        # Every write of ours runs as a script: a user without them cannot record either.
        assert await fault_of(store.record("T", "@g", T0)) == "noperm"
        assert await fault_of(store.probe_write("p")) == "noperm"
        assert await fault_of(store.advance_cursor(keys.chat_cursor(CHAT), 5)) == "noperm"


async def test_a_wrong_password_is_auth_not_an_outage(
    server: RedisServer, clock: FakeClock
) -> None:
    async with make_redis_store(server.url_for("reader", "wrong"), clock) as store:
        assert await fault_of(store.ping()) == "auth"


async def test_rediss_against_a_plain_server_is_diagnosed_as_tls(
    server: RedisServer, clock: FakeClock
) -> None:
    url = server.url.replace("redis://", "rediss://")
    client = build_client(
        url, connect_timeout=0.3, socket_timeout=0.3, retries=0, health_check_interval=0
    )
    async with RedisStore(client, window=3600, clock=clock) as store:
        with pytest.raises(StoreError) as caught:
            await store.ping()
        # The handshake only times out: a plain server waits for a line end that never comes.
        assert caught.value.fault in (StoreFault.TIMEOUT, StoreFault.CONNECTION)
        diagnosed = await store.diagnose(caught.value)
        assert diagnosed.fault is StoreFault.TLS
        assert "plain text" in str(diagnosed)


async def test_a_dead_port_is_a_connection_fault_and_stays_one(clock: FakeClock) -> None:
    dead = RedisServer()  # never started
    async with make_redis_store(dead.url, clock) as store:
        with pytest.raises(StoreError) as caught:
            await store.ping()
        assert caught.value.fault is StoreFault.CONNECTION
        assert await store.diagnose(caught.value) is caught.value


def documented_acl_rules(password: str) -> list[str]:
    """The rules of the ``ACL SETUSER callsbot …`` line in docs/deploy.md."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()
    [line] = [ln for ln in docs.splitlines() if ln.startswith("ACL SETUSER callsbot ")]
    return [f">{password}" if rule.startswith(">") else rule for rule in line.split()[3:]]


async def test_the_acl_user_of_docs_deploy_md_can_do_everything(clock: FakeClock) -> None:
    """The rights docs/deploy.md lists are enough for every store operation."""
    rules = documented_acl_rules("test-pw")
    server = RedisServer()
    server.start()
    try:
        assert server.command("ACL", "SETUSER", "callsbot", *rules) == "+OK"
        async with make_redis_store(server.url_for("callsbot", "test-pw"), clock) as store:
            found = await inspect_store(store, name="acl", within=2.0)
            assert (found.fault, found.policy) == (None, "noeviction")
            await store.begin_rebuild("g1")
            assert await store.finish_rebuild("g1")
            assert (await store.window_state(check="g1")).checks == 1
            assert await store.record_once("T", "@a", T0, claim="c", ttl=60) == 1
            assert await store.record("T", "@b", T0) == 2
            assert await store.groups("T") == {"@a": T0, "@b": T0}
            assert await store.counts(["T"]) == {"T": 2}
            assert await store.snapshot() == {"T": {"@a": T0, "@b": T0}}
            await store.beat("aggregator", 15)
            assert await store.heartbeat_age("aggregator") is not None
            assert await store.claim("k", 60)
            await store.release("k")
            assert await store.advance_cursor(keys.chat_cursor(CHAT), 5) == 5
            assert await store.get_cursor(keys.chat_cursor(CHAT)) == 5
            [entry] = await store.append([("kind", "{}")], origin="o", maxlen=100)
            assert [e.id for e in await store.read_after("0-0", count=5, block=0)] == [entry]
            assert await store.last_id() == entry
            await store.save_position("scorer", entry)
            assert await store.position("scorer") == entry
            # Nothing outside callsbot's prefix.
            with pytest.raises(NoPermissionError):
                await store.client.set("other:key", 1)
    finally:
        server.stop()
