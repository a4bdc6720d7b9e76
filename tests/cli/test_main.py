"""The CLI as a user runs it: a real subprocess, real signals, a real redis-server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from callsbot.testing.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)} | extra


def test_check_reports_store_and_missing_heartbeats(tmp_path: Path, redis_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "callsbot", "check"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env=_env(tmp_path, CALLSBOT_STORE_URL=redis_url),
    )
    assert result.returncode == 1
    assert "store: reachable (redis://)" in result.stdout
    assert "heartbeat aggregator: none" in result.stdout


def test_check_with_dead_store_exits_1(tmp_path: Path) -> None:
    dead = RedisServer()  # never started: nothing listens on its port
    result = subprocess.run(
        [sys.executable, "-m", "callsbot", "check"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env=_env(tmp_path, CALLSBOT_STORE_URL=dead.url),
    )
    assert result.returncode == 1
    assert "store: UNREACHABLE" in result.stdout


def test_run_without_credentials_lists_them_and_points_at_the_demo(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "callsbot", "run"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env=_env(tmp_path),
    )
    assert result.returncode == 2
    for name in (
        "CALLSBOT_TELEGRAM_API_ID",
        "CALLSBOT_TELEGRAM_API_HASH",
        "CALLSBOT_CIELO_API_KEY",
    ):
        assert name in result.stderr
    assert "make demo" in result.stderr


def test_scorer_role_needs_only_the_cielo_key(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "callsbot", "run", "--role", "scorer"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env=_env(tmp_path),
    )
    assert result.returncode == 2
    assert "CALLSBOT_CIELO_API_KEY" in result.stderr
    assert "TELEGRAM" not in result.stderr


def test_demo_serve_on_a_port_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "callsbot", "demo", "--serve", "--port", str(port)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
            env=_env(tmp_path),
        )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"cannot serve the dashboard on 127.0.0.1:{port}: Address already in use" in (
        result.stderr
    )
