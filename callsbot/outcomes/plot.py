"""``--plot FILE.png``: win rate by bucket with Wilson 95 % bars, one series per event kind.

matplotlib is imported here only, and drawn through its Agg canvas (no display, no pyplot
global state), so the pure report modules never load it.
"""

from __future__ import annotations

import os

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from callsbot.outcomes.report import ALERTED_BUCKETS, LEVEL_BUCKETS, BucketStats, Report
from callsbot.outcomes.stats import Display

#: Horizontal spread between the series of one bucket.
_OFFSET = 0.12


def build_figure(report: Report) -> Figure:
    """The figure: x = bucket, y = win rate, bars = Wilson interval, one colour per kind.

    Buckets hidden by the display rule (n < 10) are not drawn (their tick label says so);
    "low n" buckets are drawn hollow.
    """
    names = sorted({b.bucket for b in report.buckets}, key=_bucket_order)
    kinds = list(dict.fromkeys(b.kind for b in report.buckets))
    figure = Figure(figsize=(max(6.0, 1.2 * len(names) + 3), 4.5))
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    for i, kind in enumerate(kinds):
        shift = (i - (len(kinds) - 1) / 2) * _OFFSET
        of_kind = [b for b in report.buckets if b.kind is kind]
        for display in (Display.SHOWN, Display.LOW_N):
            points = [b for b in of_kind if b.display is display]
            if points:
                _draw(
                    axes,
                    points,
                    names,
                    shift,
                    f"C{i}",
                    kind.value,
                    hollow=display is not Display.SHOWN,
                )
    labels = []
    for name in names:
        same = [b for b in report.buckets if b.bucket == name]
        hidden = all(b.display is Display.HIDDEN for b in same)
        ns = "/".join(str(b.n) for b in same)
        labels.append(f"{name}\nn={ns}" + ("\n(n<10)" if hidden else ""))
    axes.set_xticks(range(len(names)), labels)
    axes.set_xlim(-0.6, len(names) - 0.4)
    axes.set_ylim(0.0, 1.0)
    axes.set_ylabel("win rate (Wilson 95 %)")
    axes.set_title(f"win rate by {report.split}")
    axes.grid(axis="y", alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    return figure


def _bucket_order(name: str) -> tuple[int, str]:
    known = LEVEL_BUCKETS + ALERTED_BUCKETS
    return (known.index(name), "") if name in known else (len(known), name)


def _draw(
    axes: Axes,
    points: list[BucketStats],
    names: list[str],
    shift: float,
    colour: str,
    label: str,
    *,
    hollow: bool,
) -> None:
    xs = [names.index(b.bucket) + shift for b in points]
    ys = [b.wins.rate or 0.0 for b in points]
    below = [y - b.wins.interval.low for y, b in zip(ys, points, strict=True)]
    above = [b.wins.interval.high - y for y, b in zip(ys, points, strict=True)]
    axes.errorbar(
        xs,
        ys,
        yerr=[below, above],
        fmt="o",
        color=colour,
        capsize=4,
        markerfacecolor="white" if hollow else colour,
        label=label + (" (low n)" if hollow else ""),
    )


def write_plot(report: Report, path: str | os.PathLike[str]) -> None:
    """Draw :func:`build_figure` into ``path`` as a PNG."""
    build_figure(report).savefig(path, format="png", dpi=100)
