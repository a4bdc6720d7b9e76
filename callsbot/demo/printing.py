"""What the demo prints: alerts and follow-ups as Telegram shows them, the summary of the
session, and each alert's day after."""

from __future__ import annotations

import collections
import html
import re
from collections.abc import Mapping, Sequence
from typing import TextIO

import attrs

from callsbot.alert import Alert, render_html
from callsbot.clock import Clock
from callsbot.metrics import Metrics
from callsbot.outcomes.followup import percent
from callsbot.outcomes.report import EventKind, OutcomeRecord
from callsbot.scorer import Scored


def visible(message_html: str) -> str:
    """What a Telegram user sees of an HTML message: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", message_html))


@attrs.define
class PrintSink:
    """An alert sink that prints each alert as the Telegram group would show it, and the
    follow-up replies to them (the outcome tracker's replier)."""

    out: TextIO
    quiet: bool
    clock: Clock
    start: int
    sent: list[Alert] = attrs.field(factory=list)
    replies: list[str] = attrs.field(factory=list)
    name: str = "demo"

    async def send(self, alert: Alert) -> str:
        """Print ``alert``; its message id (what follow-ups reply to)."""
        self.sent.append(alert)
        if not self.quiet:
            minute = (self.clock.time() - self.start) / 60
            print(f"\n──── alert at +{minute:.0f} min ────", file=self.out)
            print(visible(render_html(alert)), file=self.out)
        return str(len(self.sent))

    async def reply(self, text: str, *, reply_to: str) -> str:
        """Print a follow-up to the alert ``reply_to`` names; the reply's message id."""
        self.replies.append(text)
        if not self.quiet:
            symbol = self.sent[int(reply_to) - 1].symbol
            hours = (self.clock.time() - self.start) / 3600
            print(f"──── reply to the ${symbol} alert, at +{hours:.1f} h ────", file=self.out)
            print(text, file=self.out)
        return f"{reply_to}.{len(self.replies)}"

    async def aclose(self) -> None:
        """Nothing to release."""


def _by_label(metrics: Metrics, metric: str, label: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == metric and label in sample.labels:
                found[sample.labels[label]] = int(sample.value)
    return {k: v for k, v in sorted(found.items()) if v}


def _fmt(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def summary(
    *,
    metrics: Metrics,
    delivered: int,
    peak: Mapping[str, int],
    alerts: list[Alert],
    scored: Mapping[str, Scored],
    symbols: Mapping[str, str],
) -> str:
    """The session's summary: what was replayed, recorded, rejected and alerted (from the
    run's metrics), how many groups each token reached (``peak``), and each scored token."""
    recorded = _by_label(metrics, "callsbot_mentions_recorded_total", "kind")
    rejected = _by_label(metrics, "callsbot_mentions_rejected_total", "reason")
    feed = _by_label(metrics, "callsbot_feed_items_total", "outcome")
    by_count = collections.Counter(min(n, 3) for n in peak.values())
    rows = [
        ("Telegram messages replayed", str(delivered)),
        ("mentions recorded", f"{sum(recorded.values())} ({_fmt(recorded)})"),
        ("mentions rejected", f"{sum(rejected.values())} ({_fmt(rejected)})"),
        (
            "tokens by groups (at peak)",
            ", ".join(
                f"{'3+' if k == 3 else k} group{'' if k == 1 else 's'}: {v}"
                for k, v in sorted(by_count.items())
            ),
        ),
        ("Cielo feed items", _fmt(feed)),
        ("alerts", ", ".join(f"${a.symbol}" for a in alerts) or "none"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = ["", "──── summary ────"]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines += ["", "scored tokens:"]
    for token, result in scored.items():
        card = result.card
        line = f"  ${symbols.get(token, token[:6]):<9} {result.outcome:<15}"
        if card is not None:
            line += f" score {card.total:4.1f}  {card.consensus.reason}"
        lines.append(line)
    return "\n".join(lines)


def day_after(records: Sequence[OutcomeRecord], symbols: Mapping[str, str]) -> list[str]:
    """One line per alert: its peak, its +24 h close, its drawdown, whether it won."""
    lines = ["", "──── the day after: what each alert did (entry = open 60 s after it) ────"]
    for r in records:
        if r.kind is not EventKind.ALERT:
            continue
        o = r.outcome
        head = f"  ${symbols.get(r.token, r.token[:6]):<9} {o.status.value:<10}"
        if o.entry is None or o.peak is None or o.t_peak is None:
            lines.append(head)
            continue
        close = o.close_return("p_24h")
        lines.append(
            f"{head} peak {o.peak:5.2f}× at +{(o.t_peak - o.event_ts) / 3600:4.1f} h"
            f"  +24h {'–' if close is None else f'{1 + close:.2f}×':>6}"
            f"  drawdown {percent(o.max_drawdown or 0.0):>6}  {'win' if o.win else 'no win'}"
        )
    return lines
