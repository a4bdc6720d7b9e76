"""The one JSON HTTP client: session ownership, timeouts, a limiter, a 429 cool-down, error mapping.

:class:`JsonClient` sends one request per call and never retries by itself: callers wrap their
calls in :func:`callsbot.net.retry.retry_call` with the exception types *they* consider worth
another attempt. What it does for every request:

1. waits out the shared 429 cool-down, if the client has one (failing fast with the adapter's
   "cooling down" error when the cool-down outlasts the caller's deadline);
2. takes a slot from the rate limiter, if any;
3. sends with an explicit total timeout;
4. maps every failure into the adapter's error vocabulary through an :class:`ErrorMap`:
   429, 5xx, timeouts, broken connections and bodies that are not JSON become
   :class:`~callsbot.errors.Unavailable` kinds; 401/403 become a
   :class:`~callsbot.errors.CredentialsRejected` kind when the adapter says so.

Secrets (an API key header, a bot token in the URL) never reach a log line or an error message:
the client names requests by ``what`` (never the URL) and redacts every configured secret from
whatever text it produces, including aiohttp's own exception messages.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Container, Mapping, Sequence
from typing import Any, Final, Literal

import aiohttp
import attrs
from aiolimiter import AsyncLimiter

from callsbot.clock import Clock
from callsbot.errors import CredentialsRejected, Unavailable
from callsbot.net.retry import Sleep, parse_retry_after
from callsbot.tasks import Closing

log = logging.getLogger(__name__)

#: What one request came to, as counted by ``on_outcome``.
Outcome = Literal[
    "ok",
    "rate_limited",
    "server_error",
    "http_error",
    "rejected",
    "timeout",
    "connection_error",
    "bad_body",
    "cooldown",
]

#: ``expect=ANY_STATUS`` hands every answer back to the caller (who reads its own error body).
ANY_STATUS: Final = range(100, 600)

REDACTED = "<redacted>"


# --------------------------------------------------------------------------------------------
# The generic error kinds (an adapter without its own vocabulary gets these).


class HttpUnavailable(Unavailable):
    """A request could not get a usable answer right now."""


class HttpRateLimited(HttpUnavailable):
    """HTTP 429. ``retry_after`` is the server's Retry-After in seconds, if it sent one."""

    def __init__(self, retry_after: float | None) -> None:
        hint = "no Retry-After" if retry_after is None else f"Retry-After {retry_after:g}s"
        super().__init__(f"rate limited (429, {hint})")
        self.retry_after = retry_after


class HttpCoolingDown(HttpUnavailable):
    """A previous 429 cool-down outlasts the caller's deadline; nothing was sent."""

    def __init__(self, remaining: float) -> None:
        super().__init__(f"cooling down after 429 for another {remaining:.1f}s")
        self.remaining = remaining


class HttpServerError(HttpUnavailable):
    """HTTP 5xx."""


class HttpStatusError(HttpUnavailable):
    """Another unexpected status (asking again would get the same answer)."""


class HttpTimeout(HttpUnavailable):
    """No complete response within the timeout."""


class HttpConnectionError(HttpUnavailable):
    """Could not connect, or the connection broke before the response started."""


class HttpBadBody(HttpUnavailable):
    """The body was cut off, not JSON, or not a JSON object or array."""


class HttpRejected(CredentialsRejected):
    """HTTP 401/403: the peer refused our credential."""


# --------------------------------------------------------------------------------------------
# Values.


@attrs.frozen
class Response:
    """One complete HTTP answer.

    Attributes:
        status: the HTTP status.
        headers: the response headers (case-insensitive lookups).
        body: the whole body.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON.

        Raises:
            ValueError: the body is not UTF-8 JSON.
        """
        return json.loads(self.body)


def _status_message(response: Response) -> str:
    return f"HTTP {response.status}"


@attrs.frozen
class ErrorMap:
    """The exception an adapter raises for each way a request can fail.

    Each field builds the exception from what the client knows: a message (already redacted)
    for transport failures, the :class:`Response` for status failures, the Retry-After seconds
    for a 429 and the remaining seconds for a cool-down. Adapters point these at their own
    classes so their callers keep catching what they always caught.

    Attributes:
        timeout: no complete answer in time.
        connection: could not connect or the connection broke.
        bad_body: body cut off mid-way, not JSON, or not an object or array.
        rate_limited: HTTP 429.
        cooling_down: a 429 cool-down outlasts the caller's deadline.
        server_error: HTTP 5xx.
        status: any other status the caller did not ``expect``.
        rejected: HTTP 401/403; ``None`` treats them like any other unexpected status.
    """

    timeout: Callable[[str], Exception] = HttpTimeout
    connection: Callable[[str], Exception] = HttpConnectionError
    bad_body: Callable[[str], Exception] = HttpBadBody
    rate_limited: Callable[[float | None], Exception] = HttpRateLimited
    cooling_down: Callable[[float], Exception] = HttpCoolingDown
    server_error: Callable[[Response], Exception] = lambda r: HttpServerError(_status_message(r))
    status: Callable[[Response], Exception] = lambda r: HttpStatusError(_status_message(r))
    rejected: Callable[[Response], Exception] | None = None


@attrs.frozen
class CooldownPolicy:
    """How long every request of a client pauses after a 429.

    Attributes:
        default_seconds: the pause when the 429 carries no usable Retry-After.
        max_seconds: the longest pause, whatever the server asks.
    """

    default_seconds: float
    max_seconds: float


# --------------------------------------------------------------------------------------------
# The client.


class JsonClient(Closing):
    """A JSON-over-HTTP client for one peer, over one :class:`aiohttp.ClientSession`.

    Args:
        base_url: prefix of every request path.
        name: how log lines name the peer.
        timeout: total seconds one request may take, body included.
        clock: "now" for cool-downs, deadlines and Retry-After dates.
        sleep: how to wait out a cool-down; tests pass one that moves a FakeClock.
        session: a session to use and leave open; when ``None`` the client creates one on the
            first request and closes it in :meth:`aclose`.
        headers: sent with every request (also on a session that was handed in).
        limiter: every request takes a slot from it first; ``None`` for no limit.
        cooldown: after a 429, every request of this client waits this pause out first;
            ``None`` leaves 429 pacing to the caller.
        errors: the exception built for each failure; the ``Http*`` classes by default.
        secrets: strings never to appear in a log line or an error message.
        on_outcome: called once per request with its :data:`Outcome` (for metrics).
    """

    def __init__(
        self,
        *,
        base_url: str,
        name: str,
        timeout: float,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        session: aiohttp.ClientSession | None = None,
        headers: Mapping[str, str] | None = None,
        limiter: AsyncLimiter | None = None,
        cooldown: CooldownPolicy | None = None,
        errors: ErrorMap | None = None,
        secrets: Sequence[str | None] = (),
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self.name = name
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self._sleep = sleep
        self._session = session
        self._owns_session = session is None
        self._headers = dict(headers or {})
        self.limiter = limiter
        self._cooldown = cooldown
        self._cooldown_until = 0.0
        self._errors = errors or ErrorMap()
        self._secrets = tuple(s for s in secrets if s)
        self._on_outcome = on_outcome
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the session if this client created it; later requests raise. Idempotent."""
        self._closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The session in use; ``None`` before the first request of an owning client."""
        return self._session

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError(f"{self.name}: the HTTP client is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    # -- the shared 429 cool-down ---------------------------------------------------------------

    @property
    def cooldown_until(self) -> float:
        """Clock time at which the 429 cool-down ends (in the past when there is none)."""
        return self._cooldown_until

    @property
    def cooldown_remaining(self) -> float:
        """Seconds until the 429 cool-down ends (0 when there is none)."""
        return max(self._cooldown_until - self._clock.time(), 0.0)

    def cooldown_hint(self, exc: BaseException) -> float | None:
        """A :data:`~callsbot.net.retry.WaitHint`: the cool-down still to wait, if any.

        Whatever failed, the next attempt cannot go out before the cool-down ends, so a retry
        run waits exactly that long (and its deadline sees the wait).
        """
        remaining = self.cooldown_remaining
        return remaining if remaining > 0 else None

    def _start_cooldown(self, retry_after: float | None) -> float:
        assert self._cooldown is not None
        pause = self._cooldown.default_seconds if retry_after is None else retry_after
        pause = min(pause, self._cooldown.max_seconds)
        self._cooldown_until = max(self._cooldown_until, self._clock.time() + pause)
        return pause

    async def _wait_cooldown(self, deadline: float | None) -> None:
        # A loop, because a concurrent request's 429 may extend the cool-down while we sleep.
        while (remaining := self.cooldown_remaining) > 0:
            if deadline is not None and self._clock.time() + remaining > deadline:
                self._count("cooldown")
                raise self._errors.cooling_down(remaining)
            await self._sleep(remaining)

    # -- requests -------------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """``text`` with every configured secret replaced by ``<redacted>``."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def _count(self, outcome: Outcome) -> None:
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        expect: Container[int] = (200,),
        deadline: float | None = None,
        limiter: AsyncLimiter | None = None,
        what: str | None = None,
    ) -> Response:
        """Send one request; the complete response when its status is in ``expect``.

        Args:
            method: ``GET``, ``POST``...
            path: appended to the base URL.
            params: query parameters.
            json_body: sent as a JSON body when not ``None``.
            expect: statuses handed back as answers; any other status is mapped to an error.
                :data:`ANY_STATUS` hands back every answer.
            deadline: clock time after which the caller no longer wants an answer: a 429
                cool-down ending later fails fast instead of being waited out.
            limiter: the rate limiter for this request, instead of the client's.
            what: how log lines and errors name the request (``path`` when ``None``).

        Raises:
            Exception: the :class:`ErrorMap`'s exception for the failure.
            RuntimeError: the client was closed.
        """
        what = self.redact(what if what is not None else path)
        response = await self._send(
            method, path, params, json_body, expect, deadline, limiter, what
        )
        self._count("ok")
        return response

    async def get_json(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        deadline: float | None = None,
        what: str | None = None,
    ) -> Any:
        """GET ``path`` and decode the JSON object or array it answers with (status 200).

        Raises:
            Exception: the :class:`ErrorMap`'s exception for the failure; ``bad_body`` when the
                body is not JSON or is a bare scalar.
            RuntimeError: the client was closed.
        """
        what = self.redact(what if what is not None else path)
        response = await self._send("GET", path, params, None, (200,), deadline, None, what)
        try:
            body = response.json()
        except ValueError:
            self._count("bad_body")
            log.debug("%s: body of %s is not JSON (%d bytes)", self.name, what, len(response.body))
            raise self._errors.bad_body(f"body is not JSON ({len(response.body)} bytes)") from None
        if not isinstance(body, list | dict):
            self._count("bad_body")
            raise self._errors.bad_body(f"unexpected body shape: {type(body).__name__}")
        self._count("ok")
        return body

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        json_body: Any,
        expect: Container[int],
        deadline: float | None,
        limiter: AsyncLimiter | None,
        what: str,
    ) -> Response:
        await self._wait_cooldown(deadline)
        limiter = limiter if limiter is not None else self.limiter
        if limiter is not None:
            await limiter.acquire()
        session = self._ensure_session()
        try:
            async with session.request(
                method,
                self._base + path,
                params=params,
                json=json_body,
                headers=self._headers,
                timeout=self._timeout,
            ) as resp:
                # CIMultiDictProxy: immutable, and lookups stay case-insensitive.
                response = Response(resp.status, resp.headers, await resp.read())
        except TimeoutError:
            self._count("timeout")
            seconds = self._timeout.total
            log.debug("%s: no answer within %gs on %s", self.name, seconds, what)
            raise self._errors.timeout(f"timed out after {seconds:g}s") from None
        except aiohttp.ClientPayloadError as exc:
            self._count("bad_body")
            problem = self.redact(str(exc))
            log.debug("%s: broken body on %s: %s", self.name, what, problem)
            raise self._errors.bad_body(f"broken body: {problem}") from None
        except aiohttp.ClientError as exc:
            self._count("connection_error")
            problem = self.redact(f"{exc.__class__.__name__}: {exc}")
            log.debug("%s: request to %s failed: %s", self.name, what, problem)
            raise self._errors.connection(f"connection failed: {problem}") from None
        if response.status in expect:
            return response
        raise self._status_error(response, what)

    def _status_error(self, response: Response, what: str) -> Exception:
        status = response.status
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock.time())
            self._count("rate_limited")
            if self._cooldown is not None:
                pause = self._start_cooldown(retry_after)
                log.warning("%s: 429 on %s; all requests pause %.1fs", self.name, what, pause)
            else:
                log.debug("%s: 429 on %s", self.name, what)
            return self._errors.rate_limited(retry_after)
        if status in (401, 403) and self._errors.rejected is not None:
            self._count("rejected")
            return self._errors.rejected(response)
        if status >= 500:
            self._count("server_error")
            log.debug("%s: HTTP %d on %s", self.name, status, what)
            return self._errors.server_error(response)
        self._count("http_error")
        log.debug("%s: HTTP %d on %s", self.name, status, what)
        return self._errors.status(response)
