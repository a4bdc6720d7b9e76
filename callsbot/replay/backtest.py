"""A backtest: every configuration replayed over one tape, measured, compared honestly.

Each configuration is one full replay (:mod:`callsbot.replay.engine`) of the whole recording,
on its own simulated clock and memory store; configurations run in parallel, one process per
core (:class:`concurrent.futures.ProcessPoolExecutor`; the tape is sent to each worker once).

With a split, the recording's period is cut at a time ``split_at`` (at a UTC midnight when it
spans two days or more): parameters are *chosen* on the alerts before it and every figure is
*reported* on the alerts after it. A training alert counts only when its whole horizon
(latency + 24 h) ended before ``split_at``, so no outcome the choice rests on was still
unfolding in the reported period. The choice is the configuration with the best mean net
return per alert under the exit rule among those with at least 10 decided training alerts
(ties: the higher Wilson lower bound of the win rate); the deployed one when none qualifies.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import os
import pickle
import time
from collections.abc import Callable, Sequence

import attrs

from callsbot.outcomes.stats import LOW_MIN_N
from callsbot.replay.engine import quiet_metrics, replay
from callsbot.replay.exits import ExitRule
from callsbot.replay.figures import AlertOutcome, Figures, figures, measure
from callsbot.replay.grid import Configuration
from callsbot.replay.tape import Gate, Tape

DAY = 86400.0


@attrs.frozen
class ConfigRun:
    """One configuration's replay, measured.

    Attributes:
        config: the configuration.
        outcomes: its alerts with outcomes and trades.
        levels: "level reached" events of the run.
        mentions: mentions recorded.
        seconds: the replay's own time (wall clock).
        cpu_seconds: its processor time.
        measure_seconds: the time measuring its alerts took.
        pid: the process that ran it.
    """

    config: Configuration
    outcomes: tuple[AlertOutcome, ...]
    levels: int
    mentions: int
    seconds: float
    cpu_seconds: float
    measure_seconds: float
    pid: int


def run_configuration(tape: Tape, config: Configuration, rule: ExitRule) -> ConfigRun:
    """Replay ``tape`` under ``config`` and measure its alerts (synchronous: a worker's task)."""
    result = asyncio.run(replay(tape, config.settings, metrics=quiet_metrics()))
    started = time.perf_counter()
    outcomes = measure(result.alerts, tape.paths, settings=config.settings.outcomes, rule=rule)
    return ConfigRun(
        config,
        outcomes,
        len(result.levels),
        result.mentions,
        result.seconds,
        result.cpu_seconds,
        time.perf_counter() - started,
        os.getpid(),
    )


class _Worker:
    """The tape a worker process holds (sent once, when the worker starts).

    Process-local on purpose: pickling a day's tape with every task would cost more than
    replaying it; the initializer hands it over once per worker.
    """

    tape: Tape | None = None


def _start_worker(blob: bytes) -> None:
    _Worker.tape = pickle.loads(blob)


def _work(config: Configuration, rule: ExitRule) -> ConfigRun:
    if _Worker.tape is None:
        raise RuntimeError("worker started without a tape")
    return run_configuration(_Worker.tape, config, rule)


def run_all(
    tape: Tape,
    configs: Sequence[Configuration],
    rule: ExitRule,
    *,
    jobs: int | None = None,
    progress: Callable[[ConfigRun], None] | None = None,
) -> tuple[list[ConfigRun], float]:
    """Every configuration's run, in the order given, and the wall time it all took.

    ``jobs``: worker processes (default: the CPUs, at most one per configuration); 1 runs
    everything in this process.
    """
    jobs = min(jobs or os.cpu_count() or 1, max(len(configs), 1))
    started = time.perf_counter()
    runs: list[ConfigRun] = []
    if jobs <= 1:
        for config in configs:
            runs.append(run_configuration(tape, config, rule))
            if progress is not None:
                progress(runs[-1])
        return runs, time.perf_counter() - started
    blob = pickle.dumps(tape, protocol=pickle.HIGHEST_PROTOCOL)
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=jobs, initializer=_start_worker, initargs=(blob,)
    ) as pool:
        futures = [pool.submit(_work, config, rule) for config in configs]
        for future in futures:
            runs.append(future.result())
            if progress is not None:
                progress(runs[-1])
    return runs, time.perf_counter() - started


@attrs.frozen
class Row:
    """One configuration's line of the table.

    Attributes:
        config: the configuration.
        report: the figures of the reported period (the newer days with a split).
        train: the figures of the training period (``None`` without a split).
        chosen: this is the configuration the training period picks.
        seconds: its replay's time.
    """

    config: Configuration
    report: Figures
    train: Figures | None
    chosen: bool
    seconds: float


@attrs.frozen
class Backtest:
    """The compared configurations.

    Attributes:
        rows: one per configuration, the deployed one first.
        tape_source: what was replayed.
        gate: how the market gate was answered (``approximate gate`` labels the run).
        start: the recording's start.
        end: its end.
        split_at: where training ends and reporting starts (``None``: no split).
        rule: the exit rule.
        wall_seconds: the wall time of all replays.
        replay_seconds: the sum of the replays' own (wall) times.
        workers: how many processes ran them.
    """

    rows: tuple[Row, ...]
    tape_source: str
    gate: Gate
    start: float
    end: float
    split_at: float | None
    rule: ExitRule
    wall_seconds: float
    replay_seconds: float
    workers: int

    @property
    def approximate(self) -> bool:
        """Whether the gate was approximated from candle volume."""
        return self.gate is Gate.APPROXIMATE


def split_time(start: float, end: float, fraction: float) -> float:
    """Where the older ``fraction`` of the period ends: a UTC midnight when the period spans
    two days or more (so no day is cut in two), else the plain fraction of the time."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"split must be between 0 and 1, got {fraction!r}")
    first_day = start // DAY
    days = max(1, math.ceil((end - first_day * DAY) / DAY))
    if days >= 2:
        cut = max(1, min(days - 1, round(days * fraction)))
        return (first_day + cut) * DAY
    return start + (end - start) * fraction


def evaluate(
    tape: Tape,
    runs: Sequence[ConfigRun],
    rule: ExitRule,
    *,
    split: float | None = None,
    seed: int = 0,
    wall_seconds: float = 0.0,
) -> Backtest:
    """The table's rows from the runs (see the module for the split and the choice)."""
    start, end = tape.start, max(tape.end, tape.start + 1.0)
    split_at = split_time(start, end, split) if split is not None else None
    report_since = split_at if split_at is not None else start
    rows: list[Row] = []
    for run in runs:
        report = figures(run.outcomes, since=report_since, until=end + 1e-6, seed=seed)
        train = None
        if split_at is not None:
            horizon = run.config.settings.outcomes.horizon_seconds
            settled = tuple(
                o for o in run.outcomes if o.at + o.outcome.latency + horizon <= split_at
            )
            train = figures(settled, since=start, until=split_at, seed=seed)
        rows.append(Row(run.config, report, train, False, run.seconds))
    if split_at is not None:
        pick = _choose(rows)
        rows = [attrs.evolve(r, chosen=(i == pick)) for i, r in enumerate(rows)]
    workers = len({r.pid for r in runs})
    return Backtest(
        rows=tuple(rows),
        tape_source=tape.source,
        gate=tape.gate,
        start=start,
        end=end,
        split_at=split_at,
        rule=rule,
        wall_seconds=wall_seconds,
        replay_seconds=sum(r.seconds for r in runs),
        workers=workers,
    )


def _choose(rows: Sequence[Row]) -> int:
    best: tuple[float, float] | None = None
    pick = next((i for i, r in enumerate(rows) if r.config.deployed), 0)
    for i, row in enumerate(rows):
        train = row.train
        if train is None or train.ev is None or train.ev_n < LOW_MIN_N:
            continue
        key = (train.ev, train.win.ci.low)
        if best is None or key > best:
            best, pick = key, i
    return pick
