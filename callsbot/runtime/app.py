"""Process assembly: open the shared parts, build the chosen roles, supervise every service.

``run --role all`` runs the aggregator, the scorer and the web server over one store;
``--role aggregator`` / ``--role scorer`` run one role each (pointed at the same ``redis://``
store). The code path is the same either way: the scorer learns about mentions only through
the store.

Every service is supervised: a crash is logged, counted and the service restarted with
backoff, while its siblings keep running. A :class:`~callsbot.errors.FatalError` (bad
configuration, a rejected credential, an unusable session) ends the process with its exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from callsbot.bridge import process_origin
from callsbot.clock import Clock
from callsbot.config import Settings
from callsbot.errors import FatalError
from callsbot.metrics import Metrics
from callsbot.runtime import roles
from callsbot.runtime.probes import check_at_start
from callsbot.runtime.service import Service, run_service

log = logging.getLogger("callsbot")


async def run(
    settings: Settings,
    *,
    role: str,
    clock: Clock,
    metrics: Metrics,
    stop: asyncio.Event,
    grace_seconds: float = 10.0,
    replay: Path | None = None,
) -> int:
    """Run ``role`` (or every role) until ``stop`` is set; return the exit status."""
    names = ["aggregator", "scorer"] if role == "all" else [role]
    try:
        async with contextlib.AsyncExitStack() as stack:
            parts = await stack.enter_async_context(
                roles.open_parts(settings, clock=clock, metrics=metrics)
            )
            # Credentials, rights, TLS and the eviction policy: a mistake here ends the start
            # (exit 2) instead of running on "degraded" for ever; an outage only warns.
            origin = process_origin(role)
            await check_at_start(parts.store, settings.store, name=origin)
            log.info("callsbot starting: roles=%s store=%s", ",".join(names), safe_url(settings))
            # One history store per process, closed after everything that uses it.
            history = await stack.enter_async_context(roles.open_history_store(settings))
            roles.use_history_for_reputation(parts, history)
            services: list[Service] = [parts.events, roles.build_store_probe(parts, name=origin)]
            for name in names:
                services += await stack.enter_async_context(
                    roles.role_services(parts, name, stop=stop, replay=replay, history=history)
                )
            if role != "all":
                services += roles.build_bridge(parts, role)
            recorder = roles.build_recorder(parts, history)
            if recorder is not None:
                services.append(recorder)
            if "aggregator" in names:
                keeper = roles.build_keeper(parts, recorder)
                # The first check (a rebuild from the history) before anything reads the
                # window: a one-process start fills its new memory store before the scorer
                # and the dashboard look, instead of showing them an empty window.
                await keeper.check()
                services.append(keeper)
            tracker = None
            if role in ("all", "scorer"):
                tracker = await stack.enter_async_context(
                    roles.open_tracker(parts, history=history)
                )
                if tracker is not None:
                    services.append(tracker)
            if settings.web.enabled:
                sources = (
                    roles.outcome_sources(tracker, settings, clock=clock)
                    if tracker is not None and settings.web.dashboard
                    else None
                )
                served = roles.build_served(
                    parts,
                    list(services),
                    dashboard=settings.web.dashboard,
                    sources=sources,
                    # Its thread ends before the process's grace is over.
                    grace_seconds=max(grace_seconds - 2.0, grace_seconds / 2),
                )
                services.append(served.host)
            await _supervise_all(services, parts, stop, grace_seconds)
    except FatalError as exc:
        log.error("fatal: %s", _describe(exc))
        return exc.exit_code
    log.info("callsbot stopped")
    return 0


async def _supervise_all(
    services: list[Service], parts: roles.Parts, stop: asyncio.Event, grace_seconds: float
) -> None:
    # Stopping is staged: the producers first, then the hub (it delivers what they published
    # while stopping), then the services that drain events to somewhere durable (history,
    # stream), so that nothing published before the stop is left behind in a queue.
    hub_stop, drain_stop = asyncio.Event(), asyncio.Event()
    drainers = [s for s in services if getattr(s, "drains_events", False)]
    workers = [s for s in services if s is not parts.events and s not in drainers]
    hub = asyncio.create_task(
        run_service(parts.events, hub_stop, clock=parts.clock, metrics=parts.metrics),
        name="events",
    )
    draining = [
        asyncio.create_task(
            run_service(s, drain_stop, clock=parts.clock, metrics=parts.metrics), name=s.name
        )
        for s in drainers
    ]
    tasks = [
        asyncio.create_task(
            run_service(s, stop, clock=parts.clock, metrics=parts.metrics), name=s.name
        )
        for s in workers
    ]
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait([*tasks, *draining, stopper], return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not stop.is_set():
        stop.set()  # a service ended on its own (fatal error): stop the others cleanly too
    log.info("stopping (grace %.0fs)", grace_seconds)
    await _stop_within(tasks, grace_seconds)
    hub_stop.set()
    await _stop_within([hub], grace_seconds)
    drain_stop.set()
    await _stop_within(draining, grace_seconds)
    tasks += draining
    errors = [t.exception() for t in tasks if not t.cancelled() and t.exception() is not None]
    for error in errors:
        if isinstance(error, FatalError):
            raise error
    for error in errors:
        raise FatalError(f"unexpected error: {error!r}") from error


async def _stop_within(tasks: list[asyncio.Task[None]], grace_seconds: float) -> None:
    """Wait for ``tasks`` to end; cancel those still running after the grace period."""
    if not tasks:
        return
    _, late = await asyncio.wait(tasks, timeout=grace_seconds)
    for task in late:
        log.error(
            "%s still running after the %.0fs grace; cancelled", task.get_name(), grace_seconds
        )
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _describe(exc: FatalError) -> str:
    notes = getattr(exc, "__notes__", ())
    return f"{exc} ({'; '.join(notes)})" if notes else str(exc)


def safe_url(settings: Settings) -> str:
    """The store URL without a password."""
    url = settings.store.url
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
