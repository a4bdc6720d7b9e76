"""The JSONL mention log and labels (the groups command's input until the history lands)."""

from __future__ import annotations

from pathlib import Path

import pytest

from callsbot.models import ForwardHeader
from callsbot.reputation.fingerprint import fingerprint
from callsbot.reputation.inputs import Label, Mention
from callsbot.sources.mention_log import (
    JsonlLabels,
    JsonlMentionLog,
    MentionFileError,
    label_from_json,
    label_to_json,
    mention_from_json,
    mention_to_json,
    write_jsonl,
)

TEXT = "🚀 NEW GEM ALERT 🚀 LP locked, dev doxxed, community takeover starting now"


def test_a_mention_round_trips() -> None:
    m = Mention(
        1.5, "@a", "T", -1001, 7, 42, ForwardHeader(-1009, None, 3, 1), sha1="ab", simhash=2**63
    )
    assert mention_from_json(mention_to_json(m)) == m
    bare = Mention(2.0, "@b", "U")
    assert mention_to_json(bare) == {"ts": 2.0, "group": "@b", "token": "U"}
    assert mention_from_json(mention_to_json(bare)) == bare


def test_text_is_fingerprinted_and_not_kept() -> None:
    m = mention_from_json({"ts": 1, "group": "@a", "token": "T", "text": TEXT, "kind": "mint"})
    fp = fingerprint(TEXT)
    assert fp is not None
    assert (m.sha1, m.simhash) == (fp.sha1, fp.simhash)
    assert "text" not in mention_to_json(m)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"ts": True, "group": "@a", "token": "T"}, "ts"),
        ({"ts": 1, "group": "", "token": "T"}, "group"),
        ({"ts": 1, "group": "@a", "token": "T", "chat_id": "x"}, "chat_id"),
        ({"ts": 1, "group": "@a", "token": "T", "forward": 5}, "forward"),
        ({"ts": 1, "group": "@a", "token": "T", "forward": {"origin_name": 3}}, "origin_name"),
    ],
)
def test_bad_mentions_are_refused(raw: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        mention_from_json(raw)


def test_labels_round_trip_and_resolve_after_the_call() -> None:
    label = Label("@a", "T", 10.0, True, 20.0)
    assert label_from_json(label_to_json(label)) == label
    with pytest.raises(ValueError, match="before called_at"):
        label_from_json(label_to_json(Label("@a", "T", 10.0, True, 5.0)))
    with pytest.raises(ValueError, match="hit"):
        label_from_json({"group": "@a", "token": "T", "called_at": 1, "resolved_at": 2})


async def test_files_behind_the_interfaces(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"ts": 30, "group": "@a", "token": "T"},
            {"ts": 10, "group": "@a", "token": "T"},
            {"ts": 20, "group": "@b", "token": "T"},
        ],
    )
    (tmp_path / "m.jsonl").write_text((tmp_path / "m.jsonl").read_text() + "\n\n")
    log = JsonlMentionLog.load(tmp_path / "m.jsonl")
    assert log.latest == 30
    firsts = await log.first_mentions(0, 100)
    assert [(m.group, m.ts) for m in firsts] == [("@a", 10), ("@b", 20)]
    assert [m.ts for m in await log.first_mentions(15, 100)] == [20, 30]
    write_jsonl(tmp_path / "l.jsonl", [label_to_json(Label("@a", "T", 10, True, 50))])
    labels = JsonlLabels.load(tmp_path / "l.jsonl")
    assert len(await labels.labels(0, 50)) == 1
    assert await labels.labels(0, 49) == []
    with pytest.raises(MentionFileError, match="missing"):
        JsonlMentionLog.load(tmp_path / "missing.jsonl")
