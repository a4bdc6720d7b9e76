"""Mentions and hit labels from JSONL files, behind the reputation interfaces.

Until the history store lands, ``python -m callsbot groups`` reads its mention log and labels
from files in this format (docs/consensus.md). One JSON object per line; blank lines are
skipped; unknown keys are ignored, so ``backfill --dry-run`` output is a valid mention file.

Mention lines::

    {"ts": 1732521600, "group": "@alpha", "token": "<mint>",
     "chat_id": -1001234, "message_id": 77, "sender_id": 42,
     "forward": {"origin_peer": -1009999, "origin_name": null,
                 "origin_message_id": 5, "origin_date": 1732521500},
     "text": "...", "sha1": "...", "simhash": 123}

``ts`` (unix seconds), ``group`` and ``token`` are required. ``text`` is fingerprinted on
reading when ``sha1``/``simhash`` are absent, and never kept.

Label lines::

    {"group": "@alpha", "token": "<mint>", "called_at": 1732521600, "hit": true,
     "resolved_at": 1732525200}
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from callsbot.models import ForwardHeader
from callsbot.reputation.fingerprint import fingerprint
from callsbot.reputation.inputs import Label, MemoryLabels, MemoryMentionLog, Mention

_T = TypeVar("_T")
_FORWARD_KEYS = ("origin_peer", "origin_name", "origin_message_id", "origin_date")


class MentionFileError(ValueError):
    """A line of a mention or label file is not what the format says (names file and line)."""


def _number(raw: dict[str, Any], key: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key}: expected a number, got {value!r}")
    return float(value)


def _text(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key}: expected a non-empty string, got {value!r}")
    return value


def _optional_int(raw: dict[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key}: expected an integer, got {value!r}")
    return value


def mention_from_json(raw: dict[str, Any]) -> Mention:
    """One mention line as a :class:`Mention`.

    Raises:
        ValueError: a required key is missing or a key has the wrong type.
    """
    forward = raw.get("forward")
    header: ForwardHeader | None = None
    if forward is not None:
        if not isinstance(forward, dict):
            raise ValueError(f"forward: expected an object, got {forward!r}")
        name = forward.get("origin_name")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"forward.origin_name: expected a string, got {name!r}")
        header = ForwardHeader(
            origin_peer=_optional_int(forward, "origin_peer"),
            origin_name=name,
            origin_message_id=_optional_int(forward, "origin_message_id"),
            origin_date=_optional_int(forward, "origin_date"),
        )
    sha1, simhash = raw.get("sha1"), _optional_int(raw, "simhash")
    if sha1 is not None and not isinstance(sha1, str):
        raise ValueError(f"sha1: expected a string, got {sha1!r}")
    text = raw.get("text")
    if sha1 is None and simhash is None and isinstance(text, str):
        fp = fingerprint(text)
        if fp is not None:
            sha1, simhash = fp.sha1, fp.simhash
    return Mention(
        ts=_number(raw, "ts"),
        group=_text(raw, "group"),
        token=_text(raw, "token"),
        chat_id=_optional_int(raw, "chat_id"),
        message_id=_optional_int(raw, "message_id"),
        sender_id=_optional_int(raw, "sender_id"),
        forward=header,
        sha1=sha1,
        simhash=simhash,
    )


def mention_to_json(m: Mention) -> dict[str, Any]:
    """The line :func:`mention_from_json` reads (keys with ``None`` left out)."""
    out: dict[str, Any] = {"ts": m.ts, "group": m.group, "token": m.token}
    for key in ("chat_id", "message_id", "sender_id", "sha1", "simhash"):
        value = getattr(m, key)
        if value is not None:
            out[key] = value
    if m.forward is not None:
        out["forward"] = {k: getattr(m.forward, k) for k in _FORWARD_KEYS}
    return out


def label_from_json(raw: dict[str, Any]) -> Label:
    """One label line as a :class:`Label`.

    Raises:
        ValueError: a key is missing or has the wrong type.
    """
    hit = raw.get("hit")
    if not isinstance(hit, bool):
        raise ValueError(f"hit: expected true or false, got {hit!r}")
    called, resolved = _number(raw, "called_at"), _number(raw, "resolved_at")
    if resolved < called:
        raise ValueError("resolved_at: before called_at")
    return Label(_text(raw, "group"), _text(raw, "token"), called, hit, resolved)


def label_to_json(label: Label) -> dict[str, Any]:
    """The line :func:`label_from_json` reads."""
    return {
        "group": label.group,
        "token": label.token,
        "called_at": label.called_at,
        "hit": label.hit,
        "resolved_at": label.resolved_at,
    }


def _lines(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    raw = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise MentionFileError(f"{path}:{number}: not JSON: {exc.msg}") from None
                if not isinstance(raw, dict):
                    raise MentionFileError(f"{path}:{number}: expected a JSON object")
                yield number, raw
    except OSError as exc:
        raise MentionFileError(f"{path}: {exc.strerror or exc}") from None


def _read(path: Path, parse: Callable[[dict[str, Any]], _T]) -> list[_T]:
    out: list[_T] = []
    for number, raw in _lines(path):
        try:
            out.append(parse(raw))
        except ValueError as exc:
            raise MentionFileError(f"{path}:{number}: {exc}") from None
    return out


class JsonlMentionLog(MemoryMentionLog):
    """A :class:`~callsbot.reputation.inputs.MentionLog` read from a JSONL file."""

    @classmethod
    def load(cls, path: str | Path) -> JsonlMentionLog:
        """Read every line of ``path``.

        Raises:
            MentionFileError: unreadable file or line (with its number).
        """
        return cls(_read(Path(path), mention_from_json))

    @property
    def latest(self) -> float | None:
        """The newest mention's date, ``None`` for an empty file."""
        return max((m.ts for m in self.mentions), default=None)


class JsonlLabels(MemoryLabels):
    """A :class:`~callsbot.reputation.inputs.Labels` read from a JSONL file."""

    @classmethod
    def load(cls, path: str | Path) -> JsonlLabels:
        """Read every line of ``path``.

        Raises:
            MentionFileError: unreadable file or line (with its number).
        """
        return cls(_read(Path(path), label_from_json))


def write_jsonl(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write ``rows`` one JSON object per line (tests, the bench, exports)."""
    with Path(path).open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
