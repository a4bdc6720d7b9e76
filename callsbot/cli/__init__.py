"""Command line: ``python -m callsbot <command>``, one module per sub-command.

Each command module has ``add_parser(sub)``, which declares its arguments, and
``main(args, settings) -> int``, which runs it and returns the exit status. This module only
loads the settings (a config error exits 2 naming the key), sets up logging and dispatches.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from urllib.parse import unquote, urlsplit

from callsbot.cli import (
    backfill,
    backtest,
    check,
    db,
    demo,
    feed,
    groups,
    history,
    login,
    outcome,
    report,
    run,
    token,
)
from callsbot.config import Settings, load_settings
from callsbot.errors import EXIT_CONFIG, ConfigError
from callsbot.logs import setup_logging

DEFAULT_CONFIG = "config.toml"

#: Sub-command name → its module.
COMMANDS: dict[str, ModuleType] = {
    "run": run,
    "check": check,
    "login": login,
    "token": token,
    "feed": feed,
    "backfill": backfill,
    "groups": groups,
    "demo": demo,
    "db": db,
    "history": history,
    "outcome": outcome,
    "report": report,
    "backtest": backtest,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callsbot", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        default=os.environ.get("CALLSBOT_CONFIG"),
        help="TOML settings file (default: $CALLSBOT_CONFIG, else ./config.toml if present)",
    )
    parser.add_argument("--log-format", choices=("text", "json"), help="overrides [log] format")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def _load(args: argparse.Namespace) -> Settings:
    path = args.config
    if path is None and os.path.exists(DEFAULT_CONFIG):
        path = DEFAULT_CONFIG
    env_file = os.environ.get("CALLSBOT_ENV_FILE", ".env")
    return load_settings(path, env_file=env_file)


def _secrets(settings: Settings) -> list[str]:
    values = [settings.telegram.api_hash, settings.cielo.api_key, settings.tg_bot.token]
    values.append(settings.history.password)
    values.append(settings.web.token)
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
    code: int = COMMANDS[args.command].main(args, settings)
    return code
