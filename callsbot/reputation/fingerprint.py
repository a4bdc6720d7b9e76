"""Text fingerprints as the independence rules use them (outcomes.md section 6).

The one normalisation and gram hash live in :mod:`callsbot.fingerprint`, so the fingerprints the
history stores and the ones compared here are the same numbers. What this adds is the
independence rule's floor: a text that normalises to fewer than :data:`MIN_CHARS` characters
("🚀", "CA:") says nothing about who copied whom and gets no fingerprint.
"""

from __future__ import annotations

from callsbot.fingerprint import BITS, GRAM, Fingerprint, hamming, normalise, sha1_hex, simhash64

__all__ = [
    "BITS",
    "GRAM",
    "MIN_CHARS",
    "Fingerprint",
    "fingerprint",
    "hamming",
    "normalise",
    "sha1_hex",
    "simhash64",
]

#: Shortest normalised text that gets a fingerprint.
MIN_CHARS = 16


def fingerprint(text: str) -> Fingerprint | None:
    """Normalise ``text`` once and fingerprint it; ``None`` when too short to tell anything."""
    norm = normalise(text)
    if len(norm) < MIN_CHARS:
        return None
    return Fingerprint(sha1_hex(norm), simhash64(norm))
