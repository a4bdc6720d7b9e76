"""``run`` refuses a store it cannot work with, at once, with exit 2 and one line; ``check``
says the same (issue 17, items 8 and 9). Real subprocesses against real redis-servers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from callsbot.cli.check import check
from callsbot.clock import SystemClock
from callsbot.config import (
    CieloSettings,
    DexScreenerSettings,
    HistorySettings,
    Settings,
    StoreSettings,
    WebSettings,
)
from callsbot.metrics import Metrics
from callsbot.runtime import app
from callsbot.testing.redis_server import RedisServer, free_port

#: A run that does not refuse within this long has not failed fast.
FAST = 20

WRITER = ("--user", "worker", "on", ">worker-pw", "~*", "&*", "+@all")
READER = ("--user", "reader", "on", ">reader-pw", "~*", "&*", "+@read", "+@scripting", "+ping")
NO_CONFIG = ("--user", "managed", "on", ">managed-pw", "~*", "&*", "+@all", "-config")


def env(tmp_path: Path, store_url: str, **extra: str) -> dict[str, str]:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing leaves this machine
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "CALLSBOT_STORE_URL": store_url,
        "CALLSBOT_STORE_CONNECT_TIMEOUT": "0.5",
        "CALLSBOT_STORE_SOCKET_TIMEOUT": "0.5",
        "CALLSBOT_STORE_RETRIES": "0",
        "CALLSBOT_CIELO_API_KEY": "test-key",
        "CALLSBOT_CIELO_URL": dead,
        "CALLSBOT_DEXSCREENER_URL": dead,
        "CALLSBOT_WEB_ENABLED": "false",
        **extra,
    }


def run_scorer(tmp_path: Path, store_url: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callsbot", "run", "--role", "scorer"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=FAST,
        env=env(tmp_path, store_url, **extra),
    )


def fatal_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line that says why (no traceback, nothing after it)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if "fatal:" in line]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def server() -> Iterator[RedisServer]:
    server = RedisServer(config=(*WRITER, *READER, *NO_CONFIG))
    server.start()
    yield server
    server.stop()


def test_a_wrong_password_exits_2_with_one_line(tmp_path: Path, server: RedisServer) -> None:
    result = run_scorer(tmp_path, server.url_for("worker", "wrong-pw"))
    assert result.returncode == 2, result.stderr
    line = fatal_line(result)
    assert "store.url: store rejects the credentials (auth)" in line
    assert "wrong-pw" not in result.stderr


def test_a_user_without_write_rights_exits_2(tmp_path: Path, server: RedisServer) -> None:
    result = run_scorer(tmp_path, server.url_for("reader", "reader-pw"))
    assert result.returncode == 2, result.stderr
    assert "store.url: store denies callsbot a command (noperm)" in fatal_line(result)


def test_rediss_against_a_plain_server_exits_2(tmp_path: Path, server: RedisServer) -> None:
    result = run_scorer(tmp_path, server.url.replace("redis://", "rediss://"))
    assert result.returncode == 2, result.stderr
    line = fatal_line(result)
    assert "store.url: store TLS mismatch (tls)" in line
    assert "answers in plain text" in line


def test_an_evicting_policy_exits_2(tmp_path: Path, server: RedisServer) -> None:
    server.command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    result = run_scorer(tmp_path, server.url)
    assert result.returncode == 2, result.stderr
    line = fatal_line(result)
    assert "store.allow_eviction: store may evict callsbot's keys (eviction): " in line
    assert "maxmemory-policy is allkeys-lru" in line


def store_settings(url: str, **store: object) -> Settings:
    return Settings(
        store=StoreSettings(
            url=url,
            connect_timeout=0.5,
            socket_timeout=0.5,
            retries=0,
            **store,  # type: ignore[arg-type]
        )
    )


async def run_in_process(url: str, **store: object) -> int:
    """``run --role scorer`` in this process, told to stop as soon as it started (no history:
    only the startup checks are of interest)."""
    dead = f"http://127.0.0.1:{free_port()}"
    settings = attrs.evolve(
        store_settings(url, **store),
        cielo=CieloSettings(api_key="test-key", url=dead),
        dexscreener=DexScreenerSettings(url=dead),
        web=WebSettings(enabled=False),
        history=HistorySettings(enabled=False),
    )
    stop = asyncio.Event()
    stop.set()
    return await app.run(
        settings, role="scorer", clock=SystemClock(), metrics=Metrics.create(), stop=stop
    )


async def test_volatile_policies_evict_our_keys_too(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.command("CONFIG", "SET", "maxmemory-policy", "volatile-ttl")
    assert await run_in_process(server.url) == 2
    assert "maxmemory-policy is volatile-ttl" in caplog.text


async def test_an_evicting_policy_runs_when_explicitly_allowed(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    assert await run_in_process(server.url, allow_eviction=True) == 0
    assert "maxmemory-policy is allkeys-lru: Redis may evict callsbot's keys" in caplog.text


async def test_a_user_without_config_rights_runs_and_says_so(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert await run_in_process(server.url_for("managed", "managed-pw")) == 0
    assert "maxmemory-policy not readable" in caplog.text
    assert "make sure it is noeviction" in caplog.text


async def test_an_outage_at_start_is_no_refusal(caplog: pytest.LogCaptureFixture) -> None:
    dead = RedisServer()  # never started: an outage, not a mistake
    assert await run_in_process(dead.url) == 0
    assert "store not usable at start" in caplog.text


@pytest.mark.parametrize(
    ("user", "scheme", "says"),
    [
        (("worker", "wrong-pw"), "redis", "store: REJECTED — store rejects the credentials (auth)"),
        (("reader", "reader-pw"), "redis", "store: REJECTED — store denies callsbot a command"),
        ((None, None), "rediss", "store: REJECTED — store TLS mismatch (tls)"),
    ],
)
async def test_check_names_each_mistake(
    server: RedisServer,
    capsys: pytest.CaptureFixture[str],
    user: tuple[str | None, str | None],
    scheme: str,
    says: str,
) -> None:
    url = server.url_for(*user).replace("redis://", f"{scheme}://")
    assert await check(store_settings(url)) == 1
    out = capsys.readouterr().out
    assert says in out
    assert "reachable" not in out


async def test_check_refuses_an_evicting_policy(
    server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    assert await check(store_settings(server.url)) == 1
    out = capsys.readouterr().out
    assert "store: reachable (redis://), writable" in out
    assert "eviction: REFUSED — store may evict callsbot's keys (eviction)" in out
