"""Alert sink: one log line per alert."""

from __future__ import annotations

import logging

from callsbot.alert import Alert, render_text

log = logging.getLogger("callsbot.alerts")


class LogSink:
    """Writes each alert as one INFO line on the ``callsbot.alerts`` logger.

    Args:
        logger: where to log (``callsbot.alerts`` by default).
    """

    name = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or log

    async def send(self, alert: Alert) -> None:
        """Log ``alert`` (control characters removed, so a token name cannot forge lines)."""
        self._log.info("%s", render_text(alert))

    async def aclose(self) -> None:
        """Nothing to release."""
