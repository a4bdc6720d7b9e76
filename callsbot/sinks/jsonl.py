"""Alert sink: one JSON object per line, appended to a file other tools can tail."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from callsbot.alert import Alert
from callsbot.errors import SinkError


class JsonlSink:
    """Appends each alert as one JSON line to ``path`` (created with mode 0600).

    Args:
        path: the file; its directory must exist.
    """

    name = "jsonl"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = asyncio.Lock()

    async def send(self, alert: Alert) -> None:
        """Append ``alert``.

        Raises:
            SinkError: the file could not be written.
        """
        try:
            line = json.dumps(alert.to_json(), ensure_ascii=False, allow_nan=False) + "\n"
        except ValueError as exc:
            raise SinkError(f"jsonl: alert is not valid JSON: {exc}") from None
        async with self._lock:
            try:
                await asyncio.to_thread(self._append, line.encode())
            except OSError as exc:
                raise SinkError(f"jsonl: cannot write {self.path}: {exc.strerror}") from None

    def _append(self, data: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            # One write() of the whole line: concurrent appenders never interleave inside it.
            os.write(fd, data)
        finally:
            os.close(fd)

    async def aclose(self) -> None:
        """Nothing held open between alerts."""
