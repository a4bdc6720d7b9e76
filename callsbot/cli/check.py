"""``python -m callsbot check``: config valid, store usable, window whole, heartbeats fresh.

Exit 0 when everything holds, 1 otherwise. The store is looked at as ``run``'s startup checks
and the readiness probe do (:func:`callsbot.runtime.probes.inspect_store`): a write through a
script, the clock against Redis ``TIME``, the eviction policy, then the window's generation
marker and the heartbeats.
"""

from __future__ import annotations

import argparse
import asyncio

from callsbot.bridge import process_origin
from callsbot.clock import Clock, SystemClock
from callsbot.config import Settings
from callsbot.errors import REJECTIONS, StoreError, StoreFault
from callsbot.runtime.probes import evicts, inspect_store
from callsbot.store import open_store


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``check``."""
    sub.add_parser("check", help="config valid, store usable, window whole, heartbeats fresh")


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Print what holds and what does not; 0 when everything does."""
    return asyncio.run(check(settings))


async def check(settings: Settings, *, clock: Clock | None = None) -> int:
    """The check itself (printing to stdout); ``clock`` is this host's (tests skew it)."""
    ok = True
    s = settings.store
    print("config: ok")
    async with open_store(s, clock=clock if clock is not None else SystemClock()) as store:
        scheme = s.url.split("://", 1)[0]
        found = await inspect_store(
            store, name=process_origin("check"), within=s.connect_timeout + 2 * s.socket_timeout
        )
        reason = found.fault_reason()
        if found.fault in (StoreFault.TIMEOUT, StoreFault.CONNECTION):
            print(f"store: UNREACHABLE — {reason}")
            return 1
        if found.fault in REJECTIONS:
            print(f"store: REJECTED — {reason}")
            return 1
        if reason is not None:
            print(f"store: reachable ({scheme}://) but NOT WRITABLE — {reason}")
            ok = False
        else:
            print(f"store: reachable ({scheme}://), writable")
        if found.skew is not None:
            skew = found.skew_reason(s)
            if skew is not None:
                print(f"clock: SKEWED — {skew}")
                ok = False
            else:
                print(
                    f"clock: {found.skew:+.1f}s from the store's "
                    f"(limit {s.max_clock_skew_seconds:.0f}s)"
                )
        eviction = found.eviction_reason(s)
        if eviction is not None:
            print(f"eviction: REFUSED — {eviction}")
            ok = False
        elif found.policy_note is not None:
            print(f"eviction: unknown — {found.policy_note}; make sure it is noeviction")
        elif found.policy is not None:
            allowed = " (store.allow_eviction = true)" if evicts(found.policy) else ""
            print(f"eviction: maxmemory-policy {found.policy}{allowed}")
        try:
            state = await store.window_state()
            problem = state.problem()
            if problem is None:
                print(f"window: whole (generation {state.generation})")
            else:
                print(f"window: NOT WHOLE — {problem}")
                ok = False
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
        except StoreError as exc:
            print(f"store: FAILED — {exc}")
            return 1
    return 0 if ok else 1
