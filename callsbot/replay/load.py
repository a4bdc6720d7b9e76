"""Tapes from the three recording formats (docs/backtest.md, "Recordings").

- :func:`tape_from_history`: the ``history export`` JSONL (callsbot/history/recording.py).
  Recorded mentions become the messages they came from, delivered when the live run recorded
  them (by then it had the market snapshot it judged them on); verdicts become observations
  at the time they were observed; the first score of each buy becomes that buy, served when
  it was scored; alerts are kept for comparison.
- :func:`tape_from_session`: the demo's session file: Telegram messages (dated when delivered,
  in the demo's 5-second steps), Cielo feed items (taken at the scorer's polls), DexScreener
  pairs (the complete market: a token without a pair has none), recorded rate limits.
- :func:`tape_from_export`: a Telegram Desktop export plus cached OHLCV bodies: no snapshot and
  no buy was recorded, so the gate is approximated from candle volume.

:func:`load_tape` tells the formats apart. Price paths (:mod:`callsbot.replay.candles`) are
added to any of them with ``candles=``.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from callsbot.events import AlertSent, BuyScored, LevelReached, MentionRecorded, VerdictMade
from callsbot.extract import entities_from_telethon, extract
from callsbot.history import recording
from callsbot.market.dexscreener import parse_pair
from callsbot.market.gate import snapshot_of
from callsbot.models import ForwardHeader, IncomingMessage, Status
from callsbot.replay.candles import load_paths, merge, parse_entry
from callsbot.replay.tape import (
    FeedSkip,
    Gate,
    Observation,
    Outage,
    PricePath,
    RecordedAlert,
    Resolution,
    Tape,
    TapeBuy,
    TapeMessage,
)
from callsbot.sources.cielo import MalformedItem, classify_item
from callsbot.sources.export import ExportError, read_export
from callsbot.sources.replay import (
    RecordedMessage,
    Recording,
    channel_peer_id,
    telethon_entity,
)

#: The demo's step: the listener's heartbeat interval, in which the session was captured.
SESSION_STEP = 5.0
#: How long a recorded DexScreener 429 keeps lookups failing (its Retry-After).
SESSION_OUTAGE = 20.0


class TapeError(ValueError):
    """A recording that cannot be replayed; the message says why."""


# -- history exports ---------------------------------------------------------------------------


def _message_of(mentions: list[MentionRecorded]) -> tuple[IncomingMessage, bool]:
    """The message behind one message's mentions, and whether its text had to be rebuilt.

    The history keeps the text but not the entities: an address that was only behind a hidden
    link is added on a line of its own, so the pipeline finds what the live run found.
    """
    first = mentions[0]
    ref = first.ref
    text = next((m.text for m in mentions if m.text), "")
    named = [
        m.pair if m.mention_kind in ("pair", "evm_pair") and m.pair else m.token for m in mentions
    ]
    found = extract(text) if text else None
    seen = (
        {a.lower() for a in (*found.mints, *found.pairs)}
        | {e.address.lower() for e in (*found.evm, *found.evm_pairs)}
        if found is not None
        else set()
    )
    missing = [a for a in dict.fromkeys(named) if a.lower() not in seen]
    if missing:
        text = "\n".join([text, *missing]) if text else "\n".join(missing)
    message = IncomingMessage(
        chat_id=ref.chat_id,
        group=ref.group,
        message_id=ref.message_id,
        ts=ref.ts,
        text=text,
        source=ref.source,
        sender_id=first.sender_id,
        forward=first.forward,
        received_at=ref.received_at,
    )
    return message, bool(missing)


def tape_from_history(lines: Iterable[str], *, source: str = "history export") -> Tape:
    """A tape from ``history export`` lines (header first).

    Raises:
        TapeError: not a recording, or one without any event.
    """
    try:
        events = list(recording.read(lines))
    except recording.RecordingError as exc:
        raise TapeError(str(exc)) from None
    if not events:
        raise TapeError("the recording holds no events")
    by_message: dict[tuple[int, int, str, float | None], list[MentionRecorded]] = {}
    buys: dict[tuple[str, str, str, str], TapeBuy] = {}
    observations: list[Observation] = []
    resolutions: list[Resolution] = []
    alerts: list[RecordedAlert] = []
    for e in events:
        if isinstance(e, MentionRecorded):
            key = (e.ref.chat_id, e.ref.message_id, e.ref.source, e.ref.received_at)
            by_message.setdefault(key, []).append(e)
            if e.pair and e.mention_kind in ("pair", "evm_pair"):
                resolutions.append(Resolution(e.at, e.chain, e.pair, e.token))
        elif isinstance(e, VerdictMade):
            v = e.verdict
            if v.status is not Status.UNKNOWN:
                observations.append(Observation(e.at, e.chain, v.token, v.snapshot))
        elif isinstance(e, BuyScored):
            b = e.buy
            if not e.rescore:
                buys.setdefault((b.chain, b.tx_hash, b.wallet, b.token), TapeBuy(e.at, b))
        elif isinstance(e, AlertSent):
            alerts.append(RecordedAlert(e.at, e.alert.token, e.alert.card.total))
        elif not isinstance(e, LevelReached):  # levels are the replay's to find again
            raise TapeError(f"unexpected event kind {e.kind}")
    messages: list[TapeMessage] = []
    rebuilt = 0
    for mentions in by_message.values():
        message, was_rebuilt = _message_of(mentions)
        rebuilt += was_rebuilt
        messages.append(TapeMessage(min(m.at for m in mentions), message))
    messages.sort(key=lambda m: m.at)
    return Tape(
        start=min(e.at for e in events),
        end=max(e.at for e in events),
        messages=tuple(messages),
        buys=tuple(sorted(buys.values(), key=lambda b: b.at)),
        observations=tuple(observations),
        resolutions=tuple(resolutions),
        recorded_alerts=tuple(alerts),
        rebuilt_texts=rebuilt,
        source=source,
    )


# -- the demo's session ------------------------------------------------------------------------


def session_message(
    groups: Mapping[str, tuple[int, str | None]], m: RecordedMessage, start: float
) -> TapeMessage:
    """One recorded Telegram message as the listener would hand it over, dated on delivery.

    Entities go through the Telethon entity classes and back, as a live message's do.
    """
    channel_id, username = groups[m.group]
    chat_id = channel_peer_id(channel_id)
    holder = types.SimpleNamespace(entities=[telethon_entity(e) for e in m.entities])
    message = IncomingMessage(
        chat_id=chat_id,
        group=f"@{username}" if username else str(chat_id),
        message_id=m.id,
        ts=int(start + m.at),
        text=m.text,
        entities=entities_from_telethon(holder),
        source="edit" if m.edit else "live",
        forward=ForwardHeader() if m.forwarded else None,
    )
    return TapeMessage(start + m.at, message, dated_at_delivery=True)


def pair_observations(raw_pairs: Iterable[Any], at: float) -> list[Observation]:
    """DexScreener pair objects as what the validator would have observed at ``at``: the
    snapshot of every token they trade, from its best pair."""
    pairs = [p for p in (parse_pair(raw) for raw in raw_pairs) if p is not None]
    tokens = {(p.chain, t.address) for p in pairs for t in (p.base, p.quote) if t.address}
    return [
        Observation(at, chain, token, snapshot_of(token, chain, pairs))
        for chain, token in sorted(tokens)
    ]


def tape_from_session(data: Mapping[str, Any], *, source: str = "demo session") -> Tape:
    """A tape from the demo's session file (``callsbot/demo/data/session.json``'s shape).

    An optional ``"ohlcv"`` list of cache envelopes (:mod:`callsbot.replay.candles`) gives
    its price paths.

    Raises:
        TapeError: not a session.
    """
    try:
        start = float(data["start"])
        end = start + float(data["end"])
        telegram = Recording.from_dict(data["telegram"])
        feed = list(data["cielo"])
        raw_pairs = list(data["dexscreener"]["pairs"])
        limited = [float(r) for r in data["dexscreener"].get("rate_limited_at", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise TapeError(f"not a demo session: {exc!r}") from None
    messages = [session_message(telegram.groups, m, start) for m in telegram.messages]
    buys: list[TapeBuy] = []
    skipped: list[FeedSkip] = []
    for entry in feed:
        at = start + float(entry["at"])
        try:
            kind, buy = classify_item(entry["item"])
        except MalformedItem:
            kind, buy = "malformed", None
        if buy is not None:
            buys.append(TapeBuy(at, buy))
        else:
            skipped.append(FeedSkip(at, kind))
    observations = pair_observations(raw_pairs, start)
    outages = []
    for r in limited:
        # The demo sets the 429 at the step that reaches the recorded moment.
        begin = start + SESSION_STEP * -(-r // SESSION_STEP)
        outages.append(Outage(begin, begin + SESSION_OUTAGE))
    paths = merge(parse_entry(e) for e in data.get("ohlcv", ()))
    return Tape(
        start=start,
        end=end,
        messages=tuple(sorted(messages, key=lambda m: m.at)),
        buys=tuple(sorted(buys, key=lambda b: b.at)),
        skipped=tuple(sorted(skipped, key=lambda s: s.at)),
        observations=tuple(observations),
        outages=tuple(outages),
        paths=paths,
        absent="no_pairs",
        step=SESSION_STEP,
        feed_poll=True,
        source=source,
    )


# -- Telegram Desktop exports ------------------------------------------------------------------


def tape_from_export(
    path: str | Path,
    paths: Mapping[str, PricePath],
    *,
    group: str | None = None,
    source: str = "Telegram export",
) -> Tape:
    """A tape from a Telegram Desktop export and cached price paths (approximate gate).

    Messages are delivered at their own date. Without recorded snapshots the gate is answered
    from candle volume; without recorded buys the scorer has nothing to score, so such a run
    yields levels reached (and alerts only if buys are added).

    Raises:
        TapeError: unreadable export, or one without messages.
    """
    try:
        incoming = list(read_export(path, group=group))
    except ExportError as exc:
        raise TapeError(str(exc)) from None
    if not incoming:
        raise TapeError(f"{path}: no messages with text")
    incoming.sort(key=lambda m: m.ts)
    messages = tuple(TapeMessage(float(m.ts), m) for m in incoming)
    return Tape(
        start=float(incoming[0].ts),
        end=float(incoming[-1].ts),
        messages=messages,
        paths=dict(paths),
        gate=Gate.APPROXIMATE,
        source=source,
    )


# -- any of them -------------------------------------------------------------------------------


def _kind(path: Path) -> str:
    with path.open(encoding="utf-8") as fh:
        first = fh.readline()
    try:
        head = json.loads(first)
    except ValueError:
        head = None
    if isinstance(head, dict) and head.get("format") == recording.FORMAT:
        return "history"
    return "json"


def load_tape(
    path: str | Path, *, candles: str | Path | None = None, group: str | None = None
) -> Tape:
    """The tape of any recording file, with the price paths of ``candles`` added.

    Raises:
        TapeError: the file is none of the formats, or cannot be read.
    """
    path = Path(path)
    try:
        kind = _kind(path)
        paths = load_paths(candles) if candles is not None else {}
        if kind == "history":
            with path.open(encoding="utf-8") as fh:
                tape = tape_from_history(fh, source=f"history export {path.name}")
            return _with_paths(tape, paths)
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TapeError(f"{path}: {exc}") from None
    if isinstance(data, dict) and {"telegram", "cielo", "dexscreener"} <= data.keys():
        return _with_paths(tape_from_session(data, source=f"session {path.name}"), paths)
    return tape_from_export(path, paths, group=group, source=f"Telegram export {path.name}")


def _with_paths(tape: Tape, paths: Mapping[str, PricePath]) -> Tape:
    if not paths:
        return tape
    return attrs.evolve(tape, paths={**tape.paths, **paths})
