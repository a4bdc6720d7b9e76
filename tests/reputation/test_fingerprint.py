"""Text fingerprints: what normalisation removes, exact and near copies."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from callsbot.reputation.fingerprint import (
    MIN_CHARS,
    fingerprint,
    hamming,
    normalise,
    sha1_hex,
    simhash64,
)
from tests.tg import mint

CALL = (
    "🚀 NEW GEM ALERT 🚀\n{address}\nMC {mcap} | LP locked | dev doxxed\n"
    "Chart: https://dexscreener.com/solana/{address}\nBuy with ref_{ref} on @{bot} — {x}x incoming"
)


def call(address: str, mcap: str, ref: str, bot: str, x: int) -> str:
    return CALL.format(address=address, mcap=mcap, ref=ref, bot=bot, x=x)


def test_normalise_removes_addresses_urls_referrals_handles_numbers_case_and_space() -> None:
    text = call(mint(1), "$120k", "abc123", "BonkBot", 10)
    assert normalise(text) == (
        "🚀 new gem alert 🚀 mc | lp locked | dev doxxed chart: buy with on — incoming"
    )
    assert normalise("0x" + "ab" * 20 + "  ＢＵＹ   ２０ｘ") == "buy"


def test_a_copy_with_its_own_address_links_codes_and_numbers_has_the_same_sha1() -> None:
    original = fingerprint(call(mint(1), "$120k", "abc123", "BonkBot", 10))
    copy = fingerprint(call(mint(2), "$95.5K", "zzz9", "TrojanBot", 50))
    assert original is not None
    assert copy is not None
    assert original.sha1 == copy.sha1
    assert original.simhash == copy.simhash


def test_a_near_copy_is_within_three_bits_and_an_unrelated_text_is_not() -> None:
    original = call(mint(1), "$120k", "a", "b", 10)
    near = original + " 🔥"  # a copy-cat signs with its own emoji
    other = "Market update: SOL holding support, alts bleeding, stay safe and size down today."
    a, b, c = (fingerprint(t) for t in (original, near, other))
    assert a is not None
    assert b is not None
    assert c is not None
    assert a.sha1 != b.sha1
    assert hamming(a.simhash, b.simhash) <= 3
    assert hamming(a.simhash, c.simhash) > 10


def test_short_texts_get_no_fingerprint() -> None:
    assert fingerprint(f"{mint(3)} 🚀") is None
    assert fingerprint("x" * MIN_CHARS) is not None


def test_fingerprints_are_stable_across_processes() -> None:
    # Fixed values: a salted hash() would change them from run to run.
    assert sha1_hex("abc") == "a9993e364706816aba3e25717850c26c9cd0d89d"
    assert simhash64("") == 0
    assert simhash64("lp locked, dev doxxed") == simhash64("lp locked, dev doxxed")


@given(st.text(max_size=200))
def test_normalise_is_idempotent_and_simhash_is_64_bits(text: str) -> None:
    once = normalise(text)
    assert normalise(once) == once
    assert 0 <= simhash64(once) < 2**64
