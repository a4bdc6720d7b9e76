"""Deterministic call-group traffic for the benchmarks.

The mix follows what real call groups post: most messages name no address at all (chatter,
cashtags, emoji, links to X and Telegram channels); the rest carry a ``CA:`` line, a visible
link (DexScreener, pump.fun, Birdeye, GMGN), a hidden ``text_url`` link behind "Chart"/"Buy"
(dexscreener, Photon, trading-bot ``?start=`` links), or the address in a ``code`` entity.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import attrs
import base58

from callsbot.models import Entity

#: Shares of each message kind, per 100 messages.
MIX: dict[str, int] = {
    "chatter": 70,
    "ca_line": 10,
    "link": 8,
    "hidden_link": 6,
    "code": 6,
}

_CHAT = (
    "gm ser anyone watching this one chart looks clean volume picking up dev is based "
    "jeets everywhere aped a bag sending it to the moon holding strong rug incoming "
    "floor is in careful here liquidity locked socials active new ath soon wen binance "
    "good entry second leg took profits ngmi wagmi fading this one"
)
_WORDS = tuple(_CHAT.split())
_EMOJI = ("🚀", "🔥", "💎", "📈", "👀", "🐸", "✅", "⚠️", "💰", "🧬", "👇")
_CASHTAGS = ("$PEPE", "$WIF", "$BONK", "$POPCAT", "$MEW", "$SOL", "$GIGA")
_CHATTER_LINKS = (
    "https://x.com/someone/status/1790000000000000000",
    "https://t.me/+AbCdEfGhIjKl",
    "t.me/alpha_calls",
    "https://twitter.com/dev_account",
)


def random_address(rng: random.Random) -> str:
    """A base58 Solana address: the text of 32 random bytes (43 or 44 characters)."""
    return str(base58.b58encode(rng.randbytes(32)).decode())


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units (what Telegram entity offsets count)."""
    return sum(2 if ord(c) > 0xFFFF else 1 for c in text)


@attrs.frozen
class Message:
    """Text plus entities, as a Telegram handler would hand them over."""

    text: str
    entities: tuple[Entity, ...] = ()
    kind: str = "chatter"


@attrs.frozen
class Universe:
    """Addresses the traffic talks about.

    Attributes:
        tokens: mints named directly (``CA:`` lines, code entities, mint links).
        pairs: pool addresses named by DexScreener/Photon links; ``pairs[i]`` is a pool of
            ``tokens[i]`` (index wraps).
    """

    tokens: tuple[str, ...]
    pairs: tuple[str, ...]

    @classmethod
    def make(cls, rng: random.Random, tokens: int, pairs: int) -> Universe:
        return cls(
            tuple(random_address(rng) for _ in range(tokens)),
            tuple(random_address(rng) for _ in range(pairs)),
        )

    def pair_base(self, i: int) -> str:
        return self.tokens[i % len(self.tokens)]


def _sentence(rng: random.Random, lo: int = 3, hi: int = 14) -> str:
    words = rng.choices(_WORDS, k=rng.randint(lo, hi))
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words) + 1), rng.choice(_CASHTAGS))
    if rng.random() < 0.5:
        words.append(rng.choice(_EMOJI))
    return " ".join(words)


def _chatter(rng: random.Random) -> Message:
    lines = [_sentence(rng) for _ in range(rng.choice((1, 1, 1, 2, 3)))]
    if rng.random() < 0.1:
        lines.append(rng.choice(_CHATTER_LINKS))
    return Message("\n".join(lines))


def _ca_line(rng: random.Random, u: Universe) -> Message:
    token = rng.choice(u.tokens)
    emoji = rng.choice(_EMOJI)
    label = rng.choice(("CA:", "CA: ", "Contract: ", "ca - ", "🧬 CA:\n", "Token Address: "))
    head = f"{emoji} {rng.choice(_CASHTAGS)} {_sentence(rng, 2, 6)}"
    return Message(f"{head}\n\n{label}{token}\n\n{_sentence(rng, 2, 8)}", kind="ca_line")


def _link(rng: random.Random, u: Universe) -> Message:
    roll = rng.random()
    if roll < 0.35:
        url = f"https://dexscreener.com/solana/{rng.choice(u.pairs)}"
    elif roll < 0.6:
        url = f"https://pump.fun/coin/{rng.choice(u.tokens)}"
    elif roll < 0.8:
        url = f"https://birdeye.so/token/{rng.choice(u.tokens)}?chain=solana"
    else:
        url = f"https://gmgn.ai/sol/token/{rng.choice(u.tokens)}"
    return Message(f"{_sentence(rng, 2, 8)}\n{url}", kind="link")


def _hidden_link(rng: random.Random, u: Universe) -> Message:
    roll = rng.random()
    if roll < 0.4:
        target = f"https://dexscreener.com/solana/{rng.choice(u.pairs)}"
    elif roll < 0.7:
        target = f"https://t.me/solana_trojanbot?start=r-ref123-{rng.choice(u.tokens)}"
    else:
        target = f"https://photon-sol.tinyastro.io/en/lp/{rng.choice(u.pairs)}"
    head = f"{rng.choice(_EMOJI)} {rng.choice(_CASHTAGS)} {_sentence(rng, 2, 6)}\n"
    text = f"{head}📈 Chart | 💰 Buy"
    chart = head + "📈 "
    entities = [Entity("bold", 0, utf16_len(head) - 1)]
    entities.append(Entity("text_url", utf16_len(chart), len("Chart"), url=target))
    if rng.random() < 0.5:
        buy_at = utf16_len(head + "📈 Chart | 💰 ")
        entities.append(
            Entity(
                "text_url",
                buy_at,
                len("Buy"),
                url=f"https://t.me/bonkbot_bot?start=ref_abc_ca_{rng.choice(u.tokens)}",
            )
        )
    return Message(text, tuple(entities), kind="hidden_link")


def _code(rng: random.Random, u: Universe) -> Message:
    token = rng.choice(u.tokens)
    head = f"{rng.choice(_EMOJI)} New call: {rng.choice(_CASHTAGS)}\n"
    prefix = head + rng.choice(("CA: ", "", "👉 "))
    text = f"{prefix}{token}\n{_sentence(rng, 2, 8)}"
    entities = (
        Entity("bold", 0, utf16_len(head) - 1),
        Entity("code", utf16_len(prefix), len(token)),
    )
    return Message(text, entities, kind="code")


def generate(rng: random.Random, count: int, universe: Universe) -> list[Message]:
    """``count`` messages drawn from :data:`MIX`, naming addresses of ``universe``."""
    kinds: Sequence[str] = list(MIX)
    weights = [MIX[k] for k in kinds]
    out: list[Message] = []
    for kind in rng.choices(kinds, weights=weights, k=count):
        if kind == "chatter":
            out.append(_chatter(rng))
        elif kind == "ca_line":
            out.append(_ca_line(rng, universe))
        elif kind == "link":
            out.append(_link(rng, universe))
        elif kind == "hidden_link":
            out.append(_hidden_link(rng, universe))
        else:
            out.append(_code(rng, universe))
    return out
