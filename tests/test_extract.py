"""Table of real-world call-message shapes (api-formats.md section a/b) and what they yield."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import attrs
import base58
import pytest

from callsbot.extract import (
    EvmAddress,
    Extraction,
    entities_from_telethon,
    extract,
    is_evm_address,
    is_solana_address,
)
from callsbot.models import Entity

# --------------------------------------------------------------------------------------------
# Deterministic, verified test addresses


def _decodes_to_32(s: str) -> bool:
    try:
        return len(base58.b58decode(s)) == 32
    except ValueError:
        return False


def _sol_stream(tag: str) -> list[str]:
    """44-char base58 encodings of sha256(tag:i), none ending in "pump"."""
    out = []
    i = 0
    while len(out) < 40:
        s = base58.b58encode(hashlib.sha256(f"{tag}:{i}".encode()).digest()).decode()
        i += 1
        if len(s) == 44 and not s.endswith("pump") and _decodes_to_32(s):
            out.append(s)
    return out


def _pump_stream() -> list[str]:
    """Vanity-style keys ending in "pump" that still decode to exactly 32 bytes."""
    out = []
    for s in _sol_stream("pump"):
        candidate = s[:-4] + "pump"
        if _decodes_to_32(candidate):
            out.append(candidate)
    return out


MINTS = _sol_stream("mint")
WALLETS = _sol_stream("wallet")
PAIRS = _sol_stream("pair")
PUMPS = _pump_stream()
M1, M2, M3, M4 = MINTS[:4]
W1, W2 = WALLETS[:2]
X1, X2 = PAIRS[:2]
P1, P2 = PUMPS[:2]
# A 43-char address with leading zero bytes written as "1"s, and a 32-char all-"1" style key.
M_SHORT = base58.b58encode(b"\x00\x00\x00" + hashlib.sha256(b"short").digest()[:29]).decode()
# A Solana string whose lower-cased form (DexScreener's `url` field) is no longer base58.
M_LOWER_BROKEN = next(m for m in MINTS if "L" in m)


def _evm(tag: str) -> str:
    hexdigits = hashlib.sha256(tag.encode()).hexdigest()[:40]
    # Mixed case, as EIP-55 text looks; the checksum itself is irrelevant to extraction.
    return "0x" + "".join(c.upper() if i % 3 == 0 else c for i, c in enumerate(hexdigits))


E1, E2, E3 = _evm("e1"), _evm("e2"), _evm("e3")
e1, e2, e3 = E1.lower(), E2.lower(), E3.lower()
SIG88, SIG87 = (
    next(
        s
        for s in (
            base58.b58encode(hashlib.sha512(f"sig{i}".encode()).digest()).decode()
            for i in range(999)
        )
        if len(s) == n
    )
    for n in (88, 87)
)
TX_HASH = "0x" + hashlib.sha256(b"tx").hexdigest()
TOO_BIG_44 = "z" * 44  # base58, 44 chars, but decodes to 33 bytes
TOO_SMALL_43 = "2" * 43  # base58, 43 chars, but decodes to 31 bytes

WSOL = "So11111111111111111111111111111111111111112"
USDC_SOL = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
USDT_SOL = "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB"
SYSTEM = "11111111111111111111111111111111"
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
PUMP_PROGRAM = "6EF8rrecthR5Dkzon8Nwu78hRvfCKubJ14M5uBEwF6P"
RAYDIUM_V4 = "675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8"
JUPITER_V6 = "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4"
COMPUTE_BUDGET = "ComputeBudget111111111111111111111111111111"
WETH = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
WETH_BASE = "0x4200000000000000000000000000000000000006"
WBNB = "0xbb4CdB9CBd36B01bD1cBaEBF2De08d9173bc095c"
USDC_ETH = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
USDC_BASE = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
USDT_ETH = "0xdAC17F958D2ee523a2206206994597C13D831ec7"
DEAD = "0x000000000000000000000000000000000000dEaD"
ZERO = "0x" + "0" * 40


def test_fixture_addresses_are_what_they_claim() -> None:
    for a in [*MINTS, *WALLETS, *PAIRS, *PUMPS, M_SHORT]:
        assert is_solana_address(a), a
    assert len(M_SHORT) < 44
    assert M_SHORT.startswith("1")
    assert len(PUMPS) >= 2
    assert all(p.endswith("pump") for p in PUMPS)
    assert len(SIG88) == 88
    assert len(base58.b58decode(SIG88)) == 64
    assert not _decodes_to_32(TOO_BIG_44)
    assert not _decodes_to_32(TOO_SMALL_43)
    assert all(is_evm_address(e) for e in (E1, E2, E3))
    assert "l" in M_LOWER_BROKEN.lower()
    everything = [*MINTS, *WALLETS, *PAIRS, *PUMPS]
    assert len(set(everything)) == len(everything)


# --------------------------------------------------------------------------------------------
# Helpers for the table


def u16(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def ent(text: str, visible: str, kind: str, url: str | None = None, nth: int = 0) -> Entity:
    """Entity over the nth occurrence of ``visible`` in ``text``, offsets in UTF-16 units."""
    start = -1
    for _ in range(nth + 1):
        start = text.index(visible, start + 1)
    return Entity(kind, u16(text[:start]), u16(visible), url)


@attrs.frozen
class Case:
    id: str
    text: str
    mints: tuple[str, ...] = ()
    pairs: tuple[str, ...] = ()
    evm: tuple[tuple[str, str | None], ...] = ()
    evm_pairs: tuple[tuple[str, str | None], ...] = ()
    entities: Sequence[Entity] = ()
    dropped: int = 0
    max_addresses: int = 20


CASES: list[Case] = []


def case(
    id: str,
    text: str,
    *,
    mints: Sequence[str] = (),
    pairs: Sequence[str] = (),
    evm: Sequence[tuple[str, str | None]] = (),
    evm_pairs: Sequence[tuple[str, str | None]] = (),
    entities: Sequence[Entity] = (),
    dropped: int = 0,
    max_addresses: int = 20,
) -> None:
    CASES.append(
        Case(
            id,
            text,
            tuple(mints),
            tuple(pairs),
            tuple(evm),
            tuple(evm_pairs),
            tuple(entities),
            dropped,
            max_addresses,
        )
    )


def with_entities(
    id: str, text: str, spans: Sequence[tuple[str, str, str | None]], **kw: object
) -> None:
    """Like case(), entities given as (visible text, type, url) looked up in ``text``."""
    entities = [ent(text, visible, kind, url) for visible, kind, url in spans]
    case(id, text, entities=entities, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Labels on the same line (English)

case("bare-mint", M1, mints=[M1])
case("bare-mint-43-chars-leading-ones", M_SHORT, mints=[M_SHORT])
case("bare-mint-trailing-newline", f"{M1}\n", mints=[M1])
case("ca-colon", f"CA: {M1}", mints=[M1])
case("ca-dash", f"ca - {M1}", mints=[M1])
case("ca-no-space", f"CA:{M1}", mints=[M1])
case("contract", f"Contract: {M1}", mints=[M1])
case("token-address", f"Token Address: {M1}", mints=[M1])
case("mint-label", f"Mint: {M1}", mints=[M1])
case("coin-label", f"Coin: {M1}", mints=[M1])
case("addr-label", f"addr: {M1}", mints=[M1])
case("ca-pointing-fingers", f"CA 👉 {M1} 👈", mints=[M1])
case("dna-ca", f"🧬 CA: {M1}", mints=[M1])
case("markdown-markers", f"**CA:** `{M1}`", mints=[M1])
case("pipes-and-brackets", f"[{M1}] | ({M2})", mints=[M1, M2])
case("keycap-before", f"1️⃣ {M1}", mints=[M1])
case("emoji-frame", f"🔥🔥🔥\n🚀 {M1} 🚀\n🔥🔥🔥", mints=[M1])
case("ticker-then-mint", f"$PEPE\n{M1}", mints=[M1])
case("ticker-ca-mint", f"$PEPE CA: {M1}", mints=[M1])
case("ticker-only", "$PEPE to the moon 🚀 $WIF $BONK")
case("dollar-glued-to-address", f"${M1}", mints=[M1])
case("label-after-address-ignored", f"{M1} (dev wallet)", mints=[M1])
case("label-after-address-ignored-2", f"{W1} ← this is the dev", mints=[W1])
case("sentence-before-address", f"Smart money just aped {W1}", mints=[W1])
case("two-on-one-line", f"CA: {M1} {M2}", mints=[M1, M2])

# --------------------------------------------------------------------------------------------
# Labels on the previous line

case("label-prev-line", f"📝 CA:\n{M1}", mints=[M1])
case("label-prev-line-blank-between", f"CA:\n\n{M1}", mints=[M1])
case("label-prev-line-whitespace-between", f"CA:\n   \n{M1}", mints=[M1])
case("label-prev-line-crlf", f"Contract:\r\n{M1}", mints=[M1])
case("dev-wallet-pointing-down", f"Dev wallet 👇\n{W1}")
case("dev-wallet-emoji-only-line-between", f"Dev wallet\n👇👇👇\n{W1}")
case("dev-wallet-prev-line-blank-between", f"Dev wallet:\n\n{W1}")
case("prev-line-not-ending-in-label", f"Dev wallet is here\n{W1}", mints=[W1])
case("prev-line-label-but-word-precedes", f"Dev:\nfoo {W1}", mints=[W1])
case("prev-line-ends-with-address", f"CA: {M1}\n{W1}", mints=[M1, W1])
case("pair-label-prev-line", f"LP pair:\n{X1}", pairs=[X1])
case("emoji-bullet-after-label-line", f"CA:\n🔹 {M1}", mints=[M1])

# --------------------------------------------------------------------------------------------
# Wallet / tx / pair labels and priority

case("dev-colon", f"Dev: {W1}")
case("dev-wallet-colon", f"Dev wallet: {W1}")
case("wallet-address-is-wallet", f"Wallet address: {W1}")
case("deployer", f"Deployer: {W1}")
case("creator", f"Creator: {W1}")
case("owner", f"Owner - {W1}")
case("whale", f"🐳 Whale: {W1}")
case("buyer", f"Buyer: {W1}")
case("holder", f"Holder: {W1}")
case("top-holders-plural", f"Top holders:\n{W1}")
case("insider-wallets", f"Insider wallets: {W1}")
case("sniper", f"Sniper {W1}")
case("funder", f"Funder: {W1}")
case("trader", f"Trader: {W1}")
case("devs", f"devs: {W1}")
case("tx-label", f"Tx: {X1}")
case("txid-label", f"TXID: {X1}")
case("hash-label", f"hash: {X1}")
case("signature-label-sig", f"Signature: {SIG88}")
case("lp-pair", f"LP pair: {X1}", pairs=[X1])
case("pair", f"Pair: {X1}", pairs=[X1])
case("pool", f"Pool: {X1}", pairs=[X1])
case("bonding-curve", f"Bonding curve: {X1}", pairs=[X1])
case("pair-address-is-pair", f"Pair address: {X1}", pairs=[X1])
case("pump-override-pair-label", f"Pair: {P1}", mints=[P1])
# Keyword words separated only by separators form one phrase: wallet > token.
case("one-phrase-across-separators", f"Dev · CA: {M1}")
case("dev-and-ca", f"Dev: {W1}\nCA: {M1}", mints=[M1])
case("ca-and-dev-same-line", f"CA: {M1} | Dev: {W1}", mints=[M1])
case("ca-then-dev-lines", f"CA: {M1}\nDev wallet: {W1}\nTop holder: {W2}", mints=[M1])

# --------------------------------------------------------------------------------------------
# Russian and Chinese

case("ru-contract", f"Контракт: {M1}", mints=[M1])
case("ru-contract-address", f"Адрес контракта: {M1}", mints=[M1])
case("ru-token-prev-line", f"Токен:\n{M1}", mints=[M1])
case("ru-dev-wallet", f"Кошелек разработчика: {W1}")
case("ru-wallet-yo", f"Кошелёк: {W1}")
case("ru-dev", f"Дев: {W1}")
case("ru-pool", f"Пул: {X1}", pairs=[X1])
case("ru-pair", f"Пара: {X1}", pairs=[X1])
case("ru-tx", f"Транзакция: {X1}")
# Cyrillic keywords match at word starts: "Популярный" (popular) holds "пул" (pool) inside,
# "Редевелопмент" holds "дев" inside; neither is a label. Word-initial forms still are.
case("ru-keyword-inside-a-word-is-not-a-label", f"Популярный токен: {M1}", mints=[M1])
case("ru-dev-inside-a-word-is-not-a-label", f"Редевелопмент {W1}", mints=[W1])
case("ru-pool-inflected", f"Пулы: {X1}", pairs=[X1])
case("ru-token-inflected-prev-line", f"Адрес токена:\n{M1}", mints=[M1])
# CJK has no spaces between words: there a keyword still matches anywhere in the run.
case("zh-keyword-inside-a-run", f"新币合约地址是{M1}", mints=[M1])
case("ru-mixed-message", f"🔥 Новый токен!\nКонтракт: {M1}\nКошелек дева: {W1}", mints=[M1])
case("zh-contract-address", f"合约地址：{M1}", mints=[M1])
case("zh-contract-address-ascii-colon", f"合约地址:{M1}", mints=[M1])
case("zh-chong", f"冲！{M1}冲！", mints=[M1])
case("zh-token", f"代币：{M1}", mints=[M1])
case("zh-address-prev-line", f"合约地址：\n{M1}", mints=[M1])
case("zh-wallet-address", f"钱包地址：{W1}")
case("zh-dev-wallet", f"开发者钱包：{W1}")
case("zh-creator", f"创建者：{W1}")
case("zh-pair", f"交易对：{X1}", pairs=[X1])
case("zh-pool", f"流动池：{X1}", pairs=[X1])
case("zh-hash", f"哈希：{X1}")

# --------------------------------------------------------------------------------------------
# Decision over all occurrences, duplicates, order

case("old-ca-new-ca", f"Old CA: {M1}\nNew CA: {M2}", mints=[M1, M2])
case("several-in-order", f"{M3}\n{M1}\n{M2}", mints=[M3, M1, M2])
case("duplicates-once", f"CA: {M1}\n{M1}\nhttps://pump.fun/coin/{M1}", mints=[M1])
case("duplicate-order-is-first-appearance", f"{M2} {M1} {M2}", mints=[M2, M1])
case("wallet-label-and-ca-label-mint-wins", f"Dev: {M1}\nCA: {M1}", mints=[M1])
case("wallet-label-and-unlabelled-dropped", f"{W1}\nDev: {W1}")
case("pair-label-and-unlabelled-is-mint", f"Pair: {X1}\n{X1}", mints=[X1])
case("pair-label-twice-is-pair", f"Pair: {X1}\nPool: {X1}", pairs=[X1])
case("tx-label-and-unlabelled-dropped", f"Tx: {X1}\n{X1}")
case("order-across-kinds", f"{M2}\nPair: {X1}\n{M1}", mints=[M2, M1], pairs=[X1])

# --------------------------------------------------------------------------------------------
# Links: DexScreener, pump.fun, Birdeye, Photon, GMGN, explorers, Jupiter, Axiom, BullX, ...

case("dexscreener-pair", f"https://dexscreener.com/solana/{X1}", pairs=[X1])
case("dexscreener-maker-ignored", f"https://dexscreener.com/solana/{X1}?maker={W1}", pairs=[X1])
case("dexscreener-mint-in-slot-pump-override", f"https://dexscreener.com/solana/{P1}", mints=[P1])
case("dexscreener-bare-host", f"Chart: dexscreener.com/solana/{X1}", pairs=[X1])
case("dexscreener-lowercased-url-field", f"https://dexscreener.com/solana/{M_LOWER_BROKEN.lower()}")
case(
    "dexscreener-pair-plus-ca",
    f"CA: {M1}\nhttps://dexscreener.com/solana/{X1}",
    mints=[M1],
    pairs=[X1],
)
case("dexscreener-slot-also-ca", f"https://dexscreener.com/solana/{M1}\nCA: {M1}", mints=[M1])
case("pump-coin", f"https://pump.fun/coin/{P1}", mints=[P1])
case("pump-coin-non-vanity", f"https://pump.fun/coin/{M1}", mints=[M1])
case("pump-short-form", f"https://pump.fun/{P1}", mints=[P1])
case("pump-bare-no-scheme", f"pump.fun/coin/{P1}", mints=[P1])
case("pump-www", f"https://www.pump.fun/coin/{P2}", mints=[P2])
case("pump-profile-wallet", f"https://pump.fun/profile/{W1}")
case("pump-profile-and-coin", f"pump.fun/profile/{W1}\npump.fun/coin/{P1}", mints=[P1])
case("birdeye-token", f"https://birdeye.so/token/{M1}?chain=solana", mints=[M1])
case("birdeye-token-new-form", f"https://birdeye.so/solana/token/{M1}", mints=[M1])
case("birdeye-profile", f"https://birdeye.so/profile/{W1}?chain=solana")
case("photon-lp", f"https://photon-sol.tinyastro.io/en/lp/{X1}", pairs=[X1])
case("photon-lp-handle", f"https://photon-sol.tinyastro.io/en/lp/{X1}?handle=abc123", pairs=[X1])
case("photon-lp-pump-override", f"https://photon-sol.tinyastro.io/en/lp/{P1}", mints=[P1])
case("photon-ref", f"https://photon-sol.tinyastro.io/en/r/@caller/{M1}", mints=[M1])
case("gmgn-token", f"https://gmgn.ai/sol/token/{M1}", mints=[M1])
case("gmgn-token-ref", f"https://gmgn.ai/sol/token/abc123_{M1}", mints=[M1])
case("gmgn-address-wallet", f"https://gmgn.ai/sol/address/{W1}")
case("gmgn-eth-token", f"https://gmgn.ai/eth/token/{E1}", evm=[(e1, "ethereum")])
case("gmgn-base-token", f"https://gmgn.ai/base/token/{E1}", evm=[(e1, "base")])
case("gmgn-bsc-token", f"https://gmgn.ai/bsc/token/{E1}", evm=[(e1, "bsc")])
case("solscan-token", f"https://solscan.io/token/{M1}", mints=[M1])
case("solscan-account", f"https://solscan.io/account/{W1}")
case("solscan-tx-signature", f"https://solscan.io/tx/{SIG88}")
case("solscan-tx-32-bytes", f"https://solscan.io/tx/{X1}")
case("solscan-account-plus-unlabelled", f"{W1}\nhttps://solscan.io/account/{W1}")
case("jup-swap", f"https://jup.ag/swap/SOL-{M1}", mints=[M1])
case("jup-swap-wsol-denied", f"https://jup.ag/swap/{WSOL}-{M1}", mints=[M1])
case("axiom-token", f"https://axiom.trade/t/{M1}/@caller", mints=[M1])
case("axiom-meme-pair", f"https://axiom.trade/meme/{X1}", pairs=[X1])
case("axiom-meme-pump-override", f"https://axiom.trade/meme/{P1}", mints=[P1])
case("bullx", f"https://neo.bullx.io/terminal?chainId=1399811149&address={M1}", mints=[M1])
case("geckoterminal-pool", f"https://www.geckoterminal.com/solana/pools/{X1}", pairs=[X1])
case(
    "geckoterminal-base-pool",
    f"https://www.geckoterminal.com/base/pools/{E1}",
    evm_pairs=[(e1, "base")],
)
case("rugcheck", f"https://rugcheck.xyz/tokens/{M1}", mints=[M1])
case(
    "dextools-solana-pair", f"https://www.dextools.io/app/en/solana/pair-explorer/{X1}", pairs=[X1]
)
case(
    "dextools-ether-pair",
    f"https://www.dextools.io/app/en/ether/pair-explorer/{E1}",
    evm_pairs=[(e1, "ethereum")],
)
case("etherscan-token", f"https://etherscan.io/token/{E1}", evm=[(e1, "ethereum")])
case(
    "etherscan-token-holder-query-ignored",
    f"https://etherscan.io/token/{E1}?a={E2}",
    evm=[(e1, "ethereum")],
)
case("basescan-token", f"https://basescan.org/token/{E1}", evm=[(e1, "base")])
case("bscscan-token", f"https://bscscan.com/token/{E1}", evm=[(e1, "bsc")])
case("etherscan-address-wallet", f"https://etherscan.io/address/{E1}")
case("basescan-address-wallet", f"Dev: https://basescan.org/address/{E1}")
case("etherscan-tx", f"https://etherscan.io/tx/{TX_HASH}")
case("x-com-ignored", f"https://x.com/search?q={M1}")
case(
    "x-com-status-and-ca", f"https://x.com/caller/status/1790000000000000000\nCA: {M1}", mints=[M1]
)
case("twitter-ignored", f"https://twitter.com/i/web/status/{M1}")
case("unknown-host-unlabelled", f"https://example.com/token-page/{M1}", mints=[M1])
case("unknown-host-tx-path", f"https://explorer.example/tx/{X1}")
case("percent-encoded-slot", f"https://pump.fun/coin/%{ord(P1[0]):02X}{P1[1:]}", mints=[P1])
case("dexscreener-eth-pair", f"https://dexscreener.com/ethereum/{E1}", evm_pairs=[(e1, "ethereum")])
case("dexscreener-bsc-pair", f"https://dexscreener.com/bsc/{E1}", evm_pairs=[(e1, "bsc")])
case("link-in-parentheses", f"(https://pump.fun/coin/{P1})", mints=[P1])
case(
    "pair-label-before-url-line",
    f"Pair: https://dexscreener.com/solana/{X1}\n{M1}",
    mints=[M1],
    pairs=[X1],
)

# --------------------------------------------------------------------------------------------
# Trading-bot deep links (Telegram start parameter)

case("trojan", f"https://t.me/solana_trojanbot?start=r-caller-{M1}", mints=[M1])
case("trojan-paris", f"https://t.me/paris_trojanbot?start=r-caller-{M1}", mints=[M1])
case("trojan-nestor", f"https://t.me/nestor_trojanbot?start=r-caller-{M1}", mints=[M1])
case("trojan-odysseus", f"https://t.me/odysseus_trojanbot?start=r-caller-{P1}", mints=[P1])
case("bonkbot", f"https://t.me/bonkbot_bot?start=ref_abc12_ca_{M1}", mints=[M1])
case("maestro", f"https://t.me/maestro?start={M1}-caller", mints=[M1])
case("gmgn-bot", f"https://t.me/GMGN_sol_bot?start=i_abc12_c_{M1}", mints=[M1])
case("pepeboost", f"https://t.me/pepeboost_sol_bot?start=ref_abc12_ca_{M1}", mints=[M1])
case("bloom", f"https://t.me/BloomSolana_bot?start=ca_{M1}", mints=[M1])
case("bot-link-bare", f"t.me/solana_trojanbot?start=r-caller-{M1}", mints=[M1])
case(
    "bot-link-under-dev-label-is-mint",
    f"Dev: https://t.me/bonkbot_bot?start=ref_x_ca_{M1}",
    mints=[M1],
)
case("telegram-invite-link", "Join: https://t.me/+AbCdEfGhIjKlMnOp and t.me/somechannel/123")

# --------------------------------------------------------------------------------------------
# Entities: hidden text_url targets, code/pre, UTF-16 offsets

_T = f"🚀🚀 {M1}\n📈 Chart | 🤖 BUY ON TROJAN"
with_entities(
    "text-url-after-astral-emojis",
    _T,
    [
        (M1, "code", None),
        ("Chart", "text_url", f"https://dexscreener.com/solana/{X1}"),
        ("BUY ON TROJAN", "text_url", f"https://t.me/solana_trojanbot?start=r-x-{M2}"),
    ],
    mints=[M1, M2],
    pairs=[X1],
)
_T = "🔥💎🔥 New call! 📈 Chart"
with_entities(
    "mint-only-in-hidden-url",
    _T,
    [("Chart", "text_url", f"https://pump.fun/coin/{P1}")],
    mints=[P1],
)
_T = "👉 BUY 👈"
with_entities(
    "text-link-alias",
    _T,
    [("BUY", "text_link", f"https://t.me/bloomsolana_bot?start=ca_{M1}")],
    mints=[M1],
)
_T = f"CA: {M1}"
with_entities("code-entity", _T, [(M1, "code", None)], mints=[M1])
_T = f"🧬 CA:\n{M1}"
with_entities("pre-entity", _T, [(M1, "pre", None)], mints=[M1])
_T = f"Dev · new CA: {M2}"
with_entities(
    "hidden-wallet-link-on-dev-word",
    _T,
    [("Dev", "text_url", f"https://solscan.io/account/{W1}")],
    mints=[M2],
)
_T = f"Dev 👀 {M2}"
with_entities(
    "label-reaches-over-hidden-url-and-emoji",
    _T,
    [("Dev", "text_url", f"https://solscan.io/account/{W1}")],
)
_T = f"CA: {M1} | Dev"
with_entities(
    "hidden-wallet-after-ca",
    _T,
    [("Dev", "text_url", f"https://pump.fun/profile/{W1}")],
    mints=[M1],
)
_T = f"CA: {M1}"
with_entities(
    "visible-address-linked-to-its-own-page",
    _T,
    [(M1, "text_url", f"https://pump.fun/coin/{M1}")],
    mints=[M1],
)
_T = f"CA: {M1}"
with_entities(
    "visible-wallet-linked-to-account-page",
    _T,
    [(M1, "text_url", f"https://solscan.io/account/{M1}")],
    mints=[M1],
)
_T = f"{W1}"
with_entities(
    "unlabelled-wallet-linked-to-account-page",
    _T,
    [(W1, "text_url", f"https://solscan.io/account/{W1}")],
)
_T = f"📈 Chart\nCA: {M1}"
with_entities(
    "hidden-url-order-before-later-text",
    _T,
    [("Chart", "text_url", f"https://dexscreener.com/solana/{P1}")],
    mints=[P1, M1],
)
_T = f"CA: {M1} 🚀"
with_entities(
    "text-url-on-label-word-is-transparent",
    _T,
    [("CA", "text_url", "https://x.com/caller")],
    mints=[M1],
)
_T = f"Dev: 🚀 {W1}"
with_entities("text-url-on-dev-label-still-wallet", _T, [("Dev", "text_url", "https://x.com/dev")])
_T = f"See example.org/{M1}"
with_entities("url-entity", _T, [(f"example.org/{M1}", "url", None)], mints=[M1])
_T = f"🟢🟢🟢 {M1}"
with_entities("bold-entity-after-emojis", _T, [(M1, "bold", None)], mints=[M1])
case(
    "out-of-range-entities-clamped",
    f"CA: {M1}",
    entities=[Entity("text_url", 999, 5, f"https://pump.fun/coin/{M2}"), Entity("code", -5, 3)],
    mints=[M1, M2],
)
_T = "🚀 Links: Chart · Buy"
with_entities(
    "tg-resolve-hidden-url",
    _T,
    [
        ("Chart", "text_url", f"https://dexscreener.com/solana/{X1}"),
        ("Buy", "text_url", f"tg://resolve?domain=solana_trojanbot&start=r-x-{M1}"),
    ],
    mints=[M1],
    pairs=[X1],
)

# --------------------------------------------------------------------------------------------
# Deny-list

case("deny-wsol", f"CA: {WSOL}")
case("deny-usdc-usdt", f"{USDC_SOL} {USDT_SOL}")
case("deny-system-token-programs", f"{SYSTEM}\n{TOKEN_PROGRAM}")
case("deny-pump-raydium-jupiter", f"{PUMP_PROGRAM} {RAYDIUM_V4} {JUPITER_V6} {COMPUTE_BUDGET}")
case("deny-plus-real", f"Paired with {USDC_SOL}\nCA: {M1}", mints=[M1])
case("deny-evm-weth", f"CA: {WETH}")
case("deny-evm-weth-lowercase", f"CA: {WETH.lower()}")
case("deny-evm-base-weth-usdc", f"{WETH_BASE}\n{USDC_BASE}")
case("deny-evm-wbnb-usdc-usdt", f"{WBNB} {USDC_ETH} {USDT_ETH}")
case("deny-evm-dead-zero", f"Renounced to {DEAD}; LP burnt {ZERO}")
case("deny-evm-plus-real", f"{USDT_ETH}\nCA: {E1}", evm=[(e1, None)])

# --------------------------------------------------------------------------------------------
# Things that must yield nothing: sub-windows, splits, homoglyphs, abbreviations

case("signature-88", SIG88)
case("signature-87", SIG87)
case("evm-tx-hash", f"Tx: {TX_HASH}")
case("evm-tx-hash-unlabelled", TX_HASH)
case("pump-glued", f"{M1}pump")
case("45-chars", f"{M1}2")
case("address-glued-to-word", f"CA{M1}")
case("split-by-newline", f"{M1[:22]}\n{M1[22:]}")
case("split-by-space", f"CA: {M1[:20]} {M1[20:]}")
case("split-by-bold-markers", f"{M1[:20]}**{M1[20:]}")
case("split-by-dash", f"{M1[:22]}-{M1[22:]}")
case("homoglyph-cyrillic-a", f"CA: {M1[:20]}а{M1[21:]}")
# Literal rule 2: a fragment that is itself a valid 32-byte key is a candidate (a different key,
# which the market-data step drops). See docs/extraction.md, "Decisions".
_FRAG = next(m for m in MINTS if _decodes_to_32(m[:43]))
case("homoglyph-last-char-fragment-is-a-key", f"CA: {_FRAG[:43]}а", mints=[_FRAG[:43]])
case("homoglyph-cyrillic-o", f"{M1[:24]}о{M1[24:]}")
case("abbreviated", f"CA: {M1[:4]}…{M1[-4:]}")
case("abbreviated-dots", f"{M1[:6]}...{M1[-6:]}")
case("truncated", f"CA: {M1[:30]}")
case("truncated-ellipsis", f"CA: {M1[:28]}…")
case("invalid-base58-zero", f"CA: {M1[:10]}0{M1[11:]}")
case("invalid-base58-l", f"{M1[:10]}l{M1[11:]}")
case("decodes-to-33-bytes", TOO_BIG_44)
case("decodes-to-31-bytes", TOO_SMALL_43)
case("evm-39-hex", f"CA: {E1[:-1]}")
case("evm-41-hex", f"CA: {E1}a")
case("evm-uppercase-0X", f"CA: 0X{E1[2:]}")
case("short-alnum-noise", "gm gm 100x 🚀 LFG #solana 2024 ATH 1000000000")

# --------------------------------------------------------------------------------------------
# Zero-width and other invisible format characters are deleted first

case("zero-width-space", f"{M1[:20]}\u200b{M1[20:]}", mints=[M1])
case("zero-width-non-joiner", f"CA: {M1[:5]}\u200c{M1[5:]}", mints=[M1])
case("zero-width-joiner", f"{M1[:30]}\u200d{M1[30:]}", mints=[M1])
case("word-joiner", f"{M1[:1]}\u2060{M1[1:]}", mints=[M1])
case("bom", f"\ufeffCA: {M1[:12]}\ufeff{M1[12:]}", mints=[M1])
case("soft-hyphen", f"{M1[:22]}\u00ad{M1[22:]}", mints=[M1])
case("bidi-marks", f"\u200f{M1[:10]}\u200e{M1[10:]}\u202a", mints=[M1])
case("zero-width-everywhere", "\u200b".join(f"CA: {M1}"), mints=[M1])
case("zero-width-in-label", f"D\u200bev: {W1}")
case("zero-width-in-evm", f"CA: {E1[:10]}\u200b{E1[10:]}", evm=[(e1, None)])

# --------------------------------------------------------------------------------------------
# EVM addresses and chains

case("evm-mixed-case", f"CA: {E1}", evm=[(e1, None)])
case("evm-lower-case", f"CA: {e1}", evm=[(e1, None)])
case("evm-both-cases-once", f"CA: {E1}\n{e1}", evm=[(e1, None)])
case("evm-hashtag-base", f"#BASE\nCA: {E1}", evm=[(e1, "base")])
case("evm-hashtag-eth", f"{E1} #eth", evm=[(e1, "ethereum")])
case("evm-hashtag-bsc", f"#bsc gem\n{E1}", evm=[(e1, "bsc")])
case("evm-on-base", f"New gem on Base 🔵\nCA: {E1}", evm=[(e1, "base")])
case("evm-on-bsc", f"Launching on BSC now {E1}", evm=[(e1, "bsc")])
case("evm-chain-line", f"Chain: Ethereum\nCA: {E1}", evm=[(e1, "ethereum")])
case("evm-network-line-bnb", f"Network - BNB Chain\nToken: {E1}", evm=[(e1, "bsc")])
case("evm-label-chain-word", f"Base CA: {E1}", evm=[(e1, "base")])
case("evm-label-chain-word-eth", f"ETH contract: {E1}", evm=[(e1, "ethereum")])
case("evm-ambiguous-hints", f"#eth #base\nCA: {E1}", evm=[(e1, None)])
case("evm-link-beats-message-hint", f"#eth\nhttps://basescan.org/token/{E1}", evm=[(e1, "base")])
case("evm-label-beats-message-hint", f"#eth\nBase CA: {E1}", evm=[(e1, "base")])
case(
    "evm-link-chain-makes-message-hint",
    f"https://dexscreener.com/bsc/{E2}\nCA: {E1}",
    evm=[(e1, "bsc")],
    evm_pairs=[(e2, "bsc")],
)
case(
    "evm-two-chains-in-message-ambiguous",
    f"https://basescan.org/token/{E1}\n#eth\nCA: {E2}",
    evm=[(e1, "base"), (e2, None)],
)
case("evm-no-chain", f"{E1}", evm=[(e1, None)])
case("evm-dev-dropped", f"Dev: {E1}")
case("evm-deployer-prev-line", f"Deployer 👇\n{E1}")
case("evm-pair-label", f"Pair: {E1}", evm_pairs=[(e1, None)])
case("evm-pair-and-ca", f"Pair: {E2}\nCA: {E1}", evm=[(e1, None)], evm_pairs=[(e2, None)])
case("evm-and-solana", f"SOL CA: {M1}\nETH CA: {E1}", mints=[M1], evm=[(e1, "ethereum")])
case(
    "evm-solana-link-is-not-a-chain-hint",
    f"https://dexscreener.com/solana/{X1}\n{E1}",
    pairs=[X1],
    evm=[(e1, None)],
)
case("evm-ru-contract", f"Контракт: {E1}", evm=[(e1, None)])

# --------------------------------------------------------------------------------------------
# Share links and wallet profilers

_SHARE_PUMP = f"https%3A%2F%2Fpump.fun%2Fcoin%2F{M1}"
case("share-link-percent-encoded", f"https://t.me/share/url?url={_SHARE_PUMP}", mints=[M1])
case(
    "share-link-target-query-is-the-targets",
    f"t.me/share/url?url=https%3A%2F%2Fdexscreener.com%2Fsolana%2F{X1}%3Fmaker%3D{W1}&text=gm",
    pairs=[X1],
)
case(
    "share-link-plain-target",
    f"https://t.me/share/url?text=moon&url=https://birdeye.so/token/{M1}?chain=solana",
    mints=[M1],
)
case(
    "tweet-intent-target",
    f"https://twitter.com/intent/tweet?text=aped&url=https%3A%2F%2Fgmgn.ai%2Fsol%2Ftoken%2F{M1}",
    mints=[M1],
)
case(
    "share-link-double-encoded",
    f"https://t.me/share/url?url=https%253A%252F%252Fpump.fun%252Fcoin%252F{M1}",
    mints=[M1],
)
case(
    "share-link-to-a-wallet-is-a-wallet",
    f"{W1}\nhttps://t.me/share/url?url=https%3A%2F%2Fsolscan.io%2Faccount%2F{W1}",
)
with_entities(
    "share-button-hidden-link",
    "📣 Share",
    [("Share", "text_url", f"https://t.me/share/url?url={_SHARE_PUMP}")],
    mints=[M1],
)
case("nansen-profiler-wallet", f"https://app.nansen.ai/profiler?address={W1}&chain=solana")
case(
    "nansen-profiler-beats-unlabelled",
    f"Smart money {W1} aped\napp.nansen.ai/profiler?address={W1}\nCA: {M1}",
    mints=[M1],
)
case("profile-path-on-other-host", f"https://app.cielo.finance/profile/{W1}")
case("portfolio-path-on-other-host", f"https://portfolio.example.com/portfolio/{W1}")
case("debank-profile-evm", f"https://debank.com/profile/{E1}")


# --------------------------------------------------------------------------------------------
# Spam, size, cap

_SPAM = ("🚀🚀🚀 BEST CALLS 1000x GUARANTEED join t.me/+AbCdEf $PEPE $WIF 🔥\n" * 1400)[:100_000]
case("spam-100kb-no-address", _SPAM)
case("spam-100kb-address-at-end", _SPAM + f"\nCA: {M1}", mints=[M1])
case("spam-100kb-address-at-start", f"CA: {M1}\n" + _SPAM, mints=[M1])
case("cap-total", "\n".join(MINTS[:25]), mints=MINTS[:20], dropped=5)
case("cap-custom", "\n".join(MINTS[:5]), mints=MINTS[:3], dropped=2, max_addresses=3)
case(
    "cap-across-kinds-in-order",
    f"Pair: {X1}\n{E1}\nCA: {M1}",
    pairs=[X1],
    evm=[(e1, None)],
    dropped=1,
    max_addresses=2,
)
case("cap-zero", f"{M1} {M2}", dropped=2, max_addresses=0)
case("cap-ignores-deny-list", f"{WSOL} {USDC_SOL} {M1}", mints=[M1], max_addresses=1)
case("duplicates-do-not-count-against-cap", f"{M1} {M1} {M1} {M2}", mints=[M1, M2], max_addresses=2)


# --------------------------------------------------------------------------------------------


def _as_pairs(items: Sequence[EvmAddress]) -> tuple[tuple[str, str | None], ...]:
    return tuple((e.address, e.chain) for e in items)


@pytest.mark.parametrize(
    "c",
    [
        # The 100 KB spam cases are hostile input: a tight guard turns a regression to
        # catastrophic backtracking into a failure instead of a hang.
        pytest.param(c, id=c.id, marks=[pytest.mark.timeout(5)] if "100kb" in c.id else [])
        for c in CASES
    ],
)
def test_table(c: Case) -> None:
    got = extract(c.text, c.entities, max_addresses=c.max_addresses)
    assert (got.mints, got.pairs, _as_pairs(got.evm), _as_pairs(got.evm_pairs), got.dropped) == (
        c.mints,
        c.pairs,
        c.evm,
        c.evm_pairs,
        c.dropped,
    )


def test_table_is_large_and_ids_unique() -> None:
    assert len(CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES)


def test_extraction_helpers() -> None:
    empty = extract("gm")
    assert empty == Extraction()
    assert empty.is_empty
    assert len(empty) == 0
    got = extract(f"{M1}\nPair: {X1}\n{E1}")
    assert len(got) == 3
    assert not got.is_empty


def test_negative_cap_rejected() -> None:
    with pytest.raises(ValueError, match="max_addresses"):
        extract(M1, max_addresses=-1)


def test_validators() -> None:
    assert is_solana_address(M1)
    assert is_solana_address(SYSTEM)
    assert not is_solana_address(SIG88)
    assert not is_solana_address(M1 + " ")
    assert not is_solana_address(TOO_BIG_44)
    assert not is_solana_address("")
    assert is_evm_address(E1)
    assert is_evm_address(e1)
    assert not is_evm_address(TX_HASH)
    assert not is_evm_address(E1[:-1] + "g")
    assert not is_evm_address(" " + E1)


def test_entities_from_plain_objects_duck_typed() -> None:
    class MessageEntityTextUrl:
        def __init__(self) -> None:
            self.offset, self.length, self.url = 3, 5, "https://pump.fun/coin/x"

    class MessageEntitySpoiler:
        offset, length = 0, 2

    class Message:
        entities = (MessageEntityTextUrl(), MessageEntitySpoiler(), object())

    assert entities_from_telethon(Message()) == (
        Entity("text_url", 3, 5, "https://pump.fun/coin/x"),
        Entity("spoiler", 0, 2),
    )
    assert entities_from_telethon(object()) == ()
