"""Hostile messages at Telegram's limits: 4,096 UTF-16 code units of text, 100 entities.

Each shape pushes one part of :func:`callsbot.extract.extract` as far as a real message can:
every address distinct (so no cache helps), every entity used, labels and links everywhere.
``make bench`` reports the slowest shape's per-message cost (case 8).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from urllib.parse import quote

import attrs

from bench.messages import random_address, utf16_len
from callsbot.extract import Entity

#: Telegram's limits for one message.
MAX_UTF16 = 4096
MAX_ENTITIES = 100


@attrs.frozen
class Shape:
    """One hostile message."""

    name: str
    text: str
    entities: tuple[Entity, ...] = ()


def _fill(rng: random.Random, piece: Callable[[random.Random], str], sep: str = "\n") -> str:
    """As many ``piece``s as fit in :data:`MAX_UTF16` code units."""
    parts: list[str] = []
    size = 0
    while True:
        nxt = piece(rng) + sep
        if size + utf16_len(nxt) > MAX_UTF16:
            break
        parts.append(nxt)
        size += utf16_len(nxt)
    return "".join(parts)


def _evm(rng: random.Random) -> str:
    return "0x" + rng.randbytes(20).hex()


def _hidden_links(rng: random.Random, url: Callable[[random.Random], str]) -> Shape:
    """100 one-word ``text_url`` entities, each hiding a distinct link, between addresses."""
    chunks: list[str] = []
    entities: list[Entity] = []
    size = 0
    for _ in range(MAX_ENTITIES):
        word = "📈 Chart "
        entities.append(Entity("text_url", size + utf16_len("📈 "), 5, url(rng)))
        chunk = word + random_address(rng) + "\n"
        chunks.append(chunk)
        size += utf16_len(chunk)
    text = "".join(chunks)
    return Shape("", text[: _cut(text)], tuple(entities))


def _cut(text: str) -> int:
    """Index where ``text`` reaches :data:`MAX_UTF16` code units."""
    units = 0
    for i, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > MAX_UTF16:
            return i
    return len(text)


def shapes(seed: int) -> list[Shape]:
    """Every hostile shape, built from ``seed`` (fresh addresses each call)."""
    rng = random.Random(seed)
    out: list[Shape] = []

    def add(name: str, shape: Shape) -> None:
        assert utf16_len(shape.text) <= MAX_UTF16, name
        assert len(shape.entities) <= MAX_ENTITIES, name
        out.append(attrs.evolve(shape, name=name))

    add("labelled mints", Shape("", _fill(rng, lambda r: "CA: " + random_address(r))))
    add("bare mints", Shape("", _fill(rng, random_address, " ")))
    add(
        "mint links",
        Shape("", _fill(rng, lambda r: "https://pump.fun/coin/" + random_address(r), " ")),
    )
    add(
        "pair links",
        Shape(
            "",
            _fill(
                rng,
                lambda r: f"dexscreener.com/solana/{random_address(r)}?maker={random_address(r)}",
            ),
        ),
    )
    add(
        "share links",
        Shape(
            "",
            _fill(
                rng,
                lambda r: (
                    "https://t.me/share/url?url="
                    + quote(f"https://dexscreener.com/solana/{random_address(r)}", safe="")
                ),
            ),
        ),
    )
    add("evm with hints", Shape("", _fill(rng, lambda r: f"#base #eth Chain: BSC {_evm(r)}")))
    add(
        "label phrases",
        Shape("", _fill(rng, lambda r: "Dev wallet CA token pair pool · " + random_address(r))),
    )
    add(
        "cyrillic labels",
        Shape("", _fill(rng, lambda r: "Популярный контракт токена: " + random_address(r))),
    )
    add(
        "zero-width split",
        Shape("", _fill(rng, lambda r: "\u200b".join(random_address(r)))),
    )
    add(
        "hidden pair links",
        _hidden_links(rng, lambda r: f"https://dexscreener.com/solana/{random_address(r)}"),
    )
    add(
        "hidden bot links",
        _hidden_links(
            rng,
            lambda r: (
                "https://t.me/solana_trojanbot?start=r-ref_"
                + "-".join(random_address(r) for _ in range(8))
            ),
        ),
    )
    emoji = "🚀" * 1000
    add(
        "astral text, 100 entities",
        Shape(
            "",
            emoji + "CA: " + random_address(rng),
            tuple(
                Entity("text_url", 2 * i * 9, 2, f"https://pump.fun/coin/{random_address(rng)}")
                for i in range(MAX_ENTITIES)
            ),
        ),
    )
    return out
