"""Command line: ``python -m callsbot <command>``."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import sys
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

from callsbot import app
from callsbot.clock import SystemClock
from callsbot.config import ConfigError, Settings, load_settings, missing_for_role
from callsbot.logs import setup_logging
from callsbot.metrics import Metrics
from callsbot.store import StoreError, open_store

EXIT_CONFIG = 2
DEFAULT_CONFIG = "config.toml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callsbot", description=__doc__)
    parser.add_argument(
        "--config",
        default=os.environ.get("CALLSBOT_CONFIG"),
        help="TOML settings file (default: $CALLSBOT_CONFIG, else ./config.toml if present)",
    )
    parser.add_argument("--log-format", choices=("text", "json"), help="overrides [log] format")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the roles until SIGINT/SIGTERM")
    run.add_argument("--role", choices=app.ROLES, default="all")

    sub.add_parser("check", help="config valid, store reachable, heartbeats fresh")
    sub.add_parser("login", help="create the Telegram session interactively (mode 0600)")

    token = sub.add_parser("token", help="why a token counts or not: verdict, reason, snapshot")
    token.add_argument("addresses", nargs="+", metavar="ADDRESS")
    token.add_argument("--chain", default="solana", help="solana (default), ethereum, base, bsc")

    feed = sub.add_parser("feed", help="poll the Cielo feed and print the buys kept")
    feed.add_argument("--once", action="store_true", required=True, help="poll once and exit")

    backfill = sub.add_parser("backfill", help="feed a Telegram Desktop export (result.json)")
    backfill.add_argument("--export", required=True, help="path to result.json")
    backfill.add_argument("--group", help="record mentions under this name (e.g. @channel)")
    backfill.add_argument("--since", type=_iso_date, help="skip messages before this ISO time")
    backfill.add_argument("--no-validate", action="store_true", help="skip the market gate")
    backfill.add_argument("--dry-run", action="store_true", help="record nothing; print JSON")

    demo = sub.add_parser("demo", help="replay the bundled recorded session (no network)")
    demo.add_argument("--quiet", action="store_true", help="only the summary")
    demo.add_argument("--verbose", action="store_true", help="also every log line")

    return parser


def _iso_date(value: str) -> int:
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date/time: {value!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp())


def _load(args: argparse.Namespace) -> Settings:
    path = args.config
    if path is None and os.path.exists(DEFAULT_CONFIG):
        path = DEFAULT_CONFIG
    env_file = os.environ.get("CALLSBOT_ENV_FILE", ".env")
    return load_settings(path, env_file=env_file)


def _secrets(settings: Settings) -> list[str]:
    values = [settings.telegram.api_hash, settings.cielo.api_key, settings.tg_bot.token]
    if settings.telegram.api_id is not None:
        values.append(str(settings.telegram.api_id))
    password = urlsplit(settings.store.url).password
    if password:
        values += [password, unquote(password)]
    return [v for v in values if v]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``callsbot`` console script and ``python -m callsbot``."""
    args = _parser().parse_args(argv)
    try:
        settings = _load(args)
    except ConfigError as exc:
        print(f"callsbot: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(
        level=settings.log.level,
        fmt=args.log_format or settings.log.format,
        secrets=_secrets(settings),
    )
    os.umask(0o077)  # session, alerts and lock files: private to this user
    if args.command == "run":
        problems: list[str] = []
        missing = missing_for_role(settings, args.role)
        if missing:
            problems.append(f"missing {', '.join(missing)} (environment or .env; see .env.example)")
        if args.role in ("all", "aggregator") and not (
            settings.telegram.groups or settings.telegram.replay
        ):
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
        return asyncio.run(_run(settings, args.role))
    if args.command == "check":
        return asyncio.run(_check(settings))
    if args.command == "login":
        return asyncio.run(_login(settings))
    if args.command == "token":
        from callsbot.market.token_cmd import token_command

        return asyncio.run(token_command(settings, args.addresses, sys.stdout, chain=args.chain))
    if args.command == "feed":
        from callsbot.feed_cmd import feed_command

        return asyncio.run(
            feed_command(
                settings, sys.stdout, sys.stderr, clock=SystemClock(), metrics=Metrics.create()
            )
        )
    if args.command == "backfill":
        from callsbot.backfill import backfill_command

        return asyncio.run(
            backfill_command(
                settings,
                export=args.export,
                group=args.group,
                since=args.since,
                validate=not args.no_validate,
                dry_run=args.dry_run,
                out=sys.stdout,
                err=sys.stderr,
                clock=SystemClock(),
                metrics=Metrics.create(),
            )
        )
    if args.command == "demo":
        from callsbot.demo import demo_command

        if not args.verbose:
            logging.getLogger().setLevel(logging.WARNING)
        return asyncio.run(demo_command(settings, out=sys.stdout, quiet=args.quiet))
    raise AssertionError(args.command)  # argparse rejects unknown commands


async def _login(settings: Settings) -> int:
    from callsbot.sources.telegram import SessionError
    from callsbot.sources.telethon_client import login

    try:
        await login(settings)
    except SessionError as exc:
        print(f"callsbot: {exc}", file=sys.stderr)
        return 1
    return 0


async def _run(settings: Settings, role: str) -> int:
    stop = asyncio.Event()
    app.install_stop_signals(stop)
    return await app.run(
        settings, role=role, clock=SystemClock(), metrics=Metrics.create(), stop=stop
    )


async def _check(settings: Settings) -> int:
    ok = True
    print("config: ok")
    async with open_store(settings.store, clock=SystemClock()) as store:
        try:
            await store.ping()
            print(f"store: reachable ({settings.store.url.split('://', 1)[0]}://)")
        except StoreError as exc:
            print(f"store: UNREACHABLE — {exc}")
            return 1
        limit = settings.consensus.heartbeat_stale_seconds
        for role in ("aggregator", "scorer"):
            age = await store.heartbeat_age(role)
            if age is None:
                print(f"heartbeat {role}: none")
                ok = False
            elif age > limit:
                print(f"heartbeat {role}: STALE ({age:.0f}s > {limit:.0f}s)")
                ok = False
            else:
                print(f"heartbeat {role}: fresh ({age:.0f}s ago)")
    return 0 if ok else 1
