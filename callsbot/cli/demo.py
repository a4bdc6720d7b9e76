"""``python -m callsbot demo``: replay the bundled recorded session (no network, no keys)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import sys
from typing import TYPE_CHECKING

from callsbot.config import Settings
from callsbot.runtime.service import install_stop_signals

if TYPE_CHECKING:
    from callsbot.demo import Serve

#: Bad command-line usage (argparse's own status).
EXIT_USAGE = 2


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``demo``."""
    p = sub.add_parser("demo", help="replay the bundled recorded session (no network)")
    p.add_argument("--quiet", action="store_true", help="only the summary")
    p.add_argument("--verbose", action="store_true", help="also every log line")
    p.add_argument(
        "--serve",
        action="store_true",
        help="serve the dashboard (/dash) while the session plays at a watchable speed",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="with --serve: simulated seconds per real second (default 60: the hour in a minute)",
    )
    p.add_argument(
        "--port", type=int, help="with --serve: the port (default: [web] port; 0: any free one)"
    )


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Play the session and print the alerts and a summary (and serve the dashboard)."""
    from callsbot.demo import Serve

    if not args.verbose:
        logging.getLogger().setLevel(logging.WARNING)
    if args.speed <= 0:
        print("callsbot: --speed must be > 0", file=sys.stderr)
        return EXIT_USAGE
    serve = None
    if args.serve:
        port = settings.web.port if args.port is None else args.port
        serve = Serve(port=port, speed=args.speed)
    return asyncio.run(_main(settings, args.quiet, serve))


async def _main(settings: Settings, quiet: bool, serve: Serve | None) -> int:
    from callsbot.demo import demo_command

    stop = asyncio.Event()
    if serve is not None:
        install_stop_signals(stop)
    try:
        return await demo_command(settings, out=sys.stdout, quiet=quiet, serve=serve, stop=stop)
    except OSError as exc:
        if serve is None or exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        where = f"{settings.web.host}:{serve.port}"
        print(
            f"callsbot: cannot serve the dashboard on {where}: {os.strerror(exc.errno)} "
            "(choose another --port, or --port 0 for any free one)",
            file=sys.stderr,
        )
        return EXIT_USAGE
