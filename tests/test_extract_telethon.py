"""entities_from_telethon + extract on real telethon.tl.types objects."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import base58
from telethon.tl.types import (
    Message,
    MessageEntityBold,
    MessageEntityCashtag,
    MessageEntityCode,
    MessageEntityCustomEmoji,
    MessageEntityPre,
    MessageEntityStrike,
    MessageEntityTextUrl,
    MessageEntityUrl,
    PeerChannel,
)

from callsbot.extract import entities_from_telethon, extract
from callsbot.models import Entity


def _key(tag: str) -> str:
    return base58.b58encode(hashlib.sha256(tag.encode()).digest()).decode()


MINT = _key("tl-mint")
MINT2 = _key("tl-mint-2")
PAIR = _key("tl-pair")
WALLET = _key("tl-wallet")


def u16(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def at(text: str, visible: str) -> tuple[int, int]:
    i = text.index(visible)
    return u16(text[:i]), u16(visible)


def message(text: str, entities: list[object]) -> Message:
    return Message(
        id=42,
        peer_id=PeerChannel(channel_id=1234567890),
        date=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        message=text,
        entities=entities,
    )


def test_real_message_with_astral_emojis_before_entities() -> None:
    text = f"🚀🔥 $PEPE 🔥🚀\n🧬 CA: {MINT}\n📈 Chart | 💰 Buy\nDev wallet 👇\n{WALLET}"
    chart = at(text, "Chart")
    buy = at(text, "Buy")
    code = at(text, MINT)
    cashtag = at(text, "$PEPE")
    msg = message(
        text,
        [
            MessageEntityCashtag(*cashtag),
            MessageEntityCode(*code),
            MessageEntityTextUrl(*chart, url=f"https://dexscreener.com/solana/{PAIR}"),
            MessageEntityTextUrl(*buy, url=f"https://t.me/solana_trojanbot?start=r-abc-{MINT2}"),
            MessageEntityBold(0, 2),
        ],
    )
    ents = entities_from_telethon(msg)
    assert ents == (
        Entity("cashtag", *cashtag),
        Entity("code", *code),
        Entity("text_url", *chart, url=f"https://dexscreener.com/solana/{PAIR}"),
        Entity("text_url", *buy, url=f"https://t.me/solana_trojanbot?start=r-abc-{MINT2}"),
        Entity("bold", 0, 2),
    )
    # The astral emojis really shift UTF-16 offsets away from Python indices.
    assert chart[0] > text.index("Chart")
    got = extract(msg.message, ents)
    assert got.mints == (MINT, MINT2)
    assert got.pairs == (PAIR,)
    assert got.evm == ()


def test_offsets_stay_in_utf16_units() -> None:
    """Each astral emoji counts 2: "Chart" starts at Python index 5 but UTF-16 offset 9."""
    text = "🚀🚀🚀🚀 Chart"
    msg = message(
        text, [MessageEntityTextUrl(*at(text, "Chart"), url=f"https://pump.fun/coin/{MINT}")]
    )
    (ent,) = entities_from_telethon(msg)
    assert ent.offset == 9
    assert extract(msg.message, (ent,)).mints == (MINT,)


def test_url_and_pre_entities() -> None:
    text = (
        f"🔗 https://pump.fun/coin/{MINT}\n```\n{MINT2}\n```\nProfile 👤 pump.fun/profile/{WALLET}"
    )
    visible_url = f"https://pump.fun/coin/{MINT}"
    bare_url = f"pump.fun/profile/{WALLET}"
    msg = message(
        text,
        [
            MessageEntityUrl(*at(text, visible_url)),
            MessageEntityPre(*at(text, MINT2), language=""),
            MessageEntityUrl(*at(text, bare_url)),
            MessageEntityStrike(0, 1),
        ],
    )
    ents = entities_from_telethon(msg)
    assert [e.type for e in ents] == ["url", "pre", "url", "strikethrough"]
    assert all(e.url is None for e in ents)
    got = extract(msg.message, ents)
    assert got.mints == (MINT, MINT2)
    assert got.pairs == ()


def test_custom_emoji_before_hidden_link() -> None:
    text = "🟢 CA below 👇 Trade"
    msg = message(
        text,
        [
            MessageEntityCustomEmoji(0, 2, document_id=5368324170671202286),
            MessageEntityTextUrl(*at(text, "Trade"), url=f"https://axiom.trade/t/{MINT}/@ref"),
        ],
    )
    ents = entities_from_telethon(msg)
    assert ents[0] == Entity("custom_emoji", 0, 2)
    assert extract(msg.message, ents).mints == (MINT,)


def test_extract_accepts_telethon_entities_directly() -> None:
    text = f"🚀 Chart\nCA: {MINT}"
    msg = message(
        text,
        [MessageEntityTextUrl(*at(text, "Chart"), url=f"https://dexscreener.com/solana/{PAIR}")],
    )
    got = extract(msg.message, msg.entities)
    assert got.mints == (MINT,)
    assert got.pairs == (PAIR,)


def test_message_without_entities() -> None:
    msg = message(f"CA: {MINT}", [])
    msg.entities = None
    assert entities_from_telethon(msg) == ()
    assert extract(msg.message, entities_from_telethon(msg)).mints == (MINT,)
