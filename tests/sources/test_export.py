"""Telegram Desktop exports as Telegram Desktop really writes them (callsbot.sources.export)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from telethon.tl.types import PeerChannel, PeerChat
from telethon.utils import get_peer_id

from callsbot.cli.backfill import backfill_command
from callsbot.clock import FakeClock
from callsbot.config import Settings
from callsbot.metrics import Metrics
from callsbot.sources.export import ExportError, read_export
from tests.tg import mint

T0 = 1732521600


def message(message_id: int, text: str) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "date": "2024-11-25T09:00:00",
        "date_unixtime": str(T0 + message_id),
        "from": "Alpha",
        "from_id": "channel1987654321",
        "text": text,
        "text_entities": [{"type": "plain", "text": text}],
    }


def chat(name: str, chat_type: str, chat_id: Any, *messages: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "type": chat_type, "id": chat_id, "messages": list(messages)}


def write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


async def backfill(export: Path, clock: FakeClock) -> tuple[int, list[dict[str, Any]], str]:
    out, err = io.StringIO(), io.StringIO()
    status = await backfill_command(
        Settings(),
        export=str(export),
        group=None,
        since=None,
        validate=False,
        dry_run=True,
        out=out,
        err=err,
        clock=clock,
        metrics=Metrics.create(),
    )
    return status, [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


async def test_control_characters_written_as_hex_escapes_are_read(
    tmp_path: Path, clock: FakeClock
) -> None:
    # Telegram Desktop writes control characters as \xHH, which JSON does not know; a literal
    # backslash before "x41" (written \\x41) must stay a backslash.
    doc = json.dumps(chat("Alpha", "public_channel", 1987654321, message(1, "@@BELL@@")))
    doc = doc.replace("@@BELL@@", f"\\x07ding \\\\x41 CA: {mint(1)}\\x1F")
    export = tmp_path / "result.json"
    export.write_text(doc, encoding="utf-8")
    [read] = list(read_export(export))
    assert read.text == f"\x07ding \\x41 CA: {mint(1)}\x1f"
    status, lines, err = await backfill(export, clock)
    assert status == 0, err
    assert [(x["message_id"], x["token"]) for x in lines] == [(1, mint(1))]


async def test_a_full_account_export_reads_left_chats_too(tmp_path: Path, clock: FakeClock) -> None:
    doc = {
        "about": "Here is the data you requested.",
        "chats": {"about": "…", "list": [chat("Alpha", "public_channel", 11, message(1, mint(1)))]},
        "left_chats": {
            "about": "…",
            "list": [chat("Beta", "private_supergroup", 22, message(2, f"CA: {mint(2)}"))],
        },
    }
    status, lines, err = await backfill(write(tmp_path / "result.json", doc), clock)
    assert status == 0, err
    assert [(x["group"], x["token"]) for x in lines] == [
        (str(get_peer_id(PeerChannel(11))), mint(1)),
        (str(get_peer_id(PeerChannel(22))), mint(2)),
    ]


@pytest.mark.parametrize(
    ("chat_type", "peer"),
    [
        ("private_group", PeerChat(4567)),
        ("public_channel", PeerChannel(4567)),
        ("private_supergroup", PeerChannel(4567)),
    ],
)
def test_chat_ids_carry_the_sign_live_telethon_gives_them(
    tmp_path: Path, chat_type: str, peer: Any
) -> None:
    export = write(tmp_path / "result.json", chat("G", chat_type, 4567, message(1, mint(1))))
    [read] = list(read_export(export))
    # Backfill and the live listener must count one group once: same id, same group name.
    assert read.chat_id == get_peer_id(peer)
    assert read.group == str(get_peer_id(peer))


@pytest.mark.parametrize("chat_id", ["abc", None, 1.5, True, [1], "MISSING"])
async def test_a_chat_without_a_numeric_id_is_one_clear_line(
    tmp_path: Path, clock: FakeClock, chat_id: Any
) -> None:
    doc = chat("Alpha Calls", "public_channel", chat_id, message(1, mint(1)))
    if chat_id == "MISSING":
        del doc["id"]
    export = write(tmp_path / "result.json", doc)
    with pytest.raises(ExportError, match="Alpha Calls"):
        list(read_export(export))
    status, lines, err = await backfill(export, clock)
    assert status == 1
    assert lines == []
    assert len(err.strip().splitlines()) == 1
    assert "Alpha Calls" in err
    assert "numeric id" in err


@pytest.mark.parametrize(
    "doc",
    [{"chats": []}, {"chats": {"list": "x"}}, {"left_chats": 3}, [], "text"],
    ids=["chats-list", "list-string", "left-number", "array", "string"],
)
def test_odd_shapes_are_not_an_export(tmp_path: Path, doc: Any) -> None:
    with pytest.raises(ExportError, match="not a Telegram Desktop JSON export"):
        list(read_export(write(tmp_path / "result.json", doc)))
