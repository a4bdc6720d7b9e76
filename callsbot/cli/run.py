"""``python -m callsbot run [--role all|aggregator|scorer] [--replay FILE]``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from callsbot.clock import SystemClock
from callsbot.config import Settings, missing_for_role
from callsbot.errors import EXIT_CONFIG
from callsbot.metrics import Metrics
from callsbot.runtime import app
from callsbot.runtime.roles import ROLES
from callsbot.runtime.service import install_stop_signals


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``run``."""
    p = sub.add_parser("run", help="run the roles until SIGINT/SIGTERM")
    p.add_argument("--role", choices=ROLES, default="all")
    p.add_argument(
        "--replay",
        type=Path,
        metavar="FILE",
        help="play a recorded Telegram session instead of connecting (tests, demos)",
    )


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Check the credentials the role needs, then run it until a stop signal."""
    problems: list[str] = []
    missing = missing_for_role(settings, args.role, replay=args.replay is not None)
    if missing:
        problems.append(f"missing {', '.join(missing)} (environment or .env; see .env.example)")
    if args.role in ("all", "aggregator") and not (settings.telegram.groups or args.replay):
        problems.append(
            "telegram.groups is empty: list your call groups (@username or -100… id) in "
            "config.toml or CALLSBOT_TELEGRAM_GROUPS"
        )
    if problems:
        print(
            f"callsbot: config error: {'; '.join(problems)}. "
            "To see callsbot work without credentials: make demo",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    return asyncio.run(_run(settings, args.role, args.replay))


async def _run(settings: Settings, role: str, replay: Path | None) -> int:
    stop = asyncio.Event()
    install_stop_signals(stop)
    return await app.run(
        settings,
        role=role,
        clock=SystemClock(),
        metrics=Metrics.create(),
        stop=stop,
        replay=replay,
    )
