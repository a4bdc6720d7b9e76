"""Tapes from the three recording formats, and cached OHLCV bodies."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from callsbot.alert import Alert
from callsbot.demo import load_session
from callsbot.events import AlertSent, BuyScored, LevelReached, MentionRecorded, VerdictMade
from callsbot.history import recording
from callsbot.market.prices import Timeframe
from callsbot.models import Candle, MessageRef, Reason, Status, Verdict
from callsbot.replay.candles import CandleCacheError, envelope, load_paths
from callsbot.replay.load import TapeError, load_tape, tape_from_history, tape_from_session
from callsbot.replay.tape import Gate
from callsbot.scoring import Consensus, ScoreCard, ScoreLine
from callsbot.testing.geckoterminal import ohlcv_body
from tests.replay.factory import T0, TOKENS, buy, snapshot

A, B = TOKENS[0], TOKENS[1]
WSOL = "So11111111111111111111111111111111111111112"
CARD = ScoreCard((ScoreLine(2.0, "smart-money buy"),), 2.0, Consensus(0, (), False, ""), 2.0)


def mention(
    at: float,
    message_id: int,
    token: str,
    *,
    text: str = "",
    kind: str = "mint",
    pair: str | None = None,
) -> MentionRecorded:
    # Every mention of one message carries that message's reference.
    ref = MessageRef("live", -1001, "@alpha", message_id, int(T0) - 10 + message_id, T0 - 0.5)
    return MentionRecorded(
        at=at,
        ref=ref,
        token=token,
        mention_kind=kind,
        chain="solana",
        count=1,
        pair=pair,
        text=text,
    )


def export(events: list[Any]) -> io.StringIO:
    out = io.StringIO()
    recording.write(events, out)
    out.seek(0)
    return out


def test_mentions_of_one_message_become_that_message_delivered_when_recorded() -> None:
    text = f"two calls: {A} and {B}"
    tape = tape_from_history(
        export(
            [
                VerdictMade(
                    at=T0, chain="solana", verdict=Verdict(A, Status.VALID, Reason.OK, snapshot(A))
                ),
                mention(T0 + 1, 7, A, text=text),
                mention(T0 + 1.5, 7, B, text=text),
                LevelReached(
                    at=T0 + 1,
                    token=A,
                    chain="solana",
                    level=1,
                    ts=int(T0),
                    ref=mention(T0, 7, A).ref,
                ),
            ]
        )
    )
    assert len(tape.messages) == 1
    only = tape.messages[0]
    assert only.at == T0 + 1  # when the live run had judged it
    assert only.message.text == text
    assert only.message.ts == int(T0) - 3  # the message's own date
    assert only.message.received_at == T0 - 0.5
    assert tape.rebuilt_texts == 0
    assert [(o.token, o.at) for o in tape.observations] == [(A, T0)]
    assert (tape.start, tape.end) == (T0, T0 + 1.5)


def test_an_address_the_text_does_not_show_is_written_back() -> None:
    pair = TOKENS[3]
    tape = tape_from_history(
        export(
            [
                mention(T0, 1, A),  # keep_text = false: no text at all
                mention(T0 + 1, 2, B, text="📈 Chart | 💰 Buy"),  # the address was behind a link
                mention(T0 + 2, 3, TOKENS[2], text="dexscreener", kind="pair", pair=pair),
            ]
        )
    )
    texts = [m.message.text for m in tape.messages]
    assert texts == [A, f"📈 Chart | 💰 Buy\n{B}", f"dexscreener\n{pair}"]
    assert tape.rebuilt_texts == 3
    assert [(r.pair, r.token) for r in tape.resolutions] == [(pair, TOKENS[2])]


def test_each_buy_is_taken_once_at_its_first_score() -> None:
    first = buy(T0 + 10, A).buy
    events = [
        BuyScored(at=T0 + 10, buy=first, card=CARD, outcome="watching"),
        BuyScored(at=T0 + 40, buy=first, card=CARD, outcome="alerted", rescore=True),
        BuyScored(at=T0 + 50, buy=first, card=CARD, outcome="watching"),
        AlertSent(
            at=T0 + 40,
            alert=Alert(first, snapshot(A), CARD, T0 + 40),
            deliveries=(("telegram", "9"),),
        ),
    ]
    tape = tape_from_history(export(events))
    assert [(b.at, b.buy) for b in tape.buys] == [(T0 + 10, first)]
    assert [(a.token, a.at) for a in tape.recorded_alerts] == [(A, T0 + 40)]


def test_a_file_that_is_not_a_recording_is_refused() -> None:
    with pytest.raises(TapeError, match="not a callsbot history recording"):
        tape_from_history(io.StringIO('{"hello": 1}\n'))
    with pytest.raises(TapeError, match="no events"):
        tape_from_history(export([]))


def test_the_session_is_a_complete_market_captured_in_five_second_steps() -> None:
    session = load_session()
    tape = tape_from_session(session)
    start = float(session["start"])
    assert tape.start == start
    assert tape.end == start + session["end"]
    assert tape.step == 5.0
    assert tape.feed_poll
    assert tape.absent == "no_pairs"
    assert len(tape.messages) == len(session["telegram"]["messages"])
    assert all(m.dated_at_delivery for m in tape.messages)
    assert len(tape.buys) + len(tape.skipped) == len(session["cielo"])
    assert sorted(s.reason for s in tape.skipped) == ["other_type", "sell", "transfer"]
    assert [(o.start - start, o.end - o.start) for o in tape.outages] == [(2600.0, 20.0)]
    bases = {p["baseToken"]["address"] for p in session["dexscreener"]["pairs"]}
    assert bases <= {o.token for o in tape.observations}
    assert all(o.at == start for o in tape.observations)


def candle_file(path: Path, mint: str, pool: str, rows: list[Candle], *, fetched: float) -> None:
    body = ohlcv_body(list(reversed(rows)), base=mint, quote=WSOL, base_symbol="TKN")
    path.write_text(
        json.dumps(envelope(pool, mint, Timeframe.MINUTE, body, fetched_at=fetched)) + "\n",
        encoding="utf-8",
    )


def test_cached_ohlcv_bodies_merge_into_one_path_per_mint(tmp_path: Path) -> None:
    rows = [Candle(int(T0) + 60 * i, 1.0, 1.1, 0.9, 1.0 + i, 10.0) for i in range(5)]
    (tmp_path / "cache").mkdir()
    candle_file(tmp_path / "cache" / "a1.jsonl", A, "PoolA", rows[:3], fetched=T0 + 200)
    later = [Candle(rows[2].ts, 1.0, 1.1, 0.9, 99.0, 10.0), *rows[3:]]
    candle_file(tmp_path / "cache" / "a2.jsonl", A, "PoolA", later, fetched=T0 + 400)
    paths = load_paths(tmp_path / "cache")
    path = paths[A]
    assert [c.close for c in path.minute] == [1.0, 2.0, 99.0, 4.0, 5.0]  # the last read wins
    assert path.as_of == T0 + 400
    assert (path.pool, path.symbol) == ("PoolA", "TKN")


def test_a_body_priced_for_another_token_is_refused(tmp_path: Path) -> None:
    rows = [Candle(int(T0), 1.0, 1.1, 0.9, 1.0, 10.0)]
    body = ohlcv_body(rows, base=B, quote=WSOL)
    bad = envelope("PoolA", A, Timeframe.MINUTE, body, fetched_at=T0)
    (tmp_path / "bad.json").write_text(json.dumps([bad]), encoding="utf-8")
    with pytest.raises(CandleCacheError, match=r"bad\.json.*not the mint"):
        load_paths(tmp_path / "bad.json")


def test_load_tape_tells_the_formats_apart(tmp_path: Path) -> None:
    history = tmp_path / "day.jsonl"
    history.write_text(export([mention(T0, 1, A, text=f"CA: {A}")]).getvalue(), encoding="utf-8")
    rows = [Candle(int(T0) + 60 * i, 1.0, 1.1, 0.9, 1.0, 10.0) for i in range(3)]
    candle_file(tmp_path / "ohlcv.jsonl", A, "PoolA", rows, fetched=T0 + 300)
    tape = load_tape(history, candles=tmp_path / "ohlcv.jsonl")
    assert tape.gate is Gate.RECORDED
    assert A in tape.paths
    session = tmp_path / "session.json"
    session.write_text(json.dumps(load_session()), encoding="utf-8")
    assert load_tape(session).step == 5.0
    result = tmp_path / "result.json"
    doc = {
        "name": "Alpha",
        "type": "public_channel",
        "id": 1987654321,
        "messages": [
            {
                "id": 5,
                "type": "message",
                "date_unixtime": str(int(T0) + 5),
                "text": f"CA: {A}",
                "text_entities": [{"type": "plain", "text": f"CA: {A}"}],
            }
        ],
    }
    result.write_text(json.dumps(doc), encoding="utf-8")
    tape = load_tape(result, candles=tmp_path / "ohlcv.jsonl", group="@alpha")
    assert tape.gate is Gate.APPROXIMATE
    assert [(m.at, m.message.group) for m in tape.messages] == [(T0 + 5, "@alpha")]
    with pytest.raises(TapeError):
        load_tape(tmp_path / "missing.jsonl")
