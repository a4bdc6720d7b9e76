"""A local Telegram Bot API (aiohttp.web): ``POST /bot<token>/sendMessage``, replies included.

It answers like the real API: ``{"ok":true,"result":Message}`` or
``{"ok":false,"error_code":N,"description":...,"parameters":{...}}``, and it checks what the
real one checks for HTML messages: supported tags only, balanced tags, no bare ``&``/``<``,
and at most 4096 characters of text after entity parsing.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import attrs
from aiohttp import web
from aiohttp.test_utils import TestServer

FAKE_TOKEN = "123456789:AAE-fake_bot-token-Sec7et"
CHAT_ID = "-1001234567890"

_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre",
    "tg-spoiler", "span", "blockquote", "tg-emoji",
}  # fmt: skip
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")


class HtmlError(ValueError):
    pass


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _TAGS:
            raise HtmlError(f'Unsupported start tag "{tag}"')
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            raise HtmlError(f'Can\'t find end tag corresponding to start tag "{tag}"')
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if "<" in data or ">" in data:
            raise HtmlError("Unexpected < or > in text")
        self.text.append(data)

    def handle_entityref(self, name: str) -> None:
        self.text.append(html.unescape(f"&{name};"))

    def handle_charref(self, name: str) -> None:
        self.text.append(html.unescape(f"&#{name};"))


def visible_text(text: str) -> str:
    """The message as Telegram shows it, or :class:`HtmlError` like Telegram's 400."""
    for m in re.finditer(r"&", text):
        if not _ENTITY.match(text, m.start()):
            raise HtmlError(f"Unsupported entity at byte offset {m.start()}")
    checker = _Checker()
    checker.feed(text)
    checker.close()
    if checker.stack:
        raise HtmlError(f'Can\'t find end tag corresponding to start tag "{checker.stack[-1]}"')
    if checker.rawdata:
        raise HtmlError("Unexpected end of text")
    return "".join(checker.text)


@attrs.define
class Reply:
    """One scripted response (served before normal handling)."""

    status: int
    body: dict[str, Any]


def too_many_requests(retry_after: int) -> Reply:
    return Reply(
        429,
        {
            "ok": False,
            "error_code": 429,
            "description": f"Too Many Requests: retry after {retry_after}",
            "parameters": {"retry_after": retry_after},
        },
    )


def server_error() -> Reply:
    return Reply(502, {"ok": False, "error_code": 502, "description": "Bad Gateway"})


def _error(status: int, description: str) -> web.Response:
    body = {"ok": False, "error_code": status, "description": description}
    return web.json_response(body, status=status)


class FakeTelegramBot:
    """The fake Bot API; delivered messages land in :attr:`sent` (message id = position + 1).

    A reply (``reply_to_message_id``) must name a message sent before, unless it says
    ``allow_sending_without_reply``; :meth:`replies_to` lists the replies to one message.
    :meth:`hang_next` makes the next requests hang, never answered, until :meth:`release` (or
    :meth:`close`): a send that a process is killed in the middle of.
    """

    def __init__(self, token: str = FAKE_TOKEN, chat_id: str = CHAT_ID) -> None:
        self.token = token
        self.chat_id = chat_id
        self.sent: list[dict[str, Any]] = []
        #: Called with each delivered message's body (benchmarks time arrivals with it).
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self.script: list[Reply] = []
        self.calls = 0
        self.hanging = 0  # requests held right now
        self._hang = 0
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/bot{token}/sendMessage", self._send_message)
        self._server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self._server.make_url("")).rstrip("/")

    async def start(self) -> FakeTelegramBot:
        await self._server.start_server(access_log=None)
        return self

    async def close(self) -> None:
        self._release.set()
        await self._server.close()

    def replies_to(self, message_id: int) -> list[dict[str, Any]]:
        """The messages sent as replies to ``message_id``, in order."""
        return [m for m in self.sent if m.get("reply_to_message_id") == message_id]

    def hang_next(self, times: int = 1) -> None:
        """Hold the next ``times`` requests unanswered (and undelivered) until :meth:`release`."""
        self._hang += times
        self._release.clear()

    def release(self) -> None:
        """Let held requests go: each is answered 502, and nothing of theirs was delivered."""
        self._hang = 0
        self._release.set()

    async def _send_message(self, request: web.Request) -> web.Response:
        self.calls += 1
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        if self._hang:
            self._hang -= 1
            self.hanging += 1
            try:
                await self._release.wait()
            finally:
                self.hanging -= 1
            return _error(502, "Bad Gateway")
        if self.script:
            reply = self.script.pop(0)
            return web.json_response(reply.body, status=reply.status)
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "Bad Request: invalid JSON")
        if str(body.get("chat_id")) != self.chat_id:
            return _error(400, "Bad Request: chat not found")
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "Bad Request: message text is empty")
        visible = text
        if body.get("parse_mode") == "HTML":
            try:
                visible = visible_text(text)
            except HtmlError as exc:
                return _error(400, f"Bad Request: can't parse entities: {exc}")
        if len(visible.encode("utf-16-le")) // 2 > 4096:
            return _error(400, "Bad Request: message is too long")
        reply_to = body.get("reply_to_message_id")
        if reply_to is not None:
            known = isinstance(reply_to, int) and 1 <= reply_to <= len(self.sent)
            if not known and not body.get("allow_sending_without_reply"):
                return _error(400, "Bad Request: message to be replied not found")
        self.sent.append({**body, "visible": visible})
        for listener in self.listeners:
            listener(body)
        message = {
            "message_id": len(self.sent),
            "date": 1_700_000_000,
            "chat": {"id": int(self.chat_id), "title": "alerts", "type": "channel"},
            "text": visible,
        }
        return web.json_response({"ok": True, "result": message})
