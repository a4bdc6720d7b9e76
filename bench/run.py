"""``make bench``: start a throw-away redis-server, run every case, print and save the table.

    python -m bench.run [--e2e-seconds 8] [--e2e-runs 3] [--cases 1,2,5]
                        [--output bench/results.json]

``BENCH_E2E_SECONDS`` sets the duration of each end-to-end run too (the flag wins). The exit
code is 0 when every case ran, whether or not its target was met (the table says PASS/FAIL);
non-zero only when something crashed. docs/performance.md explains each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis

from bench import buy_alert, cases, dashboard, deciding_call, recorder_overhead
from bench.backtest import case_backtest
from bench.history import case_history
from bench.report import Row, machine, table, write_json
from bench.tracker import case_tracker
from callsbot.testing.pg_server import PostgresServer
from callsbot.testing.redis_server import RedisServer

CaseFn = Callable[[cases.Config], Awaitable[list[Row]] | list[Row]]

CASES: dict[str, tuple[str, CaseFn]] = {
    "1": ("extraction", cases.case_extraction),
    "2": ("redis writes", cases.case_redis_writes),
    "3": ("redis reads", cases.case_redis_reads),
    "4": ("memory store", cases.case_memory_store),
    "5": ("end to end", cases.case_end_to_end),
    "6": ("market requests", cases.case_market_requests),
    "7": ("memory", cases.case_memory),
    "8": ("buy → alert", lambda cfg: buy_alert.case_buy_to_alert(seed=cfg.seed)),
    "9": ("history", lambda cfg: case_history(cfg.pg_url)),
    "10": ("dashboard", dashboard.case_dashboard),
    "13": ("deciding call → alert", lambda cfg: deciding_call.case_deciding_call(cfg.redis_url)),
    "16": ("history recorder overhead", recorder_overhead.case_recorder_overhead),
    "14": ("weighted consensus scoring", cases.case_weighted_scoring),
    "15": ("reputation job", cases.case_reputation_job),
    "17": ("worst message at Telegram's limits", cases.case_limits),
    "11": ("outcome tracker", case_tracker),
    "12": ("backtest", case_backtest),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--e2e-seconds",
        type=float,
        default=float(os.environ.get("BENCH_E2E_SECONDS", "8")),
        help="duration of each end-to-end run at the offered load (default 8, or "
        "$BENCH_E2E_SECONDS)",
    )
    parser.add_argument(
        "--dash-seconds",
        type=float,
        default=float(os.environ.get("BENCH_DASH_SECONDS", "20")),
        help="duration of each dashboard run (case 10; default 20, or $BENCH_DASH_SECONDS)",
    )
    parser.add_argument(
        "--dash-rounds",
        type=int,
        default=int(os.environ.get("BENCH_DASH_ROUNDS", "4")),
        help="dashboard rounds, each a run without and a run with the clients (case 10; "
        "default 4, or $BENCH_DASH_ROUNDS)",
    )
    parser.add_argument(
        "--e2e-runs",
        type=int,
        default=3,
        help="end-to-end runs per backend; the median is reported (default 3)",
    )
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case numbers")
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).with_name("results.json"), help="JSON file"
    )
    args = parser.parse_args(argv)
    if args.e2e_seconds <= 0:
        parser.error("--e2e-seconds must be > 0")
    if args.e2e_runs < 1:
        parser.error("--e2e-runs must be >= 1")
    unknown = [c for c in args.cases.split(",") if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; known: {', '.join(CASES)}")
    return args


async def redis_version(url: str) -> str | None:
    client: aioredis.Redis = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        return str((await client.info("server"))["redis_version"])
    finally:
        await client.aclose()


async def run_cases(cfg: cases.Config, wanted: list[str]) -> list[Row]:
    rows: list[Row] = []
    for number in wanted:
        name, fn = CASES[number]
        print(f"[bench] case {number}: {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        result = fn(cfg)
        rows += await result if isinstance(result, Awaitable) else result
        print(
            f"[bench] case {number}: done in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    wanted = args.cases.split(",")
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="callsbot-bench-redis-") as workdir:
        server = RedisServer(workdir=Path(workdir))
        try:
            server.start()
        except (RuntimeError, OSError) as exc:
            print(f"bench: cannot start redis-server: {exc}", file=sys.stderr)
            return 2
        pg: PostgresServer | None = None
        if "8" in wanted:
            pg = PostgresServer()
            try:
                pg.start()
            except (RuntimeError, OSError) as exc:
                print(f"bench: cannot start postgres: {exc}", file=sys.stderr)
                server.stop()
                return 2
        try:
            cfg = cases.Config(
                redis_url=server.url,
                pg_url=pg.url() if pg else None,
                e2e_seconds=args.e2e_seconds,
                e2e_runs=args.e2e_runs,
                dash_seconds=args.dash_seconds,
                dash_rounds=args.dash_rounds,
            )
            version = asyncio.run(redis_version(server.url))
            rows = asyncio.run(run_cases(cfg, wanted))
        except Exception:
            traceback.print_exc()
            return 1
        finally:
            server.stop()
            if pg is not None:
                pg.destroy()
    duration = time.perf_counter() - started
    info = machine(version)
    print()
    print(table(rows))
    print()
    print(
        f"nproc={info['nproc']}  cpu={info['cpu']}  python={info['python']}  "
        f"redis-server={info['redis_server']}  total {duration:.0f} s"
    )
    for row in rows:
        if row.note:
            print(f"  [{row.case}] {row.figure}: {row.note}")
    failed = [r for r in rows if r.passed is False]
    print(f"{len(failed)} of {sum(1 for r in rows if r.target)} targets missed")
    write_json(
        args.output,
        {
            "started_at": started_at.isoformat(timespec="seconds"),
            "duration_seconds": round(duration, 1),
            "machine": info,
            "params": {
                "e2e_seconds": args.e2e_seconds,
                "e2e_runs": args.e2e_runs,
                "cases": wanted,
            },
            "rows": [r.as_json() for r in rows],
            "table": table(rows),
        },
    )
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
