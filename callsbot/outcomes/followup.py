"""The short reply an alert gets at its checkpoints: ``📈 +1h 1.42× · peak 2.31× at 38 min ·
drawdown −18 %``. Pure: an outcome computed as of the checkpoint in, one line out."""

from __future__ import annotations

from callsbot.outcomes.path import CHECKPOINTS, Outcome, OutcomeStatus

MINUS = "\u2212"
#: Checkpoint seconds → the section-3 field holding its price.
CHECKPOINT_FIELDS: dict[int, str] = {offset: name for name, offset in CHECKPOINTS}


def checkpoint_label(seconds: int) -> str:
    """``+1h``, ``+24h``, ``+15m``, ``+90s``."""
    if seconds % 3600 == 0:
        return f"+{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"+{seconds // 60}m"
    return f"+{seconds}s"


def _after(seconds: int) -> str:
    minutes = max(0, round(seconds / 60))
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d}"


def percent(fraction: float) -> str:
    """``−18 %`` (a true minus sign), ``0 %``, ``25 %``: a fraction as whole percent."""
    value = round(fraction * 100)
    return f"{MINUS}{-value} %" if value < 0 else f"{value} %"


def followup_text(outcome: Outcome, checkpoint: int) -> str | None:
    """The reply for an alert ``checkpoint`` seconds after it, from its outcome *as of* then.

    ``checkpoint`` is one of the section-3 checkpoints (:data:`~callsbot.outcomes.path.
    CHECKPOINTS`); ``outcome`` must be computed with ``as_of = event + checkpoint`` (peak and
    drawdown so far, never later). ``None`` when there is nothing honest to say: the path was
    not had (unresolved) or the checkpoint's price is not known.
    """
    name = CHECKPOINT_FIELDS[checkpoint]
    label = checkpoint_label(checkpoint)
    if outcome.status is OutcomeStatus.UNRESOLVED:
        return None
    if outcome.status is OutcomeStatus.DEAD or outcome.entry_ts is None:
        return f"💤 {label} no trade since the alert"
    price = outcome.checkpoint(name)
    if price is None or outcome.entry is None or outcome.peak is None:
        return None
    multiple = price / outcome.entry
    icon = "📈" if multiple >= 1.0 else "📉"
    parts = [f"{icon} {label} {multiple:.2f}×"]
    if outcome.t_peak is not None:
        parts.append(f"peak {outcome.peak:.2f}× at {_after(outcome.t_peak - outcome.event_ts)}")
    if outcome.max_drawdown is not None:
        parts.append(f"drawdown {percent(outcome.max_drawdown)}")
    return " · ".join(parts)
