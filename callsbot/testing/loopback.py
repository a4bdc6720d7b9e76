"""What the local API fakes share: an aiohttp app on a free loopback port, and rate checks."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Self

from aiohttp import web


def most_within(times: Iterable[float], window: float) -> int:
    """Most of ``times`` that fall within any half-open ``window`` (a rate limit's check)."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


class LoopbackServer:
    """An aiohttp application on a free loopback port; subclasses add their routes.

    Args:
        host: the address to listen on (loopback by default).
        path: appended to ``http://HOST:PORT`` in :attr:`url` (an API's version prefix).
    """

    def __init__(self, *, host: str = "127.0.0.1", path: str = "") -> None:
        self.host = host
        self._path = path
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    def routes(self, app: web.Application) -> None:
        """Add the fake's handlers to ``app``."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        """Base URL (``http://127.0.0.1:PORT`` + path); the server must be started."""
        if self._url is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._url

    async def start(self) -> str:
        """Listen on a free loopback port; returns :attr:`url`."""
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self._url = f"http://{host}:{port}{self._path}"
        return self._url

    async def close(self) -> None:
        """Stop the server."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
