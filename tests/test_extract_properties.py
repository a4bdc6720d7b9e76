"""Properties of extract() that must hold for any input."""

from __future__ import annotations

import hashlib

import base58
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.limits import MAX_ENTITIES, MAX_UTF16, shapes
from callsbot.extract import Extraction, extract, is_evm_address, is_solana_address
from callsbot.models import Entity

#: Hostile inputs take well under half a second each; catastrophic backtracking or any
#: quadratic walk over 100 KB takes minutes. The guard fails such a test instead of hanging it.
HOSTILE_TIMEOUT = pytest.mark.timeout(5)

_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _mint(i: int) -> str:
    return base58.b58encode(hashlib.sha256(f"prop:{i}".encode()).digest()).decode()


MINT_A, MINT_B, MINT_C = _mint(1), _mint(2), _mint(3)
EVM_A = "0x" + hashlib.sha256(b"prop-evm").hexdigest()[:40].upper()
SIG = base58.b58encode(hashlib.sha512(b"prop-sig").digest()).decode()

# Pieces of real call messages, so that generated texts hit labels, links and addresses.
PIECES = [
    MINT_A,
    MINT_B,
    MINT_C,
    MINT_A[:20],
    MINT_B[20:],
    EVM_A,
    SIG,
    "CA:",
    "ca -",
    "Dev wallet",
    "Pair:",
    "合约地址：",
    "冲！",
    "Кошелек:",
    "Контракт:",
    "#base",
    "on ETH",
    "Chain: BSC",
    "$PEPE",
    "https://dexscreener.com/solana/",
    "https://pump.fun/coin/",
    "pump.fun/profile/",
    "https://t.me/solana_trojanbot?start=r-x-",
    "https://solscan.io/account/",
    "https://x.com/",
    "?maker=",
    "pump",
    "👉",
    "🚀",
    "📈",
    "**",
    "`",
    " ",
    "\n",
    "\n\n",
    "%",
    "/",
    "а",
]
CF_CHARS = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u200e", "\u202e"]
ENTITY_TYPES = ["text_url", "text_link", "url", "code", "pre", "bold", "cashtag", "custom_emoji"]

message_texts = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)
any_text = st.one_of(st.text(max_size=300), message_texts)
urls = st.one_of(
    st.none(),
    st.text(max_size=80),
    st.sampled_from(PIECES).map(lambda p: p + MINT_C),
    st.builds(lambda a, b: a + b, st.sampled_from(PIECES), st.sampled_from(PIECES)),
)
entities = st.lists(
    st.builds(
        Entity,
        type=st.sampled_from(ENTITY_TYPES),
        offset=st.integers(min_value=-10, max_value=400),
        length=st.integers(min_value=-10, max_value=400),
        url=urls,
    ),
    max_size=6,
)


def _all_addresses(got: Extraction) -> list[str]:
    return [
        *got.mints,
        *got.pairs,
        *(e.address for e in got.evm),
        *(e.address for e in got.evm_pairs),
    ]


def _check_well_formed(got: Extraction) -> None:
    for a in (*got.mints, *got.pairs):
        assert is_solana_address(a)
        assert len(base58.b58decode(a)) == 32
    for e in (*got.evm, *got.evm_pairs):
        assert is_evm_address(e.address)
        assert e.address == e.address.lower()
        assert e.chain in (None, "ethereum", "base", "bsc")
    found = _all_addresses(got)
    assert len(found) == len(set(found))
    assert got.dropped >= 0


@_SETTINGS
@given(text=any_text, ents=entities, cap=st.integers(min_value=0, max_value=25))
def test_never_raises_and_output_is_well_formed(text: str, ents: list[Entity], cap: int) -> None:
    got = extract(text, ents, max_addresses=cap)
    _check_well_formed(got)
    assert len(got) <= cap


@_SETTINGS
@given(text=message_texts, data=st.data())
def test_zero_width_characters_change_nothing(text: str, data: st.DataObject) -> None:
    positions = data.draw(st.lists(st.integers(min_value=0, max_value=len(text)), max_size=12))
    chars = data.draw(
        st.lists(st.sampled_from(CF_CHARS), min_size=len(positions), max_size=len(positions))
    )
    noisy = list(text)
    for pos, ch in sorted(zip(positions, chars, strict=True), reverse=True):
        noisy.insert(pos, ch)
    assert extract("".join(noisy)) == extract(text)


@_SETTINGS
@given(text=message_texts)
def test_output_has_no_duplicates_and_is_stable(text: str) -> None:
    got = extract(text)
    _check_well_formed(got)
    assert extract(text) == got


@_SETTINGS
@given(text=message_texts, cap=st.integers(min_value=0, max_value=5))
def test_cap_keeps_a_prefix_in_order_of_appearance(text: str, cap: int) -> None:
    full = extract(text, max_addresses=1000)
    capped = extract(text, max_addresses=cap)
    assert len(capped) + capped.dropped == len(full)
    assert set(_all_addresses(capped)) <= set(_all_addresses(full))
    assert capped.mints == full.mints[: len(capped.mints)]


HOSTILE = [
    "1" * 100_000,
    "a" * 100_000,
    "x" * 44 + (" " + "x" * 44) * 2200,
    "CA: " * 25_000 + MINT_A,
    ("ca " * 30_000) + "\n" + MINT_A,
    "\n" * 100_000 + MINT_A,
    "👇" * 50_000 + MINT_A,
    "https://" + "a/" * 50_000,
    "x.com/?" * 14_000,
    "pump.fun/" * 11_000,
    "t.me/" * 20_000,
    "a." * 50_000 + "t.me/" + MINT_A,
    "Chain" + " " * 100_000,
    "on" + " " * 100_000 + "base",
    "#" * 100_000,
    "合" * 100_000 + MINT_A,
    "\u200b" * 100_000,
    ("%" * 1000 + "https://x.com/" + "%41" * 1000 + " ") * 20,
    (MINT_A + " ") * 2200,
    (MINT_A[:30] + "-") * 3000,
    (SIG + "\n") * 1100,
    ("0x" + "ab" * 20 + " ") * 2300,
    "Dev wallet 👇\n" * 7000 + MINT_A,
    "https://t.me/share/url?url=" + "https%3A%2F%2Ft.me%2Fshare%2Furl%3Furl%3D" * 2400,
    ("t.me/share/url?url=https%3A%2F%2Fpump.fun%2Fcoin%2F" + MINT_A + " ") * 1200,
    "Популярный " * 9000 + MINT_A,
    "合约地址" * 25_000 + MINT_A,
    ("app.nansen.ai/profiler?address=" + MINT_A + "&") * 1300,
]


@HOSTILE_TIMEOUT
def test_hostile_inputs_finish() -> None:
    for text in HOSTILE:
        got = extract(text)
        _check_well_formed(got)


@HOSTILE_TIMEOUT
def test_hostile_input_with_many_entities_finishes() -> None:
    text = ("🚀 Chart " + MINT_A + "\n") * 1500
    ents = [
        Entity("text_url", i * 3, 5, f"https://dexscreener.com/solana/{MINT_B}?i={i}")
        for i in range(0, 30_000, 7)
    ]
    got = extract(text, ents)
    _check_well_formed(got)
    # Entities ending inside an address split it (their URL is inserted there), so only the
    # hidden pair is certain.
    assert got.pairs == (MINT_B,)


@HOSTILE_TIMEOUT
def test_backtracking_bait_finishes() -> None:
    bait = [
        "https://" + "-" * 50_000 + "!",
        "Chain" + "\t" * 50_000 + "x",
        "aaaa." * 20_000 + "com/",
        ("0x" + "f" * 39 + "g") * 2000,
        "1" * 43 + "0" + "1" * 43,
    ]
    for text in bait:
        _check_well_formed(extract(text))


@HOSTILE_TIMEOUT
def test_messages_at_telegrams_limits_finish() -> None:
    built = shapes(7)
    assert len(built) >= 10
    for shape in built:
        assert len(shape.text.encode("utf-16-le")) // 2 <= MAX_UTF16
        assert len(shape.entities) <= MAX_ENTITIES
        got = extract(shape.text, shape.entities)
        _check_well_formed(got)
        assert len(got) <= 20


def test_the_cf_class_covers_every_cf_character_of_this_unicode_database() -> None:
    import sys
    import unicodedata

    from callsbot.extract import _CF_RE

    every_cf = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"]
    assert every_cf
    assert all(_CF_RE.fullmatch(c) for c in every_cf)
    # The fast path that skips the Cf scan relies on this.
    assert not any(c.isprintable() for c in every_cf)
    assert _CF_RE.search("plain ascii, кириллица, 中文, 🚀") is None


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        st.text(alphabet=_B58, min_size=1, max_size=50),
        st.binary(min_size=28, max_size=36).map(lambda b: base58.b58encode(b).decode()),
        st.builds(
            lambda zeros, rest: base58.b58encode(b"\x00" * zeros + rest).decode(),
            st.integers(min_value=0, max_value=33),
            st.binary(min_size=0, max_size=33),
        ),
    )
)
def test_the_32_byte_check_agrees_with_a_real_base58_decode(s: str) -> None:
    from callsbot.extract import _decodes_to_32_bytes

    assert _decodes_to_32_bytes(s) == (len(base58.b58decode(s)) == 32)


def test_the_32_byte_check_at_its_edges() -> None:
    from callsbot.extract import _decodes_to_32_bytes

    for zeros in range(0, 33):
        for body in (b"", b"\x01", b"\xff" * (32 - zeros), b"\x01" + b"\x00" * (31 - zeros)):
            for extra in (b"", b"\x00", b"\x01"):
                raw = b"\x00" * zeros + body + extra
                text = base58.b58encode(raw).decode()
                assert _decodes_to_32_bytes(text) == (len(raw) == 32), raw.hex()
