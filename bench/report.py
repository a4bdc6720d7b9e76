"""Result rows, the printed table and the JSON file."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs


@attrs.frozen
class Target:
    """A pass/fail rule on a row's ``ratio`` (``on="ratio"``) or ``value`` (``on="value"``)."""

    op: str  # ">=" | "<=" | "<"
    limit: float
    on: str = "ratio"
    label: str = ""

    def check(self, row: Row) -> bool | None:
        x = row.ratio if self.on == "ratio" else row.value
        if x is None:
            return None
        if self.op == "<":
            return x < self.limit
        return x >= self.limit if self.op == ">=" else x <= self.limit

    def describe(self) -> str:
        op = {">=": "≥", "<=": "≤", "<": "<"}[self.op]
        what = "ratio" if self.on == "ratio" else (self.label or "value")
        return f"{what} {op} {self.limit:g}"


@attrs.frozen
class Row:
    """One figure of one case."""

    case: str
    figure: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_unit: str | None = None
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else self.target.check(self)

    @property
    def result(self) -> str:
        return {True: "PASS", False: "FAIL", None: "-"}[self.passed]

    def as_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "figure": self.figure,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline,
            "baseline_unit": self.baseline_unit or (self.unit if self.baseline else None),
            "ratio": self.ratio,
            "target": self.target.describe() if self.target else None,
            "result": self.result,
            "note": self.note,
        }


def fmt_number(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}" if x >= 0.1 else f"{x:.3f}"


def _with_unit(x: float | None, unit: str | None) -> str:
    return "-" if x is None else f"{fmt_number(x)} {unit or ''}".rstrip()


def table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table (readable in a terminal, pasteable into the docs)."""
    header = ("#", "figure", "value", "baseline", "ratio", "target", "result")
    body = [
        (
            r.case,
            r.figure,
            _with_unit(r.value, r.unit),
            _with_unit(r.baseline, r.baseline_unit or r.unit),
            "-" if r.ratio is None else f"{r.ratio:.3f}",
            r.target.describe() if r.target else "-",
            r.result,
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    right = {2, 3, 4}

    def line(cells: Sequence[str]) -> str:
        out = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(out) + " |"

    sep = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if i in right else "-" * (w + 2) for i, w in enumerate(widths)
        )
        + "|"
    )
    return "\n".join([line(header), sep, *(line(b) for b in body)])


def machine(redis_version: str | None) -> dict[str, Any]:
    """What the figures were taken on."""
    cpu = None
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        cpu = m.group(1).strip() if m else None
    except OSError:
        pass
    if redis_version is None:
        try:
            out = subprocess.run(
                ["redis-server", "--version"], capture_output=True, text=True, check=False
            ).stdout
            m2 = re.search(r"v=(\S+)", out)
            redis_version = m2.group(1) if m2 else None
        except OSError:
            redis_version = None
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "redis_server": redis_version,
        "platform": platform.platform(),
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
