"""Text fingerprints for copy detection (docs/outcomes.md section 6): pure, no I/O.

A call group that copies another changes the address it pastes, its own links, referral codes,
handles and numbers, and little else. :func:`normalise` removes exactly those, folds case and
whitespace, and what is left is fingerprinted twice:

- :func:`sha1_hex`: equal normalised texts, equal hashes;
- :func:`simhash64`: a 64-bit simhash over character 4-grams (Manku et al., WWW 2007), so near
  copies differ in a few bits (:func:`hamming` ≤ 3) and unrelated texts in about 32.

The gram hash is simple tabulation hashing: ``T0[c0] ^ T1[c1] ^ T2[c2] ^ T3[c3]`` where
``Tk[c]`` is the 8-byte BLAKE2b digest of ``f"{k}:{c}"`` (UTF-8) read little-endian. It is
defined here, not by Python's salted ``hash()``, so every process and every later reader computes
the same value. Bit ``b`` of the simhash is set when more than half of the text's grams (counted
with repetition) have it set. A text shorter than four characters is one gram padded with NUL;
an empty text has simhash 0.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import attrs

#: Bits of a simhash.
BITS = 64
_MASK64 = (1 << BITS) - 1
GRAM = 4

_URL = re.compile(
    r"(?:https?://|www\.)\S+"
    r"|\b(?:[\w-]+\.)+(?:com|io|fun|me|xyz|org|net|app|gg|co|so|trade|finance|ai|bot|tg|info)"
    r"\b(?:[/?]\S*)?",
    re.IGNORECASE,
)
#: Solana (base58, 32–44 characters) and EVM (0x + 40 or 64 hex) addresses and hashes.
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{40}(?:[0-9a-fA-F]{24})?\b|[1-9A-HJ-NP-Za-km-z]{32,44}")
#: ``ref_abc``, ``ref=abc``, ``r-abc``, ``invite:abc``, ``code: abc`` (the code itself too).
_REFERRAL = re.compile(r"\b(?:ref|referral|invite|inv|code|r)(?:[_=:-]|:\s+)[\w-]+", re.IGNORECASE)
#: ``@handle``: a group's own signature, as much as a referral code is.
_HANDLE = re.compile(r"@\w+")
#: ``5``, ``1,000``, ``0.5``, ``$300k``, ``10x``, ``25%``, ``2.5M``.
_NUMBER = re.compile(r"[$€£]?\d+(?:[.,_]\d+)*(?:[kmbx%]\b|%)?", re.IGNORECASE)
#: Zero-width and bidi controls that copy-paste adds or removes invisibly.
_INVISIBLE = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """The text with addresses, URLs, referral codes, handles and numbers removed.

    Compatibility characters are folded (NFKC: 𝐍𝐄𝐖 → NEW, full-width digits → digits), then
    URLs, addresses, referral codes, ``@handles`` and numbers are replaced by a space, case is
    folded and runs of whitespace become one space. Emoji and punctuation stay: they are a
    group's style, which is what a copy keeps.
    """
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    for pattern in (_URL, _ADDRESS, _REFERRAL, _HANDLE, _NUMBER):
        text = pattern.sub(" ", text)
    return _SPACE.sub(" ", text.casefold()).strip()


def sha1_hex(normalised: str) -> str:
    """SHA-1 of the normalised text's UTF-8 bytes, 40 hex digits."""
    return hashlib.sha1(normalised.encode("utf-8"), usedforsecurity=False).hexdigest()


# One table per gram position, filled lazily: character -> its 8 random bytes.
_TABLES: tuple[dict[str, bytes], ...] = ({}, {}, {}, {})
_KNOWN: set[str] = set()
#: Per bit k: a byte table mapping each byte value to 1 when its bit k is set, else 0.
_BIT_OF = tuple(bytes((v >> k) & 1 for v in range(256)) for k in range(8))


def _fill(chars: set[str]) -> None:
    for c in chars - _KNOWN:
        for k, table in enumerate(_TABLES):
            table[c] = hashlib.blake2b(f"{k}:{c}".encode(), digest_size=8).digest()
        _KNOWN.add(c)


def simhash64(normalised: str) -> int:
    """64-bit simhash (unsigned) of the character 4-grams of ``normalised``."""
    if not normalised:
        return 0
    text = normalised.ljust(GRAM, "\0")
    n = len(text) - GRAM + 1
    _fill(set(text))
    # Every gram hash at once: the four tables' bytes for the text shifted by 0..3 characters,
    # as four big integers XORed together, give the n gram hashes as n 64-bit words.
    words = 0
    for k, table in enumerate(_TABLES):
        words ^= int.from_bytes(b"".join(map(table.__getitem__, text[k : k + n])), "little")
    # Count each bit position over all words without a per-gram loop: the words' bytes at
    # byte position j, translated to 0/1 by bit k, counted by bytes.count.
    raw = words.to_bytes(8 * n, "little")
    result = 0
    for j in range(8):
        column = raw[j::8]
        for k, bit_table in enumerate(_BIT_OF):
            if 2 * column.translate(bit_table).count(1) > n:
                result |= 1 << (8 * j + k)
    return result


def hamming(a: int, b: int) -> int:
    """Number of differing bits of two 64-bit simhashes (signed or unsigned)."""
    return ((a ^ b) & _MASK64).bit_count()


def to_signed(value: int) -> int:
    """An unsigned 64-bit value as the signed integer a BIGINT column holds."""
    value &= _MASK64
    return value - (1 << BITS) if value >= 1 << (BITS - 1) else value


def to_unsigned(value: int) -> int:
    """A BIGINT column's signed value back to the unsigned 64-bit simhash."""
    return value & _MASK64


@attrs.frozen
class Fingerprint:
    """The two fingerprints of one message text.

    Attributes:
        sha1: SHA-1 (hex) of the normalised text.
        simhash: 64-bit simhash, unsigned.
    """

    sha1: str
    simhash: int


def fingerprint(text: str) -> Fingerprint:
    """Normalise ``text`` once and return both fingerprints."""
    norm = normalise(text)
    return Fingerprint(sha1_hex(norm), simhash64(norm))
