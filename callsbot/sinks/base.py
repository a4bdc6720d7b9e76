"""The alert-sink contract."""

from __future__ import annotations

from typing import Protocol

from callsbot.alert import Alert


class AlertSink(Protocol):
    """Somewhere alerts go (Telegram, the log, a JSONL file).

    Attributes:
        name: a short fixed label, used as the ``sink`` label of the ``alerts`` metric.
    """

    name: str

    async def send(self, alert: Alert) -> str | None:
        """Deliver ``alert``; return the id the destination gave the message, if any (the
        Telegram sink's message id, which follow-ups reply to).

        Raises:
            SinkError: it was not delivered (after the sink's own retries).
        """
        ...

    async def aclose(self) -> None:
        """Release resources. Safe to call twice."""
        ...
