"""``python -m callsbot report``: win rates by consensus level with honest intervals.

Reads every tracked event and its latest outcome from the history (the outcome tracker's
tables), builds the section-4 report (:func:`~callsbot.outcomes.report.build_report`) and
prints it as a table for people (with the deployed targets' checklist), one JSON document or
CSV; ``--plot`` also draws win rate by bucket with interval bars.

Exit status: 0 done; 1 the database could not be reached or has no schema yet; 2 a
configuration problem (bad URL, a schema other than this code's).
"""

from __future__ import annotations

from typing import TextIO

from callsbot.config import Settings
from callsbot.errors import EXIT_CONFIG, ConfigError, HistoryUnavailable
from callsbot.history.sql import head_revision, open_history
from callsbot.outcomes.ledger import OutcomeLedger
from callsbot.outcomes.report import build_report, render_csv, render_json, render_table

FORMATS = ("table", "json", "csv")


async def report_command(
    settings: Settings,
    *,
    out: TextIO,
    err: TextIO,
    since: int | None = None,
    until: int | None = None,
    by: str = "level",
    fmt: str = "table",
    plot: str | None = None,
    seed: int = 0,
) -> int:
    """Print the report of the events with ``since ≤ t < until``; return the exit status.

    Args:
        settings: ``[history]`` (where), ``[store] window_seconds`` (what "alerted" spans) and
            ``[outcomes] latency_seconds``.
        out: the report goes here.
        err: errors, and where the plot was written.
        since: first event time included (unix s).
        until: first event time excluded.
        by: ``level``, ``alerted`` or ``group``.
        fmt: ``table``, ``json`` or ``csv``.
        plot: also write the win-rate plot to this PNG file.
        seed: the bootstrap's seed.
    """
    try:
        history = open_history(settings.history)
    except ConfigError as exc:
        print(f"callsbot report: config error: {exc}", file=err)
        return EXIT_CONFIG
    async with history:
        try:
            revision = await history.revision()
            if revision is None:
                print(
                    f"callsbot report: {history.where} has no schema yet (nothing was recorded; "
                    "or run: python -m callsbot db upgrade)",
                    file=err,
                )
                return 1
            if revision != head_revision():
                # Migrating is a deliberate step: a report never changes the database.
                print(
                    f"callsbot report: {history.where} is at schema revision {revision!r}, this "
                    f"callsbot reads {head_revision()!r} (run: python -m callsbot db upgrade, or "
                    "a matching callsbot)",
                    file=err,
                )
                return EXIT_CONFIG
            records = await OutcomeLedger(history).records(
                since=since,
                until=until,
                window=settings.store.window_seconds,
                latency=settings.outcomes.latency_seconds,
            )
        except HistoryUnavailable as exc:
            print(f"callsbot report: {exc}", file=err)
            return 1
    report = build_report(records, split=by, since=since, until=until, seed=seed)
    if fmt == "json":
        out.write(render_json(report) + "\n")
    elif fmt == "csv":
        out.write(render_csv(report))
    else:
        out.write(render_table(report))
    out.flush()
    if plot is not None:
        from callsbot.outcomes.plot import write_plot

        try:
            write_plot(report, plot)
        except OSError as exc:
            print(f"callsbot report: cannot write {plot}: {exc.strerror}", file=err)
            return 1
        print(f"report: plot written to {plot}", file=err)
    return 0
