"""Recordings: events as JSON lines, the format ``history export`` writes and ``import`` reads.

A recording is UTF-8 text, one JSON object per line. The first line is a header::

    {"format": "callsbot-history", "version": 1}

and every other line is one event: ``{"kind": "<event kind>", "at": <unix seconds>, ...}`` with
the event's own fields under their attribute names, nested values (message references, forward
headers, buys, snapshots, score cards, alerts) as objects, tuples as arrays and enums by value.
Lines are in time order (``at``, then kind). docs/history.md shows one line of every kind.

Unknown fields are an error, missing optional fields take their defaults: a newer callsbot that
adds an optional field to an event can still read an older recording.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from callsbot.events import (
    AlertSent,
    BuyScored,
    CodecError,
    Event,
    LevelReached,
    MentionRecorded,
    VerdictMade,
    structure,
    unstructure,
)

FORMAT = "callsbot-history"
VERSION = 1
HEADER = {"format": FORMAT, "version": VERSION}

#: Every event kind the history keeps, in the order ties on ``at`` are written.
EVENT_TYPES: tuple[type[Event], ...] = (
    MentionRecorded,
    LevelReached,
    VerdictMade,
    BuyScored,
    AlertSent,
)
BY_KIND: dict[str, type[Event]] = {cls.kind: cls for cls in EVENT_TYPES}


class RecordingError(CodecError):
    """A line that is not a recording line of a known kind; the message names the line."""


def event_to_json(event: Event) -> dict[str, Any]:
    """One recording line's object: ``kind`` first, then ``at`` and the event's fields."""
    body = unstructure(event)
    return {"kind": event.kind, **body}


def event_from_json(data: Any) -> Event:
    """The event one recording line describes.

    Raises:
        RecordingError: not an object, an unknown kind, or fields that do not fit.
    """
    if not isinstance(data, dict):
        raise RecordingError("not a JSON object")
    fields = dict(data)
    kind = fields.pop("kind", None)
    cls = BY_KIND.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise RecordingError(f"unknown kind {kind!r} (known: {', '.join(BY_KIND)})")
    try:
        event = structure(fields, cls)
    except RecordingError:
        raise
    except CodecError as exc:
        raise RecordingError(str(exc)) from None
    assert isinstance(event, Event)
    return event


def dumps(event: Event) -> str:
    """One line (without the newline)."""
    return json.dumps(event_to_json(event), ensure_ascii=False, separators=(",", ":"))


def write(events: Iterable[Event], out: TextIO) -> int:
    """Write the header and ``events``; returns how many events were written."""
    out.write(json.dumps(HEADER) + "\n")
    n = 0
    for event in events:
        out.write(dumps(event) + "\n")
        n += 1
    return n


def read(lines: Iterable[str]) -> Iterator[Event]:
    """Events of a recording, header checked, blank lines skipped.

    Raises:
        RecordingError: naming the line number, for a missing or foreign header or a bad line.
    """
    header_seen = False
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise RecordingError(f"line {number}: not JSON ({exc})") from None
        if not header_seen:
            if not (isinstance(data, dict) and data.get("format") == FORMAT):
                raise RecordingError(f"line {number}: not a callsbot history recording")
            if data.get("version") != VERSION:
                raise RecordingError(
                    f"line {number}: recording version {data.get('version')!r}, this callsbot "
                    f"reads version {VERSION}"
                )
            header_seen = True
            continue
        try:
            yield event_from_json(data)
        except RecordingError as exc:
            raise RecordingError(f"line {number}: {exc}") from None
    if not header_seen:
        raise RecordingError("empty file: not a callsbot history recording")
