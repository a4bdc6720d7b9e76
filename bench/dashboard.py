"""Case 10: the dashboard's event stream under load, beside the pipeline.

16 event-stream clients (a separate process, as browsers are) read ``/api/dash/events`` while the
pipeline records about 200 mentions a second for ``cfg.dash_seconds``. Two figures:

- event to client p99: a mention recorded (the event's ``at``) to its frame read by a client;
  target ≤ 100 ms.
- the pipeline's p99 submit → recorded with the dashboard and its 16 clients beside it,
  against the same pipeline without them (the hub and its standard subscribers run in both);
  target ≤ 10 % worse.

Subject and baseline alternate ``cfg.dash_rounds`` times; the table shows the p99 of all the
samples of each side's runs, and the note every run's p99 and CPU, so the spread is visible.
The subject serves the browsers as ``run`` does: the web server and the dashboard on their own
thread and loop (``roles.build_served``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence

import attrs

from bench.cases import (
    WINDOW,
    Config,
    LatencyProbe,
    TimedAggregator,
    TimedMemoryStore,
    _offer,
    _serve,
)
from bench.messages import Message, Universe, generate
from bench.report import Row, Target
from bench.timing import percentile
from callsbot.clock import SystemClock
from callsbot.config import Settings
from callsbot.extract import extract
from callsbot.market.gate import open_market
from callsbot.metrics import Metrics
from callsbot.runtime.roles import Served, build_served, make_parts
from callsbot.testing.dexscreener import FakeDexScreener

CLIENTS = 16
RATE = 200.0


@attrs.frozen
class Run:
    """One run: the pipeline's latencies and, with clients, theirs."""

    pipeline: list[float]
    clients: list[float]
    events: int
    seconds: float
    cpu: float = 0.0
    web_cpu: float = 0.0
    clients_cpu: float = 0.0


async def case_dashboard(cfg: Config) -> list[Row]:
    rng = random.Random(cfg.seed + 8)
    universe = Universe.make(rng, 200, 100)
    messages = [m for m in generate(rng, 20_000, universe) if _names_one(m)]
    subject: list[Run] = []
    baseline: list[Run] = []
    async with FakeDexScreener() as dex:
        _serve(dex, universe)
        for _ in range(cfg.dash_rounds):
            baseline.append(await _run(cfg, dex, universe, messages, clients=False))
            subject.append(await _run(cfg, dex, universe, messages, clients=True))
    return _rows(cfg, subject, baseline)


def _names_one(m: Message) -> bool:
    found = extract(m.text, m.entities)
    return len(found.mints) + len(found.pairs) == 1


@contextlib.asynccontextmanager
async def _clients(url: str) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.sse_clients",
        url,
        str(CLIENTS),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        line = await asyncio.wait_for(proc.stderr.readline(), 30)
        if line.strip() != b"ready":
            raise RuntimeError(f"bench.sse_clients did not start: {line!r}")
        yield proc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def _run(
    cfg: Config,
    dex: FakeDexScreener,
    universe: Universe,
    messages: Sequence[Message],
    *,
    clients: bool,
) -> Run:
    settings = Settings()
    settings = attrs.evolve(
        settings,
        dexscreener=attrs.evolve(settings.dexscreener, url=dex.url),
        web=attrs.evolve(settings.web, port=0),
    )
    metrics = Metrics.create()
    clock = SystemClock()
    probe = LatencyProbe()
    store = TimedMemoryStore(window=WINDOW, clock=clock)
    store.probe = probe
    client, validator = await open_market(settings, clock=clock, metrics=metrics)
    await validator.verdicts(universe.tokens)
    await validator.resolve_pairs(universe.pairs)
    parts = make_parts(settings, clock=clock, metrics=metrics, store=store, market=validator)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    served = None
    if clients:
        # As `run` serves it: the server and the dashboard on a thread and loop of their own.
        served = build_served(parts, [parts.events], dashboard=True)
        tasks.append(asyncio.create_task(served.host.run(stop)))
    tasks.append(asyncio.create_task(parts.events.run(stop)))
    agg = TimedAggregator(
        settings=settings,
        store=store,
        market=validator,
        clock=clock,
        metrics=metrics,
        events=parts.events,
    )
    agg.probe = probe
    agg_stop = asyncio.Event()
    runner = asyncio.create_task(agg.run(agg_stop))
    samples: list[float] = []
    events = 0
    cpu = web_cpu = clients_cpu = 0.0
    try:
        async with contextlib.AsyncExitStack() as stack:
            proc = None
            if served is not None:
                port = await served.listening()
                proc = await stack.enter_async_context(
                    _clients(f"http://127.0.0.1:{port}/api/dash/events")
                )
            warm, _ = await _offer(agg, probe, messages, 0, RATE, 1.0)
            await agg.drain()
            probe.reset()
            started = time.time()
            sent_before = _sent(metrics)
            cpu_before = time.process_time()
            web_before = await _web_cpu(served)
            _, start = await _offer(agg, probe, messages, warm, RATE, cfg.dash_seconds)
            await agg.drain()
            elapsed = probe.last_done - start
            cpu = time.process_time() - cpu_before
            web_cpu = await _web_cpu(served) - web_before
            await asyncio.sleep(0.5)  # the last frames reach the clients
            events = _sent(metrics) - sent_before
            if served is not None and proc is not None:
                await served.on_dashboard(lambda dashboard: dashboard.broadcaster.close())
                out, _ = await asyncio.wait_for(proc.communicate(), 60)
                result = json.loads(out)
                samples = [lat for at, lat in result["samples"] if at >= started]
                clients_cpu = float(result["cpu_s"])
    finally:
        agg_stop.set()
        await runner
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await validator.aclose()
        await client.aclose()
        await store.aclose()
    return Run(sorted(probe.latencies), sorted(samples), events, elapsed, cpu, web_cpu, clients_cpu)


async def _web_cpu(served: Served | None) -> float:
    """CPU seconds the web thread has used so far (0 without one)."""
    if served is None:
        return 0.0
    return await served.on_dashboard(lambda _: time.thread_time())


def _sent(metrics: Metrics) -> int:
    return int(metrics.registry.get_sample_value("callsbot_dash_events_total") or 0)


def _rows(cfg: Config, subject: list[Run], baseline: list[Run]) -> list[Row]:
    client_p99 = [percentile(r.clients, 99) * 1e3 for r in subject]
    client_p50 = [percentile(r.clients, 50) * 1e3 for r in subject]
    sub_p99 = [percentile(r.pipeline, 99) * 1e3 for r in subject]
    base_p99 = [percentile(r.pipeline, 99) * 1e3 for r in baseline]
    # One p99 over every sample of a side's runs: a hiccup in one run (the box's, not the
    # code's) moves it by that run's share of the tail, not by a quarter of its size.
    sub_pooled = percentile(sorted(x for r in subject for x in r.pipeline), 99) * 1e3
    base_pooled = percentile(sorted(x for r in baseline for x in r.pipeline), 99) * 1e3
    rate = statistics.mean(r.events / r.seconds for r in subject)
    frames = statistics.mean(len(r.clients) for r in subject)

    def runs(values: list[float]) -> str:
        return ", ".join(f"{v:.2f}" for v in values)

    return [
        Row(
            "10",
            f"dashboard: event to client p99, {CLIENTS} SSE clients",
            max(client_p99),
            "ms",
            target=Target("<=", 100.0, on="value", label="p99 (ms)"),
            note=f"worst of {len(subject)} runs of {cfg.dash_seconds:g} s; "
            f"p99 per run {runs(client_p99)} ms, "
            f"p50 {runs(client_p50)} ms; {rate:.0f} events/s, {frames:,.0f} frames read per run",
        ),
        Row(
            "10",
            f"dashboard: pipeline p99 submit→recorded with {CLIENTS} SSE clients",
            sub_pooled,
            "ms",
            base_pooled,
            target=Target("<=", 1.10),
            note=f"p99 of all samples of {len(subject)} alternating runs of "
            f"{cfg.dash_seconds:g} s each side; per run with clients {runs(sub_p99)} ms, "
            f"CPU per run: bench process {runs([r.cpu for r in subject])} s "
            f"(web thread {runs([r.web_cpu for r in subject])} s; without the dashboard "
            f"{runs([r.cpu for r in baseline])} s), the 16 clients' process "
            f"{runs([r.clients_cpu for r in subject])} s (whole life); "
            f"baseline (no dashboard) {runs(base_p99)} ms; {RATE:g} msg/s naming one address; "
            f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
        ),
    ]
