"""``python -m callsbot backtest RECORDING [--grid KEY=V1,V2 …] [--split 0.7] [--exit …]``.

Replays a recording under the deployed configuration and every grid combination, and prints one
row of figures per configuration (docs/backtest.md). Exit status: 0, or 2 for a recording, a
grid key, a value or an option that cannot be used.
"""

from __future__ import annotations

import argparse
import logging
import sys

from callsbot.config import Settings
from callsbot.errors import EXIT_CONFIG, ConfigError

#: Per-mention log lines of a replayed day are noise in a backtest's output.
_QUIET_LOGGERS = ("callsbot",)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``backtest``."""
    p = sub.add_parser(
        "backtest",
        help="replay a recording under other settings: one row of figures per configuration",
    )
    p.add_argument(
        "recording",
        metavar="RECORDING",
        help="a history export (JSONL), the demo's session file or a Telegram Desktop export",
    )
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="values to try (repeatable): window, tiers, mode, half-life, thresholds, threshold, "
        "cooldown, section.key or any [scoring] key",
    )
    p.add_argument(
        "--split",
        type=float,
        default=None,
        metavar="FRACTION",
        help="choose on the older FRACTION of the days, report on the newer ones (e.g. 0.7)",
    )
    p.add_argument(
        "--exit",
        default="tp=2,sl=0.5,hours=24,fee=0.01",
        metavar="RULE",
        help="exit rule: take profit, stop (multiples of the entry), hours, fee per side "
        "(default tp=2,sl=0.5,hours=24,fee=0.01)",
    )
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--plot", metavar="FILE.png", help="draw alerts/day against win rate")
    p.add_argument(
        "--candles",
        metavar="PATH",
        help="cached OHLCV bodies (a .jsonl/.json file or a directory) for the price paths",
    )
    p.add_argument("--group", help="Telegram export: the name to record mentions under")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: the CPUs)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Run the backtest and print it in the chosen format."""
    from callsbot.replay.backtest import evaluate, run_all
    from callsbot.replay.exits import ExitRule
    from callsbot.replay.grid import configurations
    from callsbot.replay.load import TapeError, load_tape
    from callsbot.replay.render import render_csv, render_json, render_table

    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        rule = ExitRule.parse(args.exit)
    except ValueError as exc:
        return _fail(f"--exit: {exc}")
    if args.split is not None and not 0.0 < args.split < 1.0:
        return _fail("--split must be between 0 and 1 (e.g. 0.7)")
    if args.jobs is not None and args.jobs < 1:
        return _fail("--jobs must be at least 1")
    try:
        configs = configurations(settings, args.grid)
    except ConfigError as exc:
        return _fail(f"--grid: {exc}")
    try:
        tape = load_tape(args.recording, candles=args.candles, group=args.group)
    except (TapeError, ValueError) as exc:
        return _fail(str(exc))
    runs, wall = run_all(tape, configs, rule, jobs=args.jobs)
    bt = evaluate(tape, runs, rule, split=args.split, seed=args.seed, wall_seconds=wall)
    render = {"table": render_table, "json": render_json, "csv": render_csv}[args.format]
    sys.stdout.write(render(bt).rstrip("\n") + "\n")
    if tape.rebuilt_texts:
        print(
            f"note: {tape.rebuilt_texts} recorded messages lacked the text or the entity that "
            "named their address; the address was added back to the text",
            file=sys.stderr,
        )
    if args.plot:
        from callsbot.replay.plot import write_plot

        write_plot(bt, args.plot)
    return 0


def _fail(problem: str) -> int:
    print(f"callsbot backtest: {problem}", file=sys.stderr)
    return EXIT_CONFIG
