"""``python -m callsbot token ADDRESS...``: the market gate's verdict per token, as JSON lines."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import attrs

from callsbot.clock import Clock, SystemClock
from callsbot.config import Settings
from callsbot.errors import MarketUnavailable
from callsbot.market.gate import open_market
from callsbot.metrics import Metrics
from callsbot.models import Reason, Status, Verdict
from callsbot.net.retry import Sleep


def verdict_line(address: str, chain: str, verdict: Verdict, *, token: str | None = None) -> str:
    """One JSON line: address, chain, verdict, reason, detail, snapshot (and token if resolved)."""
    record: dict[str, Any] = {
        "address": address,
        "chain": chain,
        "verdict": verdict.status.value,
        "reason": verdict.reason.value,
        "detail": verdict.detail,
        "snapshot": attrs.asdict(verdict.snapshot) if verdict.snapshot is not None else None,
    }
    if token is not None and token != address:
        record["token"] = token
    return json.dumps(record, sort_keys=False)


async def token_command(
    settings: Settings,
    addresses: Sequence[str],
    out: TextIO,
    *,
    chain: str = "solana",
    clock: Clock | None = None,
    metrics: Metrics | None = None,
    sleep: Sleep = asyncio.sleep,
) -> int:
    """Print the market verdict of each address as one JSON line on ``out``.

    An address with no pairs is also tried as a pair address: when it names a pair, the line
    judges that pair's base token and adds ``"token"``.

    Args:
        settings: loaded settings (``[dexscreener]`` and ``[market]`` are used).
        addresses: token (or pair) addresses, printed in this order.
        out: where the JSON lines go.
        chain: DexScreener chain id to ask about.
        clock: defaults to the system clock.
        metrics: defaults to a fresh registry.
        sleep: how retries wait (tests pass a fake).

    Returns:
        0 when every address got a definite verdict (valid or invalid), 1 when at least one is
        unknown right now (rate limited, DexScreener down...), 2 when no address was given.
    """
    wanted = [a.strip() for a in addresses if a.strip()]
    if not wanted:
        return 2
    client, validator = await open_market(
        settings,
        clock=clock if clock is not None else SystemClock(),
        metrics=metrics if metrics is not None else Metrics.create(),
        sleep=sleep,
    )
    status = 0
    try:
        verdicts = await validator.verdicts(wanted, chain=chain)
        as_pairs = [a for a in dict.fromkeys(wanted) if verdicts[a].reason is Reason.NO_PAIRS]
        bases: dict[str, str | None] = {}
        if as_pairs:
            try:
                bases = dict(await validator.resolve_pairs(as_pairs, chain=chain))
            except MarketUnavailable:
                bases = {}  # the "no pairs" verdict stands
        resolved = [b for b in bases.values() if b is not None]
        base_verdicts = await validator.verdicts(resolved, chain=chain) if resolved else {}
        for address in wanted:
            verdict = verdicts[address]
            token: str | None = None
            base = bases.get(address)
            if base is not None:
                token, verdict = base, base_verdicts[base]
            if verdict.status is Status.UNKNOWN:
                status = 1
            out.write(verdict_line(address, chain, verdict, token=token) + "\n")
        out.flush()
    finally:
        await validator.aclose()
        await client.aclose()
    return status


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``token``."""
    p = sub.add_parser("token", help="why a token counts or not: verdict, reason, snapshot")
    p.add_argument("addresses", nargs="+", metavar="ADDRESS")
    p.add_argument("--chain", default="solana", help="solana (default), ethereum, base, bsc")


def main(args: argparse.Namespace, settings: Settings) -> int:
    """One JSON line per address on stdout."""
    return asyncio.run(token_command(settings, args.addresses, sys.stdout, chain=args.chain))
