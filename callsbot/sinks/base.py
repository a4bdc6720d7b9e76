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

    async def send(self, alert: Alert) -> None:
        """Deliver ``alert``.

        Raises:
            SinkError: it was not delivered (after the sink's own retries).
        """
        ...

    async def aclose(self) -> None:
        """Release resources. Safe to call twice."""
        ...
