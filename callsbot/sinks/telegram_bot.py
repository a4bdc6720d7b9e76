"""Alert sink: the Telegram Bot API's ``sendMessage``.

The bot token is part of every request URL (``/bot<token>/sendMessage``), so nothing here
ever formats the URL or an aiohttp exception into a log line or an error message without
passing it through :meth:`TelegramBotSink.redact` first (the HTTP client is given the token as
a secret and redacts its own messages too).
"""

from __future__ import annotations

import asyncio
import html
import logging
from typing import Any, NoReturn

import aiohttp
from aiolimiter import AsyncLimiter

from callsbot.alert import Alert, render_html
from callsbot.clock import Clock
from callsbot.config import TgBotSettings
from callsbot.errors import SinkError
from callsbot.net.http import ANY_STATUS, ErrorMap, JsonClient, Response
from callsbot.net.retry import Attempt, RetryPolicy, Sleep, retry_call

log = logging.getLogger(__name__)

TOKEN_ENV = "CALLSBOT_TG_BOT_TOKEN"
REDACTED = "<redacted>"


class _TryAgain(SinkError):
    """One attempt failed in a way another attempt may fix.

    Attributes:
        retry_after: seconds Telegram asked us to wait (429 ``retry_after``, or 0 to resend to
            a migrated chat at once); ``None`` to wait the policy's backoff.
    """

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def _retry_after(exc: BaseException) -> float | None:
    return exc.retry_after if isinstance(exc, _TryAgain) else None


#: Transport failures (already redacted by the client) are all worth another attempt; the
#: statuses are judged from Telegram's own error body (``expect=ANY_STATUS``).
_ERRORS = ErrorMap(timeout=_TryAgain, connection=_TryAgain, bad_body=_TryAgain)


def retry_policy(settings: TgBotSettings) -> RetryPolicy:
    """Retries of one message: ``max_attempts`` attempts, waits doubling from 1 s up to 30 s plus
    up to 0.5 s of jitter, unless Telegram says how long to wait."""
    return RetryPolicy(
        attempts=settings.max_attempts, wait_initial=1.0, wait_max=30.0, wait_jitter=0.5
    )


class TelegramBotSink:
    """Sends alerts to one chat through a bot.

    Args:
        settings: the ``[tg_bot]`` section; ``token`` and ``chat_id`` must be set.
        clock: "now" for the retries.
        session: an aiohttp session; the sink opens (and closes) its own when ``None``.
        sleep: pause between attempts (honours 429 ``retry_after``); tests pass a fake.
        retry: the retry policy of one message; :func:`retry_policy` of the settings when
            ``None``.

    Raises:
        ValueError: the token or the chat id is missing.
    """

    name = "telegram"

    def __init__(
        self,
        settings: TgBotSettings,
        *,
        clock: Clock,
        session: aiohttp.ClientSession | None = None,
        sleep: Sleep = asyncio.sleep,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not settings.token:
            raise ValueError(f"the Telegram bot token is not set: set {TOKEN_ENV}")
        if not settings.chat_id:
            raise ValueError("tg_bot.chat_id is not set")
        self._settings = settings
        self._token = settings.token
        self._clock = clock
        self._sleep = sleep
        self._retry = retry if retry is not None else retry_policy(settings)
        self._http = JsonClient(
            base_url=settings.api_url,
            name="telegram",
            timeout=settings.timeout_seconds,
            clock=clock,
            sleep=sleep,
            session=session,
            errors=_ERRORS,
            secrets=(settings.token,),
        )
        self._limiters: dict[str, AsyncLimiter] = {}
        self._chat_id: str = settings.chat_id

    def __repr__(self) -> str:
        return f"TelegramBotSink(chat_id={self._chat_id!r})"

    def redact(self, text: str) -> str:
        """``text`` with the bot token replaced by ``<redacted>``."""
        return text.replace(self._token, REDACTED)

    def _limiter(self, chat_id: str) -> AsyncLimiter:
        limiter = self._limiters.get(chat_id)
        if limiter is None:
            limiter = AsyncLimiter(self._settings.messages_per_minute, 60)
            self._limiters[chat_id] = limiter
        return limiter

    async def aclose(self) -> None:
        """Close the session if the sink opened it. Safe to call twice."""
        await self._http.aclose()

    async def send(self, alert: Alert) -> str | None:
        """Send ``alert`` rendered as HTML; return Telegram's message id (what replies name).

        Raises:
            SinkError: not delivered after the bounded retries (token redacted).
        """
        return await self.send_text(render_html(alert))

    async def reply(self, text: str, *, reply_to: str) -> str | None:
        """Send plain ``text`` as a reply to message ``reply_to`` of the chat (an alert's
        follow-up); it is sent even when that message is gone. Returns the new message's id.

        Raises:
            SinkError: not delivered after the bounded retries (token redacted).
        """
        try:
            target = int(reply_to)
        except ValueError:
            raise SinkError(f"telegram: cannot reply to message {reply_to!r}") from None
        return await self.send_text(html.escape(text, quote=False), reply_to=target)

    async def send_text(self, text: str, *, reply_to: int | None = None) -> str | None:
        """Send an already rendered HTML message (at most 4096 characters), optionally as a
        reply to message ``reply_to``; return its message id (``None`` if Telegram named none).

        Raises:
            SinkError: not delivered after the bounded retries (token redacted).
        """
        attempts = 0

        async def attempt(state: Attempt) -> str | None:
            nonlocal attempts
            attempts = state.number
            return await self._send_once(text, reply_to)

        try:
            sent: str | None = await retry_call(
                attempt,
                on=_TryAgain,
                policy=self._retry,
                clock=self._clock,
                sleep=self._sleep,
                wait_hint=_retry_after,
                name="telegram",
            )
        except _TryAgain as exc:
            raise SinkError(f"telegram: not delivered after {attempts} attempt(s): {exc}") from None
        return sent

    async def _send_once(self, text: str, reply_to: int | None) -> str | None:
        """One ``sendMessage``; the sent message's id.

        Raises:
            _TryAgain: worth another attempt (429, 5xx, unreadable answer, network, migration).
            SinkError: another attempt cannot help.
        """
        chat_id = self._chat_id
        payload: dict[str, Any] = {
            "chat_id": chat_id,
            "text": text,
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": True},
        }
        if reply_to is not None:
            payload["reply_to_message_id"] = reply_to
            payload["allow_sending_without_reply"] = True
        response = await self._http.request(
            "POST",
            f"/bot{self._token}/sendMessage",
            json_body=payload,
            expect=ANY_STATUS,
            limiter=self._limiter(chat_id),
            what="sendMessage",
        )
        doc = _json_object(response)
        if doc is not None and doc.get("ok") is True:
            result = doc.get("result")
            message_id = result.get("message_id") if isinstance(result, dict) else None
            ok_id = isinstance(message_id, int) and not isinstance(message_id, bool)
            return str(message_id) if ok_id else None
        self._judge(response.status, doc)

    def _judge(self, status: int, doc: dict[str, Any] | None) -> NoReturn:
        """Raise what a failed answer means: :class:`_TryAgain` or a final :class:`SinkError`."""
        description = self.redact(str((doc or {}).get("description") or ""))[:300]
        params = (doc or {}).get("parameters")
        params = params if isinstance(params, dict) else {}
        if status == 429 or (doc or {}).get("error_code") == 429:
            retry_after = params.get("retry_after")
            wait: float | None = None
            if isinstance(retry_after, int | float) and not isinstance(retry_after, bool):
                wait = max(0.0, float(retry_after))
                if wait > self._settings.max_retry_after_seconds:
                    raise SinkError(f"telegram: rate limited for {wait:.0f}s (429): {description}")
            raise _TryAgain(f"429 {description}", wait)
        migrate = params.get("migrate_to_chat_id")
        if isinstance(migrate, int) and not isinstance(migrate, bool):
            log.warning("telegram: chat %s moved to %s; sending there", self._chat_id, migrate)
            self._chat_id = str(migrate)
            raise _TryAgain(f"{status} chat migrated", 0.0)
        if status >= 500 or doc is None:
            raise _TryAgain(f"HTTP {status} {description}".strip())
        if status in (401, 404):
            raise SinkError(
                f"telegram: the bot token was rejected (HTTP {status}); check {TOKEN_ENV}"
            )
        raise SinkError(f"telegram: HTTP {status}: {description}")


def _json_object(response: Response) -> dict[str, Any] | None:
    """The answer's JSON object, ``None`` when the body is not one."""
    try:
        doc = response.json()
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None
