"""Pure extraction of Solana mints, pair addresses and EVM addresses from one call message.

The normative rules live in ``docs/extraction-rules.md`` (shared) and are explained by example
in ``docs/extraction.md``. Nothing here does I/O; Telethon is only touched by duck typing.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from urllib.parse import unquote, urlsplit

import attrs

from callsbot.models import Entity

__all__ = [
    "Entity",
    "EvmAddress",
    "Extraction",
    "entities_from_telethon",
    "extract",
    "is_evm_address",
    "is_solana_address",
]


@attrs.frozen
class EvmAddress:
    """An EVM address found in a message.

    Attributes:
        address: Lower-cased ``0x`` + 40 hex digits.
        chain: ``"ethereum"``, ``"base"``, ``"bsc"``, or ``None`` when the message does not say
            unambiguously.
    """

    address: str
    chain: str | None


@attrs.frozen
class Extraction:
    """Addresses found in one message, each once, in order of first appearance.

    Attributes:
        mints: Solana token mints.
        pairs: Solana pair (pool) addresses seen only in pair slots; resolve them to their base
            token through market data before counting them.
        evm: EVM token addresses.
        evm_pairs: EVM addresses seen only in pair slots.
        dropped: Addresses beyond ``max_addresses`` that were not returned.
    """

    mints: tuple[str, ...] = ()
    pairs: tuple[str, ...] = ()
    evm: tuple[EvmAddress, ...] = ()
    evm_pairs: tuple[EvmAddress, ...] = ()
    dropped: int = 0

    def __len__(self) -> int:
        """Number of addresses returned (``dropped`` not included)."""
        return len(self.mints) + len(self.pairs) + len(self.evm) + len(self.evm_pairs)

    @property
    def is_empty(self) -> bool:
        """True when no address was returned."""
        return len(self) == 0


# --------------------------------------------------------------------------------------------
# Address validity

_B58_RUN = re.compile(r"[1-9A-HJ-NP-Za-km-z]{32,44}")
_EVM_RUN = re.compile(r"0x[0-9a-fA-F]{40}")
#: Whole alphanumeric runs long enough to be an address (shorter runs never are). The
#: lookbehind starts a match only at a run's first character, so the scan stays linear.
_LONG_ALNUM_RUN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9]{32,}")


_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _b58(n: int) -> str:
    digits: list[str] = []
    while n:
        n, r = divmod(n, 58)
        digits.append(_B58_ALPHABET[r])
    return "".join(reversed(digits))


# z leading "1"s are z zero bytes; the rest then decodes to 32 - z bytes exactly when its value
# lies in [256**(31 - z), 256**(32 - z)). The alphabet is in ASCII order, so base58 texts of one
# length compare like their values: two string comparisons replace a big-integer decode, which
# was most of the cost of a message full of distinct addresses.
_BOUNDS = tuple((_b58(256 ** (31 - z)), _b58(256 ** (32 - z))) for z in range(32))


@functools.lru_cache(maxsize=8192)  # groups repeat the same few addresses all day
def _decodes_to_32_bytes(s: str) -> bool:
    rest = s.lstrip("1")
    zeros = len(s) - len(rest)
    if not rest or zeros >= 32:
        return zeros == 32 and not rest
    low, high = _BOUNDS[zeros]
    n = len(rest)
    # low <= rest < high, comparing values: by length first, then (same length) as text.
    above_low = n > len(low) or (n == len(low) and rest >= low)
    return above_low and (n < len(high) or (n == len(high) and rest < high))


def is_solana_address(s: str) -> bool:
    """Tell whether ``s`` is the base58 text of a 32-byte key.

    Args:
        s: Candidate string; must be the whole address, with no surrounding characters.

    Returns:
        True when ``s`` is 32–44 base58 characters that decode to exactly 32 bytes (leading
        ``1`` characters count as zero bytes).
    """
    if not isinstance(s, str) or _B58_RUN.fullmatch(s) is None:
        return False
    return _decodes_to_32_bytes(s)


def is_evm_address(s: str) -> bool:
    """Tell whether ``s`` is ``0x`` followed by exactly 40 hex digits (any case).

    Args:
        s: Candidate string; must be the whole address.

    Returns:
        True for a well-formed EVM address. The EIP-55 checksum is not verified: a mixed-case
        and an all-lower-case spelling name the same address.
    """
    return isinstance(s, str) and _EVM_RUN.fullmatch(s) is not None


_SOLANA_DENY = frozenset(
    {
        "11111111111111111111111111111111",
        "So11111111111111111111111111111111111111112",
        "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
        "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB",
        "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
        "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb",
        "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL",
        "metaqbxxUerdq28cj1RbAWkYQm3ybzjb6a8bt518x1s",
        "6EF8rrecthR5Dkzon8Nwu78hRvfCKubJ14M5uBEwF6P",
        "pAMMBay6oceH9fJKBRHGP5D4bD4sWpmSwMn52FMfXEA",
        "675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8",
        "5Q544fKrFoe6tsEbD7S8EmxGTJYAKtTVhAW5Q5pge4j1",
        "CPMMoo8L3F4NbTegBCKVNunggL7H1ZpdTHKxQB5qKP1C",
        "CAMMCzo5YL8w4VFF8KVHrK22GGUsp5VTaW7grrKgrWqK",
        "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4",
        "whirLbMiicVdio4qvUfM5KAg6Ct8VwpYzGff3uctyCc",
        "LBUZKhRxPF3XUpBCjp4YzTKgLccjZhTSDM9YuVaPwxo",
        "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr",
        "ComputeBudget111111111111111111111111111111",
    }
)

_EVM_DENY = frozenset(
    a.lower()
    for a in (
        "0x0000000000000000000000000000000000000000",
        "0x000000000000000000000000000000000000dEaD",
        "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
        "0x4200000000000000000000000000000000000006",
        "0xbb4CdB9CBd36B01bD1cBaEBF2De08d9173bc095c",
        "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
        "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
        "0xdAC17F958D2ee523a2206206994597C13D831ec7",
    )
)

# --------------------------------------------------------------------------------------------
# Labels

_MINT = "mint"
_PAIR = "pair"
_WALLET = "wallet"
_TX = "tx"
_PRIORITY = (_WALLET, _TX, _PAIR, _MINT)

_ASCII_KEYWORDS: dict[str, str] = {
    **dict.fromkeys(
        [
            "dev",
            "devs",
            "deployer",
            "creator",
            "owner",
            "wallet",
            "wallets",
            "whale",
            "buyer",
            "holder",
            "insider",
            "sniper",
            "funder",
            "trader",
        ],
        _WALLET,
    ),
    **dict.fromkeys(["tx", "txn", "txid", "signature", "sig", "hash"], _TX),
    **dict.fromkeys(["pair", "pool", "lp", "bonding", "curve"], _PAIR),
    **dict.fromkeys(["ca", "contract", "token", "mint", "address", "addr", "coin"], _MINT),
}
_NON_ASCII_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("кошел", _WALLET),
    ("дев", _WALLET),
    ("разработчик", _WALLET),
    ("钱包", _WALLET),
    ("开发", _WALLET),
    ("创建者", _WALLET),
    ("транзакц", _TX),
    ("哈希", _TX),
    ("пул", _PAIR),
    ("пара", _PAIR),
    ("池", _PAIR),
    ("交易对", _PAIR),
    ("контракт", _MINT),
    ("адрес", _MINT),
    ("токен", _MINT),
    ("合约", _MINT),
    ("代币", _MINT),
    ("地址", _MINT),
)
# Words in alphabetic scripts (Cyrillic) are delimited, so a stem matches at a word's start only
# ("Популярный" is not "пул"); CJK runs have no word breaks, so there it matches anywhere.
_ANYWHERE_KEYWORDS = tuple((kw, cls) for kw, cls in _NON_ASCII_KEYWORDS if kw >= "\u2e80")
_WORD_START_KEYWORDS = tuple((kw, cls) for kw, cls in _NON_ASCII_KEYWORDS if kw < "\u2e80")
_CHAIN_WORDS: dict[str, str] = {
    "eth": "ethereum",
    "ethereum": "ethereum",
    "base": "base",
    "bsc": "bsc",
    "bnb": "bsc",
}
_EVM_CHAINS = frozenset(_CHAIN_WORDS.values())
_NEWLINES = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
# Keywords are short; a longer word is never a whole-word keyword, and bounding the look-back
# keeps the backward walk linear on hostile input.
_MAX_WORD = 64
# Visible URLs are masked with a letter outside ASCII so that the label walk sees them as one
# opaque non-keyword word (a label before a URL belongs to the URL, not to the next line).
_URL_MASK = "\u02b0"


def _ascii_class(word: str) -> str | None:
    w = word.lower()
    cls = _ASCII_KEYWORDS.get(w)
    if cls is None and w.endswith("s"):
        # Plurals ("holders", "pools", "addresses") read exactly like the singular.
        cls = _ASCII_KEYWORDS.get(w[:-1])
        if cls is None and w.endswith("es"):
            cls = _ASCII_KEYWORDS.get(w[:-2])
    return cls


def _classify_word(word: str) -> tuple[set[str], str | None] | None:
    """Classes and chain of one label word, or None when it is not a keyword."""
    if word.isascii():
        chain = _CHAIN_WORDS.get(word.lower())
        if chain is not None:
            return set(), chain
        cls = _ascii_class(word)
        return ({cls}, None) if cls is not None else None
    low = word.lower()
    classes = {cls for kw, cls in _WORD_START_KEYWORDS if low.startswith(kw)}
    classes.update(cls for kw, cls in _ANYWHERE_KEYWORDS if kw in low)
    return (classes, None) if classes else None


@attrs.define
class _Label:
    classes: set[str] = attrs.field(factory=set)
    chains: set[str] = attrs.field(factory=set)

    @property
    def kind(self) -> str | None:
        for cls in _PRIORITY:
            if cls in self.classes:
                return cls
        return None


def _walk_phrase(text: str, i: int, label: _Label) -> tuple[int, bool]:
    """Collect keyword words walking back from index ``i`` (inclusive) within one line.

    Returns:
        The index where the walk stopped and whether any word (keyword or not) was met.
    """
    saw_word = False
    while True:
        while i >= 0 and text[i] == " ":
            # Blanked hidden URLs are long runs of spaces: skip them a slice at a time.
            low = max(0, i - 255)
            i = low + len(text[low : i + 1].rstrip(" ")) - 1
            if i >= low:
                break
        while i >= 0 and not text[i].isalnum() and text[i] not in _NEWLINES:
            i -= 1
        if i < 0 or text[i] in _NEWLINES:
            return i, saw_word
        saw_word = True
        j = i
        floor = i - _MAX_WORD
        while j >= 0 and j > floor and text[j].isalnum():
            j -= 1
        truncated = j == floor and j >= 0 and text[j].isalnum()
        found = _classify_word(text[j + 1 : i + 1])
        if found is None:
            return j, saw_word
        label.classes |= found[0]
        if found[1] is not None:
            label.chains.add(found[1])
        if truncated:
            return j, saw_word
        i = j


def _label_before(text: str, start: int) -> _Label:
    label = _Label()
    i, saw_word = _walk_phrase(text, start - 1, label)
    if saw_word or i < 0:
        return label
    # Nothing on the candidate's own line: the phrase ending the previous line with any letter
    # or digit applies (blank and emoji-only lines such as "👇👇" are skipped).
    while i >= 0 and not text[i].isalnum():
        i -= 1
    if i >= 0:
        _walk_phrase(text, i, label)
    return label


# --------------------------------------------------------------------------------------------
# URLs

_URL_CHARS = r"[^\s<>\"'`\x00-\x20\x7f-\U0010ffff]"
# No (?i) here: under IGNORECASE "s" and "k" also fold to non-ASCII letters excluded below.
_SCHEME_URL_RE = re.compile(r"(?:[Hh][Tt][Tt][Pp][Ss]?|[Tt][Gg])://" + _URL_CHARS + "+")
_URL_TAIL_RE = re.compile(_URL_CHARS + "*")
_HOST_CHAR = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
_BEFORE_BARE_HOST = _HOST_CHAR | frozenset("_@/")
_BARE_DOMAINS = (
    "pump.fun",
    "dexscreener.com",
    "birdeye.so",
    "tinyastro.io",
    "gmgn.ai",
    "t.me",
    "telegram.me",
    "solscan.io",
    "jup.ag",
    "axiom.trade",
    "bullx.io",
    "geckoterminal.com",
    "rugcheck.xyz",
    "dextools.io",
    "nansen.ai",
    "etherscan.io",
    "basescan.org",
    "bscscan.com",
    "x.com",
    "twitter.com",
)
#: A whole run of host characters followed by "/": where a bare link can start. Starting
#: only at a run's first character, possessively, keeps it linear on long runs without "/".
_HOST_SLASH_RE = re.compile(r"(?<![A-Za-z0-9.\-])[A-Za-z0-9.\-]++/")

_DEX_CHAINS = {"solana": "solana", "ethereum": "ethereum", "base": "base", "bsc": "bsc"}
_GMGN_CHAINS = {"sol": "solana", "eth": "ethereum", "base": "base", "bsc": "bsc"}
_GECKO_CHAINS = {"solana": "solana", "eth": "ethereum", "base": "base", "bsc": "bsc"}
_DEXTOOLS_CHAINS = {"solana": "solana", "ether": "ethereum", "base": "base", "bnb": "bsc"}
_BULLX_CHAINS = {"1399811149": "solana", "1": "ethereum", "8453": "base", "56": "bsc"}
_EXPLORERS = {
    "etherscan.io": "ethereum",
    "basescan.org": "base",
    "bscscan.com": "bsc",
    "solscan.io": "solana",
}

_Slots = list[tuple[str, str | None]]


@attrs.frozen
class _UrlInfo:
    slots: tuple[tuple[str, str | None], ...]  # (text holding addresses, kind or None)
    chain: str | None

    @functools.cached_property
    def found(self) -> tuple[tuple[str, bool, str | None], ...]:
        """(address, is_evm, kind) of every candidate in the slots, in order; computed once
        per distinct link, since classified links are cached."""
        return tuple(
            (address, is_evm, kind)
            for slot, kind in self.slots
            for _, address, is_evm in _candidates(slot)
        )


def _on(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


def _after(segs: list[str], lsegs: list[str], keyword: str) -> str | None:
    if keyword in lsegs:
        k = lsegs.index(keyword)
        if k + 1 < len(segs):
            return segs[k + 1]
    return None


def _one(text: str | None, kind: str) -> _Slots:
    return [] if text is None else [(text, kind)]


def _known_host_slots(
    host: str, segs: list[str], query: dict[str, str]
) -> tuple[_Slots, str | None] | None:
    """Slots for the hosts named in the rules; None for any other host."""
    lsegs = [s.lower() for s in segs]
    if host in ("x.com", "twitter.com") or _on(host, "x.com") or _on(host, "twitter.com"):
        return [], None
    if _on(host, "t.me") or _on(host, "telegram.me"):
        starts = [v for k, v in query.items() if k in ("start", "startapp", "startattach")]
        return [(v, _MINT) for v in starts], None
    if _on(host, "dexscreener.com"):
        chain = _DEX_CHAINS.get(lsegs[0]) if segs else None
        return _one(segs[1] if len(segs) > 1 else None, _PAIR), chain
    if _on(host, "pump.fun"):
        if "profile" in lsegs:
            return _one(_after(segs, lsegs, "profile"), _WALLET), "solana"
        coin = _after(segs, lsegs, "coin")
        if coin is not None:
            return [(coin, _MINT)], "solana"
        return _one(segs[0] if segs else None, _MINT), "solana"
    if _on(host, "birdeye.so"):
        chain = query.get("chain", lsegs[0] if segs else "").lower()
        chain_name = _DEX_CHAINS.get(chain)
        if "profile" in lsegs:
            return _one(_after(segs, lsegs, "profile"), _WALLET), chain_name
        return _one(_after(segs, lsegs, "token"), _MINT), chain_name
    if _on(host, "tinyastro.io") or host.startswith("photon"):
        chain = "base" if "base" in host else ("solana" if "sol" in host else None)
        if "lp" in lsegs:
            return _one(_after(segs, lsegs, "lp"), _PAIR), chain
        if "r" in lsegs:
            rest = segs[lsegs.index("r") + 1 :]
            return [(s, _MINT) for s in rest if not s.startswith("@")], chain
        return [], chain
    if _on(host, "gmgn.ai"):
        chain = _GMGN_CHAINS.get(lsegs[0]) if segs else None
        if "address" in lsegs:
            return _one(_after(segs, lsegs, "address"), _WALLET), chain
        if "tx" in lsegs:
            return _one(_after(segs, lsegs, "tx"), _TX), chain
        return _one(_after(segs, lsegs, "token"), _MINT), chain
    for domain, chain in _EXPLORERS.items():
        if _on(host, domain):
            for keyword, kind in (
                ("token", _MINT),
                ("account", _WALLET),
                ("address", _WALLET),
                ("tx", _TX),
            ):
                if keyword in lsegs:
                    return _one(_after(segs, lsegs, keyword), kind), chain
            return [], chain
    if _on(host, "jup.ag"):
        return _one(_after(segs, lsegs, "swap") or _after(segs, lsegs, "tokens"), _MINT), "solana"
    if _on(host, "axiom.trade"):
        if "meme" in lsegs:
            return _one(_after(segs, lsegs, "meme"), _PAIR), "solana"
        return _one(_after(segs, lsegs, "t"), _MINT), "solana"
    if _on(host, "bullx.io"):
        return _one(query.get("address"), _MINT), _BULLX_CHAINS.get(query.get("chainid", ""))
    if _on(host, "geckoterminal.com"):
        chain = _GECKO_CHAINS.get(lsegs[0]) if segs else None
        if "pools" in lsegs:
            return _one(_after(segs, lsegs, "pools"), _PAIR), chain
        return _one(_after(segs, lsegs, "tokens"), _MINT), chain
    if _on(host, "rugcheck.xyz"):
        return [(s, _MINT) for s in segs], "solana"
    if _on(host, "nansen.ai"):
        return [(v, _WALLET) for k, v in query.items() if k in ("address", "wallet")], None
    if _on(host, "dextools.io"):
        if "pair-explorer" in lsegs:
            k = lsegs.index("pair-explorer")
            chain = _DEXTOOLS_CHAINS.get(lsegs[k - 1]) if k > 0 else None
            return _one(_after(segs, lsegs, "pair-explorer"), _PAIR), chain
        return [], None
    return None


#: Path words of wallet-profiler pages on hosts without their own rule (Nansen's
#: ``/profiler?address=``, ``/profile/``, ``/portfolio/`` pages): what they name is a wallet.
_PROFILER_WORDS = frozenset({"profiler", "profile", "portfolio", "wallet", "wallets"})
#: Share and post-intent links carry the shared link, percent-encoded, in one query parameter.
_SHARE_PATHS = {
    "t.me": ("/share", "/share/url"),
    "telegram.me": ("/share", "/share/url"),
    "twitter.com": ("/intent/tweet", "/intent/post", "/share"),
    "x.com": ("/intent/tweet", "/intent/post", "/share"),
}
_SHARE_NESTING = 3


def _share_target(raw: str) -> str | None:
    """The percent-decoded target of a share link (``t.me/share/url?url=…``), else ``None``.

    The target is taken from the *raw* query, so its own ``?``/``&`` (encoded as ``%3F``/``%26``)
    stay inside it instead of being split off as the share link's parameters.
    """
    lowered = raw.lower()
    if "share" not in lowered and "intent" not in lowered and "msg_url" not in lowered:
        return None
    text = raw if "://" in raw[:12] else "http://" + raw
    try:
        parts = urlsplit(text)
        host = (parts.hostname or "").lower().removeprefix("www.")
    except ValueError:
        return None
    if parts.scheme.lower() == "tg":
        shares = host == "msg_url"
    else:
        shares = parts.path.rstrip("/").lower() in _SHARE_PATHS.get(host, ())
    if not shares:
        return None
    for pair in parts.query.split("&"):
        key, _, value = pair.partition("=")
        if key.lower() == "url" and value:
            return unquote(value)
    return None


@functools.lru_cache(maxsize=4096)  # the same links are posted again and again
def _classify_url(raw: str, nesting: int = 0) -> _UrlInfo:
    target = _share_target(raw) if nesting < _SHARE_NESTING else None
    if target is not None:
        return _classify_url(target, nesting + 1)
    decoded = _delete_cf(unquote(raw))
    scheme, sep, _ = decoded.partition("://")
    if not sep or not scheme.isalpha():
        decoded = "http://" + decoded
    try:
        parts = urlsplit(decoded)
        host = (parts.hostname or "").lower()
    except ValueError:
        return _UrlInfo(((decoded, None),), None)
    host = host.removeprefix("www.")
    segs = [s for s in parts.path.split("/") if s]
    query: dict[str, str] = {}
    for pair in parts.query.split("&"):
        key, _, value = pair.partition("=")
        query.setdefault(key.lower(), value)
    if parts.scheme.lower() == "tg":
        # tg://resolve?domain=<bot>&start=… is the app-scheme twin of t.me/<bot>?start=…
        host = "t.me"
    known = _known_host_slots(host, segs, query)
    if known is not None:
        return _UrlInfo(tuple(known[0]), known[1])
    lsegs = [s.lower() for s in segs]
    if "tx" in lsegs:
        return _UrlInfo(tuple((s, _TX) for s in segs[lsegs.index("tx") + 1 :]), None)
    rest = f"{parts.path}?{parts.query}#{parts.fragment}"
    if _PROFILER_WORDS.intersection(lsegs):
        return _UrlInfo(((rest, _WALLET),), None)
    return _UrlInfo(((rest, None),), None)


# --------------------------------------------------------------------------------------------
# Normalisation

#: Every address is a whole alphanumeric run of at least 32 characters.
_LONG_RUN = re.compile(r"[A-Za-z0-9]{32}")


def _cannot_hold_address(text: str, entities: Sequence[Entity]) -> bool:
    """A cheap proof that ``extract`` would find nothing; most chatter ends here.

    Without a hidden URL or a percent escape, the only text that is scanned is ``text`` with its
    Cf characters deleted (they are non-ASCII, so ASCII text needs no deleting); no run of 32
    alphanumerics there means no candidate at all.
    """
    if "%" in text or any(e.type in ("text_url", "text_link") and e.url for e in entities):
        return False
    plain = text if text.isascii() else _delete_cf(text)
    return _LONG_RUN.search(plain) is None


def _cf_class() -> str:
    # Every Cf character of this Python's Unicode database lives in planes 0, 1 and 14
    # (tests/test_extract_properties.py checks that against the whole range).
    planes = (range(0x20000), range(0xE0000, 0xE1000))
    ranges: list[list[int]] = []
    for c in (c for plane in planes for c in plane if unicodedata.category(chr(c)) == "Cf"):
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    # Ranges, not single characters: sre tests a short range list far faster than a long set.
    return "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in ranges)


#: Invisible format characters (Unicode category Cf), deleted before scanning.
_CF_RE = re.compile(f"[{_cf_class()}]")


def _no_cf(text: str) -> bool:
    """A cheap proof that ``text`` holds no Cf character (``False`` means "maybe")."""
    # Cf characters are never printable; newlines are the usual non-printable ones in a message.
    return text.isascii() or text.replace("\n", "").isprintable()


def _delete_cf(text: str) -> str:
    if _no_cf(text):
        return text
    return _CF_RE.sub("", text) if _CF_RE.search(text) else text


class _Normalised:
    """Plain text with hidden URLs inserted and Cf characters deleted, plus URL spans."""

    def __init__(self, text: str, entities: Sequence[Entity]) -> None:
        if not entities:  # most messages: nothing to insert, no offsets to map
            self.text = _delete_cf(text)
            self.spans = _url_spans(self.text, [], [])
            return
        to_index = _utf16_mapper(text)
        inserts: list[tuple[int, int, str]] = []
        url_entities: list[tuple[int, int]] = []
        for order, ent in enumerate(entities):
            try:
                start = to_index(ent.offset)
                end = to_index(ent.offset + max(ent.length, 0))
            except (TypeError, ValueError, OverflowError):
                continue
            if ent.type in ("text_url", "text_link"):
                if isinstance(ent.url, str) and ent.url:
                    inserts.append((end, order, ent.url))
            elif ent.type == "url" and end > start:
                url_entities.append((start, end))
        inserts.sort()

        # Step 1: hidden URLs go right after their visible text, padded so they stay apart.
        pieces: list[str] = []
        hidden: list[tuple[int, int]] = []
        ins_pos: list[int] = []
        ins_cum: list[int] = []
        prev = 0
        length = 0
        for pos, _, url in inserts:
            pieces.append(text[prev:pos])
            length += pos - prev
            hidden.append((length + 1, length + 1 + len(url)))
            pieces.extend((" ", url, " "))
            length += len(url) + 2
            ins_pos.append(pos)
            ins_cum.append(length - pos)
            prev = pos
        pieces.append(text[prev:])
        expanded = "".join(pieces)

        def shifted(p: int, is_end: bool) -> int:
            k = bisect.bisect_left(ins_pos, p) if is_end else bisect.bisect_right(ins_pos, p)
            return p + (ins_cum[k - 1] if k else 0)

        visible = [(shifted(s, False), shifted(e, True)) for s, e in url_entities]

        # Step 2: delete Cf characters, mapping the spans through the deletion.
        gone = [] if _no_cf(expanded) else [m.start() for m in _CF_RE.finditer(expanded)]
        if gone:
            self.text = _CF_RE.sub("", expanded)

            def squeeze(p: int) -> int:
                return p - bisect.bisect_left(gone, p)

            hidden = [(squeeze(s), squeeze(e)) for s, e in hidden]
            visible = [(squeeze(s), squeeze(e)) for s, e in visible]
        else:
            self.text = expanded
        self.spans = _url_spans(self.text, hidden, visible)


def _utf16_mapper(text: str) -> _IndexMapper:
    # UTF-16 offset of each astral character (it takes two units): index + astral ones before.
    starts = [m.start() + k for k, m in enumerate(_ASTRAL_RE.finditer(text))]
    return _IndexMapper(starts, len(text))


_ASTRAL_RE = re.compile("[\U00010000-\U0010ffff]")


class _IndexMapper:
    """Maps a UTF-16 offset to a Python string index (clamped; mid-surrogate rounds up)."""

    def __init__(self, astral_starts: list[int], n: int) -> None:
        self._astral = astral_starts
        self._n = n

    def __call__(self, offset: int) -> int:
        if not isinstance(offset, int):
            raise TypeError(offset)
        if offset <= 0:
            return 0
        before = bisect.bisect_left(self._astral, offset)
        index = offset - before
        if before and self._astral[before - 1] == offset - 1:
            index += 1  # the offset points between the two halves of a surrogate pair
        return min(index, self._n)


def _url_spans(
    text: str, hidden: list[tuple[int, int]], visible_entities: list[tuple[int, int]]
) -> list[tuple[int, int, bool]]:
    """Non-overlapping (start, end, is_hidden) URL spans, sorted by start."""
    spans: list[tuple[int, int, bool]] = [(s, e, True) for s, e in hidden if e > s]
    taken = sorted((s, e) for s, e, _ in spans)

    def free(s: int, e: int) -> bool:
        k = bisect.bisect_left(taken, (s, s))
        if k < len(taken) and taken[k][0] < e:
            return False
        return not (k > 0 and taken[k - 1][1] > s)

    def add(s: int, e: int) -> None:
        if e > s and free(s, e):
            bisect.insort(taken, (s, e))
            spans.append((s, e, False))

    # Substring tests first: a regex with no literal prefix tries every position of the text.
    if "://" in text:
        for m in _SCHEME_URL_RE.finditer(text):
            add(m.start(), m.end())
    # Bare links are looked for only between the URLs found so far: the path segments inside a
    # URL ("solana/", "token/") would each be a host candidate to reject.
    gaps: list[tuple[int, int]] = []
    prev = 0
    for s, e in taken:
        gaps.append((prev, s))
        prev = max(prev, e)
    gaps.append((prev, len(text)))
    bare_end = 0
    for gap_start, gap_end in gaps:
        if text.find("/", gap_start, gap_end) < 0:
            continue
        for m in _HOST_SLASH_RE.finditer(text, gap_start, gap_end):
            if not m.group()[:-1].lower().endswith(_BARE_DOMAINS):
                continue
            start = m.start()
            # Skip hosts inside an earlier URL before measuring the tail: re-measuring would
            # make "x.com/?x.com/?x.com/…" quadratic.
            if start < bare_end or not free(start, start + 1):
                continue
            while start > 0 and text[start - 1] in _HOST_CHAR:
                start -= 1
            if start > 0 and text[start - 1] in _BEFORE_BARE_HOST:
                continue
            tail = _URL_TAIL_RE.match(text, m.end())
            bare_end = tail.end() if tail else m.end()
            add(start, bare_end)
    for s, e in visible_entities:
        add(s, e)
    spans.sort()
    return spans


# --------------------------------------------------------------------------------------------
# Message-level EVM chain hints

_CHAIN_LINE_RE = re.compile(
    r"(?i)(?<![A-Za-z0-9])(?:chain|network|blockchain)\s*[:：=\-–—]\s*#?([A-Za-z]+)"
)
_HASHTAG_RE = re.compile(r"(?i)#(eth|ethereum|base|bsc|bnb)(?![A-Za-z0-9])")
_ON_CHAIN_RE = re.compile(r"(?i)(?<![A-Za-z0-9])on\s+#?(eth|ethereum|base|bsc|bnb)(?![A-Za-z0-9])")


def _text_chain_hints(text: str) -> set[str]:
    hints: set[str] = set()
    for rx in (_CHAIN_LINE_RE, _HASHTAG_RE, _ON_CHAIN_RE):
        for m in rx.finditer(text):
            chain = _CHAIN_WORDS.get(m.group(1).lower())
            if chain is not None:
                hints.add(chain)
    return hints


# --------------------------------------------------------------------------------------------
# Extraction


class _Evidence:
    # A plain slotted class: one is made per distinct address, up to thousands per message.
    __slots__ = ("first", "is_evm", "kinds", "label_chains", "link_chains")

    def __init__(self, first: tuple[int, int], is_evm: bool, kinds: set[str | None]) -> None:
        self.first = first
        self.is_evm = is_evm
        self.kinds = kinds
        self.link_chains: set[str] = set()
        self.label_chains: set[str] = set()


def _candidates(text: str) -> Iterator[tuple[int, str, bool]]:
    """Whole alphanumeric runs of ``text`` that are addresses: (start, canonical form, is_evm)."""
    for m in _LONG_ALNUM_RUN.finditer(text):
        run = m.group()
        size = len(run)
        if size == 42 and _EVM_RUN.fullmatch(run) is not None:
            yield m.start(), run.lower(), True
        elif size <= 44 and _B58_RUN.fullmatch(run) is not None and _decodes_to_32_bytes(run):
            yield m.start(), run, False


def extract(text: str, entities: Sequence[Entity] = (), *, max_addresses: int = 20) -> Extraction:
    """Extract the addresses a call message names, following the extraction rules.

    Args:
        text: Plain message text (Telethon ``message.message``, not the markdown ``.text``).
        entities: The message's entities (``Entity`` values, or Telethon ``MessageEntity*``
            objects, converted as by ``entities_from_telethon``); offsets and lengths in UTF-16
            code units. Hidden ``text_url``/``text_link`` targets are scanned right after their
            visible text.
        max_addresses: Cap on the total number of addresses returned, counted over mints, pairs,
            EVM and EVM pairs together in order of first appearance; the rest are counted in
            ``Extraction.dropped``.

    Returns:
        The mints, pairs, EVM addresses and EVM pairs, each once, in order of first appearance,
        with deny-listed program/stablecoin addresses removed.

    Raises:
        ValueError: If ``max_addresses`` is negative.
    """
    if max_addresses < 0:
        raise ValueError("max_addresses must be >= 0")
    # Telethon MessageEntity* objects are accepted too, so extract(m.message, m.entities) works.
    converted = _to_entities(entities)
    if _cannot_hold_address(text or "", converted):
        return Extraction()
    norm = _Normalised(text or "", converted)
    ntext = norm.text
    evidence: dict[str, _Evidence] = {}

    def note(address: str, is_evm: bool, key: tuple[int, int], kind: str | None) -> None:
        if kind == _PAIR and not is_evm and address.endswith("pump"):
            kind = _MINT
        ev = evidence.get(address)
        if ev is None:
            evidence[address] = _Evidence(key, is_evm, {kind})
            return
        if key < ev.first:
            ev.first = key
        ev.kinds.add(kind)

    hints: set[str] = set()
    masked: list[str] = []
    prev = 0
    for start, end, is_hidden in norm.spans:
        masked.append(ntext[prev:start])
        masked.append((" " if is_hidden else _URL_MASK) * (end - start))
        prev = end
        info = _classify_url(ntext[start:end])
        link_chain = info.chain if info.chain in _EVM_CHAINS else None
        if link_chain is not None:
            hints.add(link_chain)
        for sub, (address, is_evm, kind) in enumerate(info.found, 1):
            note(address, is_evm, (start, sub), kind)
            if is_evm and link_chain is not None:
                evidence[address].link_chains.add(link_chain)
    masked.append(ntext[prev:])
    label_text = "".join(masked)

    for pos, address, is_evm in _candidates(label_text):
        label = _label_before(label_text, pos)
        note(address, is_evm, (pos, 0), label.kind)
        if is_evm:
            evidence[address].label_chains |= label.chains

    if any(ev.is_evm for ev in evidence.values()):  # hints only ever name an EVM chain
        hints |= _text_chain_hints(label_text)
    return _decide(evidence, hints, max_addresses)


def _unique(chains: set[str]) -> str | None:
    return next(iter(chains)) if len(chains) == 1 else None


def _decide(evidence: dict[str, _Evidence], hints: set[str], cap: int) -> Extraction:
    chosen: list[tuple[tuple[int, int], str, int]] = []  # (first, address, bucket)
    for address, ev in evidence.items():
        if address in _DENY:
            continue
        kinds = ev.kinds
        dropping = _WALLET in kinds or _TX in kinds
        # Rule 5: mint evidence wins, then wallet/tx evidence drops, then unlabelled counts.
        if _MINT in kinds or (None in kinds and not dropping):
            bucket = _EVM if ev.is_evm else _MINTS
        elif dropping:
            continue
        else:
            bucket = _EVM_PAIRS if ev.is_evm else _PAIRS
        chosen.append((ev.first, address, bucket))
    if len(chosen) > 1:
        chosen.sort()
    kept = chosen[:cap]
    plain: tuple[list[str], list[str]] = ([], [])
    evm: tuple[list[EvmAddress], list[EvmAddress]] = ([], [])
    for _, address, bucket in kept:
        if bucket < _EVM:
            plain[bucket].append(address)
            continue
        ev = evidence[address]
        if ev.link_chains:
            chain = _unique(ev.link_chains)
        elif ev.label_chains:
            chain = _unique(ev.label_chains)
        else:
            chain = _unique(hints)
        evm[bucket - _EVM].append(EvmAddress(address, chain))
    return Extraction(
        mints=tuple(plain[_MINTS]),
        pairs=tuple(plain[_PAIRS]),
        evm=tuple(evm[0]),
        evm_pairs=tuple(evm[1]),
        dropped=len(chosen) - len(kept),
    )


_MINTS, _PAIRS, _EVM, _EVM_PAIRS = range(4)
_DENY = _SOLANA_DENY | _EVM_DENY


# --------------------------------------------------------------------------------------------
# Telethon adapter

_TELETHON_TYPES = {
    "MessageEntityTextUrl": "text_url",
    "MessageEntityUrl": "url",
    "MessageEntityCode": "code",
    "MessageEntityPre": "pre",
    "MessageEntityBold": "bold",
    "MessageEntityItalic": "italic",
    "MessageEntityUnderline": "underline",
    "MessageEntityStrike": "strikethrough",
    "MessageEntitySpoiler": "spoiler",
    "MessageEntityMention": "mention",
    "MessageEntityMentionName": "text_mention",
    "InputMessageEntityMentionName": "text_mention",
    "MessageEntityHashtag": "hashtag",
    "MessageEntityCashtag": "cashtag",
    "MessageEntityBotCommand": "bot_command",
    "MessageEntityEmail": "email",
    "MessageEntityPhone": "phone_number",
    "MessageEntityCustomEmoji": "custom_emoji",
    "MessageEntityBlockquote": "blockquote",
    "MessageEntityBankCard": "bank_card",
    "MessageEntityUnknown": "unknown",
}
_CAMEL_RE = re.compile(r"(?<!^)(?=[A-Z])")


def entities_from_telethon(message: object) -> tuple[Entity, ...]:
    """Convert a Telethon message's entities to :class:`Entity` values with Bot-API names.

    Duck-typed on class names and attributes, so Telethon is not imported.

    Args:
        message: A ``telethon.tl.types.Message`` (or anything with an ``entities`` list of
            ``MessageEntity*`` objects having ``offset``/``length``, and ``url`` on
            ``MessageEntityTextUrl``).

    Returns:
        The entities in their original order; malformed entries are skipped.
    """
    return _to_entities(getattr(message, "entities", None) or ())


def _to_entities(items: Iterable[object]) -> tuple[Entity, ...]:
    out: list[Entity] = []
    for ent in items:
        if isinstance(ent, Entity):
            out.append(ent)
            continue
        offset = getattr(ent, "offset", None)
        length = getattr(ent, "length", None)
        if not isinstance(offset, int) or not isinstance(length, int):
            continue
        name = type(ent).__name__
        kind = _TELETHON_TYPES.get(name)
        if kind is None:
            kind = _CAMEL_RE.sub("_", name.removeprefix("MessageEntity")).lower()
        url = getattr(ent, "url", None) if kind == "text_url" else None
        out.append(Entity(kind, offset, length, url if isinstance(url, str) else None))
    return tuple(out)
