"""The backtest as a table for people, one JSON document, or CSV (one row per configuration).

The table follows the display rule of outcomes.md section 4: a rate over fewer than 10 decided
alerts is not shown (``n<10``), one over 10–29 is marked ``†`` (low n). JSON and CSV always
carry every count, rate and interval, with the ``display`` flag.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any

from callsbot.outcomes.stats import Display, Interval
from callsbot.replay.backtest import Backtest, Row
from callsbot.replay.figures import Figures, Rate

JSON_VERSION = 1


def _when(t: float) -> str:
    return dt.datetime.fromtimestamp(t, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")


def _pct(x: float | None, *, signed: bool = False) -> str:
    if x is None:
        return "–"
    return f"{100 * x:+.0f}%" if signed else f"{100 * x:.0f}%"


def _ci(ci: Interval | None, *, signed: bool = False, scale: float = 100.0, unit: str = "") -> str:
    if ci is None:
        return ""
    fmt = "{:+.0f}" if signed else "{:.0f}"
    if unit == "x":
        return f" [{ci.low:.2f}–{ci.high:.2f}]"
    return f" [{fmt.format(scale * ci.low)}, {fmt.format(scale * ci.high)}]"


def _rate_cell(rate: Rate, display: Display, *, interval: bool = False) -> str:
    if display is Display.HIDDEN or rate.rate is None:
        return "n<10"
    text = _pct(rate.rate) + (_ci(rate.ci) if interval else "")
    return text + ("†" if display is Display.LOW_N else "")


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds / 60:.0f}m" if seconds < 3 * 3600 else f"{seconds / 3600:.1f}h"


def _cells(row: Row) -> list[str]:
    f = row.report
    hidden = f.display is Display.HIDDEN
    name = row.config.label + (" ◀ chosen" if row.chosen else "")
    peak = "n<10" if hidden or f.median_peak is None else f"{f.median_peak:.2f}x"
    if not hidden and f.median_peak is not None:
        peak += _ci(f.median_peak_ci, unit="x")
    ev = "–" if f.ev is None else _pct(f.ev, signed=True) + _ci(f.ev_ci, signed=True)
    if f.ev is not None and f.ev_n < 10:
        ev = f"{ev} (n={f.ev_n})"

    def ret(x: float | None) -> str:
        return "n<10" if hidden else _pct(x, signed=True)

    return [
        name,
        f"{f.alerts_per_day:.1f}",
        str(f.n),
        _rate_cell(f.win, f.display, interval=True),
        _rate_cell(f.x5, f.display),
        _rate_cell(f.x10, f.display),
        _rate_cell(f.win_before_stop, f.display),
        peak,
        ret(f.median_return_1h),
        ret(f.median_return_4h),
        ret(f.median_return_24h),
        "n<10" if hidden else _minutes(f.median_time_to_2x),
        ev,
        str(f.unresolved),
    ]


HEADERS = [
    "configuration",
    "alerts/day",
    "n",
    "win (2x) [95% CI]",
    "5x",
    "10x",
    "2x before -50%",
    "median peak [CI]",
    "+1h",
    "+4h",
    "+24h",
    "to 2x",
    "EV/alert [CI]",
    "unresolved",
]


def render_table(bt: Backtest) -> str:
    """The table for people, with a header saying what was replayed and how."""
    lines = [
        f"backtest of {bt.tape_source}: {_when(bt.start)} – {_when(bt.end)} UTC "
        f"({(bt.end - bt.start) / 86400:.2f} days), gate: {bt.gate.value}",
        f"exit rule: {bt.rule.describe()} (a candle touching both counts the stop)",
    ]
    if bt.approximate:
        lines.append(
            "APPROXIMATE GATE: no market snapshot was recorded; tokens were gated on candle volume"
        )
    if bt.split_at is not None:
        lines.append(
            f"chosen on alerts before {_when(bt.split_at)} UTC (whole horizon settled), "
            f"every figure below on alerts from then on"
        )
    rows = [HEADERS, *[_cells(r) for r in bt.rows]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    for i, row in enumerate(rows):
        cells = [
            c.ljust(w) if j == 0 else c.rjust(w)
            for j, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append(" | ".join(cells))
        if i == 0:
            lines.append("-+-".join("-" * w for w in widths))
    lines.append(
        "n = alerts decided (resolved or dead); n<10: not shown; †: low n (10-29); "
        "EV: mean net return per alert under the exit rule"
    )
    lines.append(
        f"{len(bt.rows)} configurations in {bt.wall_seconds:.1f} s wall "
        f"({bt.replay_seconds:.1f} s of replays, {bt.workers} process(es))"
    )
    return "\n".join(lines)


def _interval(ci: Interval | None) -> list[float] | None:
    return None if ci is None else [round(ci.low, 6), round(ci.high, 6)]


def _rate_json(rate: Rate) -> dict[str, Any]:
    return {"count": rate.count, "n": rate.n, "rate": rate.rate, "ci": _interval(rate.ci)}


def figures_json(f: Figures) -> dict[str, Any]:
    """One period's figures as JSON-ready values (fractions, seconds, unix times)."""
    return {
        "since": f.since,
        "until": f.until,
        "days": round(f.days, 6),
        "alerts": f.alerts,
        "alerts_per_day": round(f.alerts_per_day, 6),
        "n": f.n,
        "display": f.display.value,
        "unresolved": f.unresolved,
        "tracking": f.tracking,
        "win": _rate_json(f.win),
        "x5": _rate_json(f.x5),
        "x10": _rate_json(f.x10),
        "win_before_stop": _rate_json(f.win_before_stop),
        "median_peak": None
        if f.median_peak is None
        else {"value": f.median_peak, "ci": _interval(f.median_peak_ci)},
        "median_return_1h": f.median_return_1h,
        "median_return_4h": f.median_return_4h,
        "median_return_24h": f.median_return_24h,
        "median_time_to_2x_seconds": f.median_time_to_2x,
        "ev": {"value": f.ev, "ci": _interval(f.ev_ci), "n": f.ev_n},
        "exits": dict(f.exits),
    }


def backtest_json(bt: Backtest) -> dict[str, Any]:
    """The whole backtest as one JSON-ready document."""
    return {
        "version": JSON_VERSION,
        "recording": bt.tape_source,
        "gate": bt.gate.value,
        "approximate": bt.approximate,
        "start": bt.start,
        "end": bt.end,
        "split_at": bt.split_at,
        "exit": {
            "tp": bt.rule.take_profit,
            "sl": bt.rule.stop,
            "hours": bt.rule.hours,
            "fee": bt.rule.fee,
        },
        "wall_seconds": round(bt.wall_seconds, 3),
        "replay_seconds": round(bt.replay_seconds, 3),
        "workers": bt.workers,
        "rows": [
            {
                "config": r.config.label,
                "deployed": r.config.deployed,
                "chosen": r.chosen,
                "values": dict(r.config.values),
                "seconds": round(r.seconds, 3),
                "report": figures_json(r.report),
                "train": None if r.train is None else figures_json(r.train),
            }
            for r in bt.rows
        ],
    }


def render_json(bt: Backtest) -> str:
    """:func:`backtest_json` as text."""
    return json.dumps(backtest_json(bt), ensure_ascii=False, indent=1)


CSV_COLUMNS = [
    "config",
    "deployed",
    "chosen",
    "gate",
    "alerts",
    "alerts_per_day",
    "n",
    "display",
    "unresolved",
    "tracking",
    "wins",
    "win_rate",
    "win_ci_low",
    "win_ci_high",
    "x5",
    "x5_rate",
    "x10",
    "x10_rate",
    "win_before_stop",
    "win_before_stop_rate",
    "median_peak",
    "median_peak_ci_low",
    "median_peak_ci_high",
    "median_return_1h",
    "median_return_4h",
    "median_return_24h",
    "median_time_to_2x_seconds",
    "ev",
    "ev_ci_low",
    "ev_ci_high",
    "ev_n",
    "train_n",
    "train_ev",
]


def render_csv(bt: Backtest) -> str:
    """One row per configuration (the reported period; the training EV when split)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in bt.rows:
        f = r.report

        def low(ci: Interval | None) -> float | None:
            return None if ci is None else ci.low

        def high(ci: Interval | None) -> float | None:
            return None if ci is None else ci.high

        values = [
            r.config.label,
            r.config.deployed,
            r.chosen,
            bt.gate.value,
            f.alerts,
            f.alerts_per_day,
            f.n,
            f.display.value,
            f.unresolved,
            f.tracking,
            f.win.count,
            f.win.rate,
            f.win.ci.low,
            f.win.ci.high,
            f.x5.count,
            f.x5.rate,
            f.x10.count,
            f.x10.rate,
            f.win_before_stop.count,
            f.win_before_stop.rate,
            f.median_peak,
            low(f.median_peak_ci),
            high(f.median_peak_ci),
            f.median_return_1h,
            f.median_return_4h,
            f.median_return_24h,
            f.median_time_to_2x,
            f.ev,
            low(f.ev_ci),
            high(f.ev_ci),
            f.ev_n,
            None if r.train is None else r.train.n,
            None if r.train is None else r.train.ev,
        ]
        writer.writerow(["" if v is None else v for v in values])
    return out.getvalue()
