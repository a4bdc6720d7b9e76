"""Alert sink: the Telegram Bot API's ``sendMessage``.

The bot token is part of every request URL (``/bot<token>/sendMessage``), so nothing here
ever formats the URL or an aiohttp exception into a log line or an error message without
passing it through :meth:`TelegramBotSink.redact` first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiolimiter import AsyncLimiter

from callsbot.alert import Alert, render_html
from callsbot.config import TgBotSettings
from callsbot.errors import SinkError

log = logging.getLogger(__name__)

TOKEN_ENV = "CALLSBOT_TG_BOT_TOKEN"
REDACTED = "<redacted>"

Sleep = Callable[[float], Awaitable[None]]


def _default_backoff(attempt: int) -> float:
    return float(min(2 ** (attempt - 1), 30)) + random.uniform(0, 0.5)


class TelegramBotSink:
    """Sends alerts to one chat through a bot.

    Args:
        settings: the ``[tg_bot]`` section; ``token`` and ``chat_id`` must be set.
        session: an aiohttp session; the sink opens (and closes) its own when ``None``.
        sleep: pause between attempts (honours 429 ``retry_after``); tests pass a fake.
        backoff: seconds to wait before attempt ``n + 1`` after a 5xx or a network error.

    Raises:
        ValueError: the token or the chat id is missing.
    """

    name = "telegram"

    def __init__(
        self,
        settings: TgBotSettings,
        *,
        session: aiohttp.ClientSession | None = None,
        sleep: Sleep = asyncio.sleep,
        backoff: Callable[[int], float] = _default_backoff,
    ) -> None:
        if not settings.token:
            raise ValueError(f"the Telegram bot token is not set: set {TOKEN_ENV}")
        if not settings.chat_id:
            raise ValueError("tg_bot.chat_id is not set")
        self._settings = settings
        self._token = settings.token
        self._session = session
        self._own_session = session is None
        self._sleep = sleep
        self._backoff = backoff
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
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, alert: Alert) -> None:
        """Send ``alert`` rendered as HTML.

        Raises:
            SinkError: not delivered after the bounded retries (token redacted).
        """
        await self.send_text(render_html(alert))

    async def send_text(self, text: str) -> None:
        """Send an already rendered HTML message (at most 4096 characters).

        Raises:
            SinkError: not delivered after the bounded retries (token redacted).
        """
        attempts = self._settings.max_attempts
        last = "no attempt made"
        for attempt in range(1, attempts + 1):
            chat_id = self._chat_id
            async with self._limiter(chat_id):
                result = await self._post(chat_id, text)
            status, doc, error = result
            if error is None and doc is not None and doc.get("ok") is True:
                return
            wait, last = self._judge(attempt, status, doc, error)
            if attempt == attempts:
                break
            log.warning(
                "telegram: attempt %d/%d failed (%s); retrying in %.1fs",
                attempt,
                attempts,
                last,
                wait,
            )
            await self._sleep(wait)
        raise SinkError(f"telegram: not delivered after {attempts} attempt(s): {last}")

    def _judge(
        self, attempt: int, status: int, doc: dict[str, Any] | None, error: str | None
    ) -> tuple[float, str]:
        """Seconds to wait before retrying, and what went wrong; raises when retrying is futile."""
        attempt_wait = self._backoff(attempt)
        if error is not None:
            return attempt_wait, error
        description = self.redact(str((doc or {}).get("description") or ""))[:300]
        params = (doc or {}).get("parameters")
        params = params if isinstance(params, dict) else {}
        if status == 429 or (doc or {}).get("error_code") == 429:
            retry_after = params.get("retry_after")
            if isinstance(retry_after, int | float) and not isinstance(retry_after, bool):
                wait = max(0.0, float(retry_after))
            else:
                wait = attempt_wait
            if wait > self._settings.max_retry_after_seconds:
                raise SinkError(f"telegram: rate limited for {wait:.0f}s (429): {description}")
            return wait, f"429 {description}"
        migrate = params.get("migrate_to_chat_id")
        if isinstance(migrate, int) and not isinstance(migrate, bool):
            log.warning("telegram: chat %s moved to %s; sending there", self._chat_id, migrate)
            self._chat_id = str(migrate)
            return 0.0, f"{status} chat migrated"
        if status >= 500 or doc is None:
            return attempt_wait, f"HTTP {status} {description}".strip()
        if status in (401, 404):
            raise SinkError(
                f"telegram: the bot token was rejected (HTTP {status}); check {TOKEN_ENV}"
            )
        raise SinkError(f"telegram: HTTP {status}: {description}")

    async def _post(self, chat_id: str, text: str) -> tuple[int, dict[str, Any] | None, str | None]:
        """One ``sendMessage``: (HTTP status, parsed body, network error) — never raises."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        url = f"{self._settings.api_url.rstrip('/')}/bot{self._token}/sendMessage"
        payload = {
            "chat_id": chat_id,
            "text": text,
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": True},
        }
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout_seconds)
        try:
            async with self._session.post(url, json=payload, timeout=timeout) as resp:
                status = resp.status
                raw = await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            return 0, None, self.redact(f"{exc.__class__.__name__}: {exc}")
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return status, None, None
        return status, doc if isinstance(doc, dict) else None, None
