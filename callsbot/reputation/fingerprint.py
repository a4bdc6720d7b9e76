"""Text fingerprints for "the same text from another group" (docs/outcomes.md section 6).

A copy-cat group keeps a call's wording and swaps what identifies the source: the address it
pastes, its links, referral codes, ``@handles`` and numbers (prices, market caps, multiples).
:func:`normalise` removes exactly those and folds case and whitespace; what is left is hashed
twice:

- :func:`sha1_hex`: SHA-1 of the normalised text (equal texts, equal hashes);
- :func:`simhash64`: a 64-bit simhash over character 4-grams (Manku et al., WWW 2007), so a
  near copy differs in a few bits (:func:`hamming` ≤ 3) and unrelated texts in about 32.

Texts whose normalised form is shorter than :data:`MIN_CHARS` get no fingerprint: "🚀 buy" or
an address alone is what every group posts, and two of them say nothing about copying.

The history branch keeps its own copy of these rules (``callsbot/history/fingerprint.py``); the
two are merged into one module when both branches land (docs/consensus.md).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter

import attrs

#: Bits of a simhash.
BITS = 64
#: Characters per gram.
GRAM = 4
#: Normalised texts shorter than this get no fingerprint.
MIN_CHARS = 16
_MASK = (1 << BITS) - 1

_URL = re.compile(
    r"(?:https?://|www\.|t\.me/)\S+"
    r"|\b[\w-]+(?:\.[\w-]+)*\.(?:com|io|fun|me|xyz|org|net|app|gg|co|so|trade|finance|ai|bot)"
    r"\b(?:/\S*)?",
    re.IGNORECASE,
)
#: Solana base58 addresses (32–44 characters) and EVM addresses or hashes.
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{40,64}\b|[1-9A-HJ-NP-Za-km-z]{32,44}")
#: ``ref_abc``, ``ref=abc``, ``?ref=abc`` (outside a URL), ``code: abc``, ``@handle``.
_REFERRAL = re.compile(
    r"\b(?:ref|referral|invite|inv|code)\s*[_=:-]\s*[\w-]+|@\w+",
    re.IGNORECASE,
)
#: ``5``, ``1,000``, ``0.5``, ``$300k``, ``10x``, ``25%``, ``2.5M``.
_NUMBER = re.compile(r"[$€£]?\d+(?:[.,_]\d+)*(?:[kmbx%]\b|%)?", re.IGNORECASE)
#: Zero-width and bidi characters that copy-paste adds or drops unseen.
_INVISIBLE = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """``text`` without addresses, URLs, referral codes, handles and numbers; case and space
    folded.

    Compatibility forms are folded first (NFKC: 𝐁𝐔𝐘 → BUY, full-width digits → digits). Emoji
    and punctuation stay: they are a group's style, which is what a copy keeps.
    """
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    for pattern in (_URL, _ADDRESS, _REFERRAL, _NUMBER):
        text = pattern.sub(" ", text)
    return _SPACE.sub(" ", text.casefold()).strip()


def sha1_hex(normalised: str) -> str:
    """SHA-1 (40 hex digits) of the UTF-8 bytes of an already normalised text."""
    return hashlib.sha1(normalised.encode("utf-8"), usedforsecurity=False).hexdigest()


def _gram_hash(gram: str) -> int:
    # A keyed-by-nothing BLAKE2b, not Python's salted hash(): every process must agree.
    return int.from_bytes(hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest(), "little")


def simhash64(normalised: str) -> int:
    """The unsigned 64-bit simhash of the character 4-grams of an already normalised text.

    Bit ``b`` is set when more than half of the grams (counted with repetition) have it set.
    A text shorter than a gram is one gram; the empty text has simhash 0.
    """
    if not normalised:
        return 0
    grams: Counter[str] = Counter(
        normalised[i : i + GRAM] for i in range(max(1, len(normalised) - GRAM + 1))
    )
    total = sum(grams.values())
    rows: list[str] = []
    for gram, times in grams.items():
        rows.extend([format(_gram_hash(gram), "064b")] * times)
    result = 0
    # zip(*rows) walks the 64 bit columns in C; column 0 is the most significant bit.
    for column, bits in enumerate(zip(*rows, strict=True)):
        if 2 * bits.count("1") > total:
            result |= 1 << (BITS - 1 - column)
    return result


def hamming(a: int, b: int) -> int:
    """Differing bits of two 64-bit simhashes."""
    return ((a ^ b) & _MASK).bit_count()


@attrs.frozen
class Fingerprint:
    """Both fingerprints of one text.

    Attributes:
        sha1: SHA-1 (hex) of the normalised text.
        simhash: its 64-bit simhash (unsigned).
    """

    sha1: str
    simhash: int


def fingerprint(text: str) -> Fingerprint | None:
    """Normalise ``text`` once and fingerprint it; ``None`` when too short to tell anything."""
    norm = normalise(text)
    if len(norm) < MIN_CHARS:
        return None
    return Fingerprint(sha1_hex(norm), simhash64(norm))
