"""``backtest --plot FILE.png``: alerts per day against win rate, one point per configuration.

Each point carries its Wilson 95 % interval; the deployed configuration is drawn as a star,
the chosen one (with a split) ringed. Hollow points have low n (10–29); configurations with
fewer than 10 decided alerts are left out and listed under the axis. matplotlib is drawn
through its Agg canvas only (no display, no pyplot state).
"""

from __future__ import annotations

import os
import textwrap

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from callsbot.outcomes.stats import Display
from callsbot.replay.backtest import Backtest


def build_figure(bt: Backtest) -> Figure:
    """The figure: x = alerts per day, y = win rate with its interval."""
    figure = Figure(figsize=(8.0, 5.5))
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    left_out: list[str] = []
    # Red is the deployed configuration's; the others cycle through the rest of the palette.
    palette = [f"C{k}" for k in range(10) if k != 3]
    for i, row in enumerate(bt.rows):
        f = row.report
        if f.display is Display.HIDDEN or f.win.rate is None:
            left_out.append(f"{row.config.label} (n={f.n})")
            continue
        y = f.win.rate
        colour = "C3" if row.config.deployed else palette[i % len(palette)]
        hollow = f.display is Display.LOW_N
        axes.errorbar(
            [f.alerts_per_day],
            [y],
            yerr=[[y - f.win.ci.low], [f.win.ci.high - y]],
            fmt="*" if row.config.deployed else "o",
            markersize=14 if row.config.deployed else 7,
            color=colour,
            markerfacecolor="white" if hollow else colour,
            capsize=4,
            label=("deployed" if row.config.deployed else row.config.label)
            + (" (low n)" if hollow else ""),
        )
        if row.chosen:
            axes.plot(
                [f.alerts_per_day], [y], "o", markersize=18, markerfacecolor="none", color="k"
            )
    axes.set_xlabel("alerts per day")
    axes.set_ylabel("win rate: 2x within 24 h (Wilson 95 %)")
    axes.set_ylim(0.0, 1.0)
    axes.set_xlim(left=0.0)
    title = "backtest: alerts/day vs win rate"
    if bt.approximate:
        title += " (approximate gate)"
    if bt.split_at is not None:
        title += ", held-out days"
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best", fontsize="small")
    lines = textwrap.wrap("n<10, not drawn: " + "; ".join(left_out), 140) if left_out else []
    if lines:
        figure.text(0.01, 0.01, "\n".join(lines[:4]), fontsize="x-small", va="bottom")
    figure.tight_layout(rect=(0, 0.03 * min(len(lines), 4), 1, 1))
    return figure


def write_plot(bt: Backtest, path: str | os.PathLike[str]) -> None:
    """Draw :func:`build_figure` into ``path`` as a PNG."""
    build_figure(bt).savefig(path, format="png", dpi=100)
