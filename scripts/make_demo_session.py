"""Writes callsbot/demo/data/session.json: the recorded session that `make demo` replays.

The story is written out below by hand (who calls what, when, which buys Cielo reports, what
DexScreener says about each token); only the background chatter is drawn from a seeded RNG.
Every payload uses the real schemas: Telegram messages with Bot-API entities (UTF-16 offsets),
Cielo feed items, DexScreener pair objects. Run: python scripts/make_demo_session.py
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import base58

from callsbot.testing.cielo import sell, swap, transfer
from callsbot.testing.dexscreener import make_pair

OUT = Path(__file__).resolve().parents[1] / "callsbot" / "demo" / "data" / "session.json"
START = 1_795_003_200  # 2026-11-17 12:00:00 UTC
END = 4_200  # seconds of session


def key(seed: str, *, pump: bool = False) -> str:
    """A valid 32-byte Solana address; pump.fun-style vanity suffix when asked."""
    for n in range(1000):
        text = base58.b58encode(hashlib.sha256(f"{seed}/{n}".encode()).digest()).decode()
        if pump:
            text = text[:-4] + "pump"
        if len(text) == 44 and len(base58.b58decode(text)) == 32:
            return text
    raise AssertionError(seed)


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


GROUPS = [
    {"ref": "@MarksGems", "channel_id": 1500000001, "username": "MarksGems"},
    {"ref": "@batman_gem", "channel_id": 1500000002, "username": "batman_gem"},
    {"ref": "@SouthParkCall", "channel_id": 1500000003, "username": "SouthParkCall"},
    {"ref": "@pfultimate", "channel_id": 1500000004, "username": "pfultimate"},
    {"ref": "@SAVANNAHCALLS", "channel_id": 1500000005, "username": "SAVANNAHCALLS"},
    # A private group: no username, so mentions are recorded under its chat id.
    {"ref": "-1001500000006", "channel_id": 1500000006, "username": None},
]
G1, G2, G3, G4, G5, G6 = (g["ref"] for g in GROUPS)

T = {
    "MOONCAT": key("mooncat", pump=True),
    "GIGA2": key("giga2"),
    "SOLOPEPE": key("solopepe", pump=True),
    "LATEDOG": key("latedog"),
    "RUGGED": key("rugged", pump=True),
    "PAIRFROG": key("pairfrog"),
    "FROGGY": key("froggy", pump=True),
    "OLDNEWS": key("oldnews"),
    "DUMPER": key("dumper"),
}
PAIRFROG_POOL = key("pairfrog-pool")
DEV_WALLET = key("dev-wallet")
UNLISTED = key("unlisted-wallet")
SMART = key("smart-wallet-1")
WHALE = key("smart-wallet-2")
SIG = base58.b58encode(hashlib.sha512(b"demo-signature").digest()).decode()

MARKET = {
    # symbol: (name, liquidity, volume h24, volume h1, mcap, age hours, change h1, change h24)
    "MOONCAT": ("Moon Cat", 85_000, 420_000, 40_000, 1_800_000, 6, 12.0, 80.0),
    "GIGA2": ("Giga Chad 2", 48_000, 130_000, 9_000, 900_000, 30, 4.0, 25.0),
    "SOLOPEPE": ("Solo Pepe", 40_000, 60_000, 3_000, 700_000, 50, 2.0, 10.0),
    "LATEDOG": ("Late Dog", 55_000, 90_000, 12_000, 1_100_000, 40, 6.0, 40.0),
    "RUGGED": ("Totally Safe", 3_100, 90_000, 20_000, 40_000, 1, 150.0, 900.0),
    "PAIRFROG": ("Pair Frog", 62_000, 210_000, 15_000, 1_400_000, 12, 8.0, 55.0),
    "FROGGY": ("Froggy", 33_000, 90_000, 7_000, 650_000, 20, 3.0, 30.0),
    "OLDNEWS": ("Old News", 70_000, 95_000, 2_000, 2_500_000, 400, -2.0, -8.0),
    "DUMPER": ("Dumper", 21_000, 40_000, 6_000, 300_000, 70, -45.0, -70.0),
}

messages: list[dict[str, Any]] = []
next_id = {g["ref"]: 100 for g in GROUPS}


def say(
    at: float, group: str, text: str, entities: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    next_id[group] += 1
    message = {
        "group": group,
        "id": next_id[group],
        "at": at,
        "text": text,
        "entities": entities or [],
        **extra,
    }
    messages.append(message)
    return message


def hidden(prefix: str, visible: str, url: str, suffix: str = "") -> tuple[str, list[Any]]:
    """Text with a text_link entity: the URL exists only in the entity, as Telegram sends it."""
    return prefix + visible + suffix, [
        {"type": "text_link", "offset": utf16(prefix), "length": utf16(visible), "url": url}
    ]


def code(prefix: str, address: str, suffix: str = "") -> tuple[str, list[Any]]:
    return prefix + address + suffix, [
        {"type": "code", "offset": utf16(prefix), "length": utf16(address)}
    ]


# -- the story -----------------------------------------------------------------------------------

# An old call: @MarksGems calls OLDNEWS right at the start; @batman_gem only after the window
# has slid past it, so the token never has two groups at once.
say(30, G1, f"📢 CA: {T['OLDNEWS']}")
say(3700, G2, f"OLD NEWS still alive?\n{T['OLDNEWS']}")

# MOONCAT: four groups in ten minutes, in four different formats, then a labelled smart wallet
# buys: strong consensus.
say(120, G1, *code("🚀 NEW CALL 🚀\n\n📝 CA:\n", T["MOONCAT"], "\n\n$MOONCAT"))
say(300, G2, f"Moon Cat looking clean 👀 {T['MOONCAT']}")
say(420, G3, f"https://pump.fun/coin/{T['MOONCAT']}")
say(
    600,
    G4,
    *hidden(
        "🐱 MOONCAT | ",
        "BUY ON TROJAN",
        f"https://t.me/solana_trojanbot?start=r-pfult-{T['MOONCAT']}",
    ),
)

# GIGA2: two groups, one of them only through a birdeye link.
say(900, G2, f"ca - {T['GIGA2']}")
say(1000, G5, f"https://birdeye.so/token/{T['GIGA2']}?chain=solana 🦁")

# LATEDOG: Cielo sees the buy first (t=1500); three groups call it afterwards, so the
# watch list re-scores it when they do: late consensus.
say(1620, G1, f"合约地址：{T['LATEDOG']} 冲！")
say(1700, G3, f"контракт: {T['LATEDOG']}")
say(1800, G6, *code("CA 👉 ", T["LATEDOG"], " 👈"))

# RUGGED: three groups shill it, but liquidity is $3k: it is never counted.
say(2000, G4, f"🔥🔥 100x gem 🔥🔥\nCA: {T['RUGGED']}")
say(2100, G5, f"{T['RUGGED']} sending!!")
say(2200, G1, f"CA:{T['RUGGED']}")

# PAIRFROG: one group links the pool (pair address), the other the mint; both count for the
# mint once the pair is resolved.
say(2400, G2, f"📊 https://dexscreener.com/solana/{PAIRFROG_POOL}")
say(2450, G3, f"Token Address: {T['PAIRFROG']}")

# FROGGY: DexScreener rate limits us right when it is called; the mention is deferred and
# recorded on the next try, never marked invalid.
say(2610, G5, f"🐸 Froggy\nMint: {T['FROGGY']}")
say(2660, G6, f"https://gmgn.ai/sol/token/ref_{T['FROGGY']}")

# Noise that must not count: a dev wallet, an unlisted wallet (DexScreener: no pairs), a tx.
say(700, G4, f"Dev wallet 👇\n{DEV_WALLET}")
say(1300, G6, f"ape this {UNLISTED}")
say(1350, G2, f"bought, tx: https://solscan.io/tx/{SIG}")
say(1400, G3, f"Signature: {SIG}")
say(2800, G1, "abbreviated 7xKX…sAsU is not an address")

# The same call delivered twice, and edited to add a second address (only the new one counts).
dup = say(3000, G4, f"CA: {T['DUMPER']}")
messages.append(dict(dup, at=3001))  # Telegram delivered the update twice
say(3010, G4, f"CA: {T['DUMPER']}\nalso watching {T['GIGA2']}", edit=True)
next_id[G4] -= 1  # the edit kept the original message id
messages[-1]["id"] = dup["id"]

# Background chatter from every group.
rng = random.Random(7)
WORDS = [
    "gm",
    "ser",
    "anyone",
    "watching",
    "chart",
    "looks",
    "clean",
    "volume",
    "picking",
    "up",
    "dev",
    "based",
    "jeets",
    "aped",
    "bag",
    "sending",
    "moon",
    "holding",
    "strong",
    "floor",
    "careful",
    "liquidity",
    "locked",
    "socials",
    "active",
    "ath",
    "soon",
    "wen",
    "binance",
    "good",
    "entry",
    "second",
    "leg",
    "took",
    "profits",
    "ngmi",
    "wagmi",
    "fading",
]
EMOJI = ["🚀", "🔥", "💎", "📈", "👀", "🐸", "✅", "⚠️", "💰"]
for _ in range(260):
    group = rng.choice(GROUPS)["ref"]
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
    cashtag = f" ${rng.choice(['PEPE', 'WIF', 'BONK', 'MEW', 'SOL'])}" if rng.random() < 0.2 else ""
    say(round(rng.uniform(0, END - 60), 1), group, f"{words}{cashtag} {rng.choice(EMOJI)}")

messages.sort(key=lambda m: m["at"])

# -- the Cielo feed --------------------------------------------------------------------------------

feed: list[dict[str, Any]] = []


def buy(
    at: int,
    symbol: str,
    usd: float,
    *,
    wallet: str = SMART,
    label: str | None = None,
    first: bool = False,
) -> None:
    tx = base58.b58encode(hashlib.sha512(f"tx/{symbol}/{at}".encode()).digest()).decode()
    item = swap(
        tx,
        T[symbol],
        usd=usd,
        wallet=wallet,
        label=label,
        ts=START + at,
        symbol=symbol,
        name=MARKET[symbol][0],
        first=first,
    )
    feed.append({"at": at, "item": item})


def other(at: int, item: dict[str, Any]) -> None:
    item["timestamp"] = START + at
    feed.append({"at": at, "item": item})


buy(660, "MOONCAT", 4_200, label="Smart Money #7", first=True)
buy(1080, "GIGA2", 1_500, wallet=WHALE)
buy(1200, "SOLOPEPE", 2_500)
buy(1500, "LATEDOG", 2_500)
buy(2300, "RUGGED", 9_000, wallet=WHALE)
buy(2520, "PAIRFROG", 3_000, label="Smart Money #7")
buy(2700, "FROGGY", 1_200)
buy(3050, "DUMPER", 1_800)
buy(3760, "OLDNEWS", 1_500, wallet=WHALE)
other(
    800,
    sell(
        base58.b58encode(b"sell-mooncat-tx-hash-0000000000001").decode(),
        T["MOONCAT"],
        ts=START + 800,
    ),
)
other(1900, transfer(base58.b58encode(b"transfer-tx-hash-00000000000000001").decode(), T["GIGA2"]))
lp = swap(base58.b58encode(b"lp-tx-hash-000000000000000000000001").decode(), T["PAIRFROG"])
lp["tx_type"] = "lp"
other(2550, lp)
feed.sort(key=lambda f: f["at"])

# -- DexScreener ---------------------------------------------------------------------------------

pairs = []
for symbol, (name, liq, vol24, vol1, mcap, age_h, ch1, ch24) in MARKET.items():
    pairs.append(
        make_pair(
            T[symbol],
            base_name=name,
            base_symbol=symbol,
            liquidity=liq,
            volume_h24=vol24,
            volume_h1=vol1,
            market_cap=mcap,
            fdv=mcap,
            price_usd=f"{mcap / 1e9:.8f}",
            price_change={"m5": 0.4, "h1": ch1, "h24": ch24},
            created_at_ms=(START - age_h * 3600) * 1000,
            dex="pumpswap" if T[symbol].endswith("pump") else "raydium",
            pair_address=PAIRFROG_POOL if symbol == "PAIRFROG" else None,
        )
    )

session = {
    "about": "callsbot demo: a recorded hour of six call groups, the Cielo feed and DexScreener",
    "start": START,
    "end": END,
    "telegram": {"groups": GROUPS, "messages": messages},
    "cielo": feed,
    "dexscreener": {"pairs": pairs, "rate_limited_at": [2600]},
}
OUT.parent.mkdir(parents=True, exist_ok=True)
OUT.write_text(json.dumps(session, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
print(f"{OUT}: {len(messages)} messages, {len(feed)} feed items, {len(pairs)} pairs")
