"""``python -m callsbot groups``: per-group reputation, independence and copy relations.

    python -m callsbot groups --mentions mentions.jsonl [--labels labels.jsonl]
                              [--since 30d|ISO] [--at ISO] [--format table|json]

Until the history store lands, the mention log and the labels are JSONL files
(:mod:`callsbot.sources.mention_log` documents the format; ``backfill --dry-run`` writes a valid
mention file). The report itself only sees the
:class:`~callsbot.reputation.inputs.MentionLog` and :class:`~callsbot.reputation.inputs.Labels`
interfaces.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import sys
from typing import TextIO

from callsbot.config import Settings
from callsbot.errors import Unavailable
from callsbot.reputation.inputs import Labels, MemoryLabels, MentionLog
from callsbot.reputation.report import groups_report, render_table, report_json
from callsbot.sources.mention_log import JsonlLabels, JsonlMentionLog, MentionFileError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhm])\s*$")
_UNIT = {"d": 86400.0, "h": 3600.0, "m": 60.0}
#: The period when ``--since`` is not given: the copy test's 30 days.
DEFAULT_DAYS = 30


async def groups_command(
    settings: Settings,
    *,
    mentions: MentionLog,
    labels: Labels,
    since: float,
    at: float,
    fmt: str,
    out: TextIO,
) -> int:
    """Print the report of ``since <= ts < at`` on ``out`` as a table or JSON.

    Returns:
        0, or 1 when a source was unavailable.
    """
    try:
        firsts = await mentions.first_mentions(since, at)
        known = await labels.labels(since, at)
    except Unavailable as exc:
        print(f"callsbot groups: {exc}", file=sys.stderr)
        return 1
    report = groups_report(firsts, known, since=since, at=at, settings=settings.consensus)
    if fmt == "json":
        out.write(json.dumps(report_json(report), ensure_ascii=False, indent=2) + "\n")
    else:
        out.write(render_table(report) + "\n")
    return 0


def parse_since(value: str, *, at: float) -> float:
    """``30d``, ``12h``, ``90m`` (before ``at``) or an ISO date/time (UTC unless it says).

    Raises:
        argparse.ArgumentTypeError: neither.
    """
    m = _DURATION.match(value)
    if m:
        return at - float(m.group(1)) * _UNIT[m.group(2)]
    return _iso(value)


def _iso(value: str) -> float:
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration (30d, 12h, 90m) or an ISO date/time: {value!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``groups``."""
    p = sub.add_parser(
        "groups", help="per group: calls, hit rate, weight, who it follows and copies"
    )
    p.add_argument(
        "--mentions",
        metavar="FILE",
        help="JSONL mention log (docs/consensus.md; backfill --dry-run writes one); "
        "default: the history database ([history] url)",
    )
    p.add_argument("--labels", metavar="FILE", help="JSONL hit labels (none: no outcomes yet)")
    p.add_argument(
        "--since",
        help=f"start of the period: 30d, 12h, 90m or an ISO time (default {DEFAULT_DAYS}d)",
    )
    p.add_argument(
        "--at",
        help="end of the period, ISO time (default: just after the newest mention in the file)",
    )
    p.add_argument("--format", choices=("table", "json"), default="table")


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Read the history (or the files), print the report; 2 on a bad argument, 1 when unreadable."""
    if args.mentions is None:
        return asyncio.run(_from_history(args, settings))
    try:
        log = JsonlMentionLog.load(args.mentions)
        labels: Labels = JsonlLabels.load(args.labels) if args.labels else MemoryLabels()
    except MentionFileError as exc:
        print(f"callsbot groups: {exc}", file=sys.stderr)
        return 1
    try:
        if args.at is not None:
            at = _iso(args.at)
        else:
            latest = log.latest
            at = (latest if latest is not None else dt.datetime.now(dt.UTC).timestamp()) + 1
        since = parse_since(args.since or f"{DEFAULT_DAYS}d", at=at)
    except argparse.ArgumentTypeError as exc:
        print(f"callsbot groups: {exc}", file=sys.stderr)
        return 2
    if since >= at:
        print("callsbot groups: --since is not before --at", file=sys.stderr)
        return 2
    return asyncio.run(
        groups_command(
            settings,
            mentions=log,
            labels=labels,
            since=since,
            at=at,
            fmt=args.format,
            out=sys.stdout,
        )
    )


async def _from_history(args: argparse.Namespace, settings: Settings) -> int:
    """The report over the history database: the mentions it holds, the labels it has."""
    from callsbot.errors import ConfigError, HistoryUnavailable
    from callsbot.history.mention_log import HistoryMentionLog
    from callsbot.history.sql import open_history

    history = open_history(settings.history)
    try:
        try:
            at = _iso(args.at) if args.at is not None else dt.datetime.now(dt.UTC).timestamp()
            since = parse_since(args.since or f"{DEFAULT_DAYS}d", at=at)
        except argparse.ArgumentTypeError as exc:
            print(f"callsbot groups: {exc}", file=sys.stderr)
            return 2
        labels: Labels = JsonlLabels.load(args.labels) if args.labels else MemoryLabels()
        return await groups_command(
            settings,
            mentions=HistoryMentionLog(history),
            labels=labels,
            since=since,
            at=at,
            fmt=args.format,
            out=sys.stdout,
        )
    except (HistoryUnavailable, ConfigError, MentionFileError) as exc:
        print(f"callsbot groups: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    finally:
        await history.aclose()
