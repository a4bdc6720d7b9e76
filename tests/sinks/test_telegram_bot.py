"""The Telegram sink and the HTML rendering, against a local fake of the Bot API."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callsbot.alert import Alert, render_html, telegram_length
from callsbot.clock import FakeClock
from callsbot.config import ConsensusSettings, TgBotSettings
from callsbot.errors import SinkError
from callsbot.models import Buy, MarketSnapshot
from callsbot.scoring import ScoreLine, consensus, score_card
from callsbot.sinks.telegram_bot import TelegramBotSink, retry_policy
from callsbot.testing.redis_server import free_port
from callsbot.testing.telegram_bot import (
    CHAT_ID,
    FAKE_TOKEN,
    FakeTelegramBot,
    Reply,
    server_error,
    too_many_requests,
    visible_text,
)

NOW = 1_700_000_000.0
PUMP_MINT = "9BB6NFEcjBCtnNLFko2FqVQBq8HHM13kCyYcdQbgpump"
PLAIN_MINT = "7GCihgDB8fe6KNjn2MYtkzZcRjQy3t9GHdC8uHYmW2hr"
PAIR = "Gz3K8xkFPXg3bsJx4m9V5zJbGpXj5r7Ck3m1b1a2c3d4"
HOSTILE = "<b>x</b>&<script>"


def make_alert(
    *,
    token: str = PUMP_MINT,
    name: str = "Moon Dog",
    symbol: str = "MDOG",
    groups: tuple[str, ...] = ("@a", "@b", "@c"),
    lines: tuple[ScoreLine, ...] | None = None,
    label: str | None = "Smart Whale",
) -> Alert:
    buy = Buy(
        tx_hash="5h6xBEauJ3PK6SWCZ1PGjBvj8vDdWG3KpwATGy1ARAXFSDwt8GFXM7W5Ncn16wmqokgpiKRLuS83KUxyZyv2sUYv",
        wallet="5tzFkiKscXHK5ZXCGbXZxdw7gTjjD1mBwuoFbhUvuAi9",
        wallet_label=label,
        token=token,
        symbol=symbol,
        name=name,
        usd=6200.0,
        ts=NOW,
        dex="pumpswap",
        chain="solana",
        first_interaction=True,
    )
    snapshot = MarketSnapshot(
        chain="solana",
        token=token,
        pair_address=PAIR,
        dex="pumpswap",
        name=name,
        symbol=symbol,
        price_usd=0.0004321,
        liquidity_usd=85_000.0,
        volume_h24=1_250_000.0,
        volume_h1=80_000.0,
        market_cap=432_100.0,
        fdv=432_100.0,
        pair_created_at=NOW - 7200,
        price_change_h1=12.0,
        price_change_h24=80.0,
    )
    cons = consensus(list(groups), heartbeat_age=1.0, settings=ConsensusSettings())
    lines = lines or (
        ScoreLine(2, "smart-money buy"),
        ScoreLine(2, "💰 large buy $6.20k"),
        ScoreLine(1, "💧 liquidity $85.0k"),
    )
    return Alert(buy, snapshot, score_card(lines, cons), NOW)


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
async def bot() -> AsyncIterator[FakeTelegramBot]:
    server = await FakeTelegramBot().start()
    yield server
    await server.close()


def sink_for(
    url: str, sleeps: Sleeps | None = None, *, token: str = FAKE_TOKEN, **kw: Any
) -> TelegramBotSink:
    settings = TgBotSettings(token=token, api_url=url, chat_id=CHAT_ID, **kw)
    # Waits of 0.25 s, then 0.5 s, without jitter: tests can tell them apart.
    retry = attrs.evolve(retry_policy(settings), wait_initial=0.25, wait_jitter=0.0)
    return TelegramBotSink(settings, clock=FakeClock(), sleep=sleeps or Sleeps(), retry=retry)


# -- rendering --------------------------------------------------------------------------------


def test_message_has_every_part() -> None:
    alert = make_alert()
    text = visible_text(render_html(alert))
    for part in (
        "Moon Dog",
        "$MDOG",
        PUMP_MINT,
        "MC: $432.1k",
        "Liquidity: $85.0k",
        "Vol 24h: $1.25M",
        "Price: $0.0004321",
        "Score: 7.0/10",
        "+2 smart-money buy",
        "+2 💰 large buy $6.20k",
        "+1 💧 liquidity $85.0k",
        "🤝 MULTI-BOT CONSENSUS: +2 (3 groups: @a, @b, @c)",
        "DexScreener",
        "pump.fun",
        "Smart Whale",
    ):
        assert part in text, part
    html = render_html(alert)
    assert f'href="https://dexscreener.com/solana/{PAIR}"' in html
    assert f'href="https://pump.fun/coin/{PUMP_MINT}"' in html
    assert "birdeye" not in html


def test_non_pump_mint_links_birdeye_and_solo_line() -> None:
    html = render_html(make_alert(token=PLAIN_MINT, groups=()))
    assert f'href="https://birdeye.so/token/{PLAIN_MINT}?chain=solana"' in html
    assert "pump.fun" not in html
    assert "⚠️ SOLO SIGNAL: -1 (no other groups)" in html


def test_hostile_name_is_escaped() -> None:
    alert = make_alert(name=HOSTILE, symbol="<i>", label="&amp;<a href=x>", groups=("@<b>",))
    html = render_html(alert)
    assert "<script>" not in html
    assert "&lt;b&gt;x&lt;/b&gt;&amp;&lt;script&gt;" in html
    shown = visible_text(html)  # raises like Telegram's "can't parse entities"
    assert HOSTILE in shown
    assert "$<i>" in shown
    assert "&amp;<a href=x>" in shown


def test_long_messages_are_cut_between_lines_not_inside_tags() -> None:
    many = tuple(ScoreLine(0.1, "&<>" * 130) for _ in range(60))
    html = render_html(make_alert(lines=many, name="N" * 5000))
    assert telegram_length(html) <= 4096
    text = visible_text(html)
    assert "more reason(s)" in text
    assert "MULTI-BOT CONSENSUS" in text  # consensus and links survive the cut
    assert "DexScreener" in text


@settings(max_examples=60, deadline=None)
@given(
    name=st.text(max_size=300),
    symbol=st.text(max_size=40),
    reasons=st.lists(st.text(max_size=600), max_size=30),
    groups=st.lists(st.text(min_size=1, max_size=40), max_size=20),
)
def test_any_input_renders_parseable_html_within_the_limit(
    name: str, symbol: str, reasons: list[str], groups: list[str]
) -> None:
    lines = tuple(ScoreLine(1, r) for r in reasons) or None
    html = render_html(make_alert(name=name, symbol=symbol, lines=lines, groups=tuple(groups)))
    assert telegram_length(html) <= 4096
    visible_text(html)


# -- sending ----------------------------------------------------------------------------------


async def test_send_posts_html_without_previews(bot: FakeTelegramBot) -> None:
    sink = sink_for(bot.url)
    await sink.send(make_alert(name=HOSTILE))
    await sink.aclose()
    [sent] = bot.sent
    assert sent["chat_id"] == CHAT_ID
    assert sent["parse_mode"] == "HTML"
    assert sent["link_preview_options"] == {"is_disabled": True}
    assert HOSTILE in sent["visible"]


async def test_429_retry_after_is_honoured(bot: FakeTelegramBot) -> None:
    bot.script = [too_many_requests(7)]
    sleeps = Sleeps()
    sink = sink_for(bot.url, sleeps)
    await sink.send(make_alert())
    await sink.aclose()
    assert sleeps.calls == [7.0]
    assert len(bot.sent) == 1
    assert bot.calls == 2


async def test_429_beyond_the_cap_fails_at_once(bot: FakeTelegramBot) -> None:
    bot.script = [too_many_requests(3600)]
    sleeps = Sleeps()
    sink = sink_for(bot.url, sleeps, max_retry_after_seconds=60)
    with pytest.raises(SinkError, match="rate limited"):
        await sink.send(make_alert())
    await sink.aclose()
    assert sleeps.calls == []


async def test_5xx_retries_are_bounded(bot: FakeTelegramBot) -> None:
    bot.script = [server_error()] * 5
    sleeps = Sleeps()
    sink = sink_for(bot.url, sleeps, max_attempts=3)
    with pytest.raises(SinkError, match="after 3 attempt"):
        await sink.send(make_alert())
    await sink.aclose()
    assert bot.calls == 3
    assert sleeps.calls == [0.25, 0.5]


async def test_5xx_then_success(bot: FakeTelegramBot) -> None:
    bot.script = [server_error()]
    sink = sink_for(bot.url)
    await sink.send(make_alert())
    await sink.aclose()
    assert len(bot.sent) == 1


async def test_bad_request_is_not_retried(bot: FakeTelegramBot) -> None:
    bot.script = [Reply(400, {"ok": False, "error_code": 400, "description": "Bad Request: x"})]
    sink = sink_for(bot.url)
    with pytest.raises(SinkError, match="Bad Request: x"):
        await sink.send(make_alert())
    await sink.aclose()
    assert bot.calls == 1


async def test_chat_migration_is_followed(bot: FakeTelegramBot) -> None:
    bot.script = [
        Reply(
            400,
            {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: group chat was upgraded to a supergroup chat",
                "parameters": {"migrate_to_chat_id": -100777},
            },
        )
    ]
    bot.chat_id = "-100777"
    sink = sink_for(bot.url)
    await sink.send(make_alert())
    await sink.aclose()
    assert bot.sent[0]["chat_id"] == "-100777"


async def test_rejected_token_never_leaks(
    bot: FakeTelegramBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "987654321:AAH-another-Secret-token"
    sink = sink_for(bot.url, token=secret)
    with pytest.raises(SinkError, match="CALLSBOT_TG_BOT_TOKEN") as info:
        await sink.send(make_alert())
    await sink.aclose()
    assert secret not in str(info.value)
    assert secret not in repr(info.value.__cause__)
    assert secret not in caplog.text
    assert secret not in repr(sink)


async def test_unreachable_api_redacts_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sink = sink_for(f"http://127.0.0.1:{free_port()}", max_attempts=2)
    with pytest.raises(SinkError) as info:
        await sink.send(make_alert())
    await sink.aclose()
    assert FAKE_TOKEN not in str(info.value)
    assert FAKE_TOKEN not in caplog.text
    assert "after 2 attempt" in str(info.value)


def test_redact() -> None:
    sink = sink_for("http://x")
    assert sink.redact(f"GET http://x/bot{FAKE_TOKEN}/sendMessage") == (
        "GET http://x/bot<redacted>/sendMessage"
    )


def test_needs_token_and_chat() -> None:
    with pytest.raises(ValueError, match="CALLSBOT_TG_BOT_TOKEN"):
        TelegramBotSink(TgBotSettings(chat_id="1"), clock=FakeClock())
    with pytest.raises(ValueError, match="chat_id"):
        TelegramBotSink(TgBotSettings(token="t"), clock=FakeClock())


async def test_rate_limit_is_per_chat(bot: FakeTelegramBot) -> None:
    sink = sink_for(bot.url, messages_per_minute=5)
    for _ in range(3):
        await sink.send(make_alert())
    await sink.aclose()
    limiter = sink._limiter(CHAT_ID)
    assert limiter.max_rate == 5
    assert limiter.time_period == 60
    assert not limiter.has_capacity(3)  # three of five used within the minute
    assert len(bot.sent) == 3


def test_settings_repr_hides_the_token() -> None:
    assert FAKE_TOKEN not in repr(TgBotSettings(token=FAKE_TOKEN))
    assert attrs.fields(TgBotSettings).token.metadata["secret"]


# -- message ids and replies (alert follow-ups) ----------------------------------------------


async def test_send_returns_the_message_id_and_reply_answers_it(bot: FakeTelegramBot) -> None:
    sink = sink_for(bot.url)
    try:
        first = await sink.send(make_alert())
        second = await sink.send(make_alert(name="Other"))
        reply = await sink.reply("📈 +1h 1.42× · peak <2.31×> & more", reply_to=first or "")
    finally:
        await sink.aclose()
    assert (first, second, reply) == ("1", "2", "3")
    (sent,) = bot.replies_to(1)
    assert sent["reply_to_message_id"] == 1
    assert sent["allow_sending_without_reply"] is True
    assert sent["visible"] == "📈 +1h 1.42× · peak <2.31×> & more"  # escaped, shown as written


async def test_a_reply_to_a_deleted_alert_is_still_sent(bot: FakeTelegramBot) -> None:
    sink = sink_for(bot.url)
    try:
        assert await sink.reply("📉 +24h 0.50×", reply_to="77") == "1"
        with pytest.raises(SinkError, match="cannot reply"):
            await sink.reply("x", reply_to="not-a-message-id")
    finally:
        await sink.aclose()
    assert bot.replies_to(77)[0]["visible"] == "📉 +24h 0.50×"
