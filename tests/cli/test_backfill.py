"""Backfill from a hand-written Telegram Desktop export (tests/sources/data/result.json)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from callsbot.cli.backfill import backfill_command
from callsbot.clock import FakeClock
from callsbot.config import DexScreenerSettings, Settings, StoreSettings
from callsbot.metrics import Metrics
from callsbot.testing.dexscreener import FakeDexScreener, make_pair
from tests.tg import mint

EXPORT = Path(__file__).parent.parent / "sources" / "data" / "result.json"
BASE_EVM = "0x4ed4e862860bed51a9570b96d89af5e1b0efefed"
EVM_TOKEN = "0x6982508145454Ce325dDbE47a25d4ec3d2311933"
EVM_PAIR = "0xA43fe16908251ee70EF74718545e4FE6C5cCEc9f"
T0 = 1732521600


def message(message_id: int, text: Any, **extra: Any) -> dict[str, Any]:
    """One export message as Telegram Desktop writes it."""
    return {
        "id": message_id,
        "type": "message",
        "date": "2024-11-25T09:00:00",
        "date_unixtime": str(T0 + message_id),
        "from": "Alpha Calls",
        "from_id": "channel1987654321",
        "text": text,
        "text_entities": [{"type": "plain", "text": text}] if isinstance(text, str) else text,
        **extra,
    }


def write_export(path: Path, *messages: dict[str, Any], **chat: Any) -> Path:
    doc = {"name": "Alpha Calls", "type": "public_channel", "id": 1987654321} | chat
    path.write_text(json.dumps(doc | {"messages": list(messages)}, ensure_ascii=False))
    return path


async def dry_run(
    settings: Settings, export: Path, clock: FakeClock, *, validate: bool = False
) -> tuple[int, list[dict[str, Any]], str]:
    out, err = io.StringIO(), io.StringIO()
    status = await backfill_command(
        settings,
        export=str(export),
        group=None,
        since=None,
        validate=validate,
        dry_run=True,
        out=out,
        err=err,
        clock=clock,
        metrics=Metrics.create(),
    )
    return status, [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


#: (message id, token, kind) a careful trader reading the export would count.
EXPECTED = {
    (1001, mint(1), "mint"),
    (1003, mint(2), "mint"),  # code entity after a bold "NEW CALL"
    (1004, mint(3), "mint"),  # only in hidden text_link hrefs (pump.fun + Trojan)
    (1006, mint(4), "mint"),  # bare address
    (1008, mint(6), "mint"),  # old CA / new CA: both addresses of one message
    (1008, mint(7), "mint"),
    (1010, mint(1), "mint"),  # cashtag is not an identifier; the address is
    (1013, mint(8), "mint"),  # 合约地址：
    (1014, mint(9), "mint"),  # контракт:
    (1016, mint(11), "mint"),  # zero-width split is re-joined
    (1018, mint(12), "mint"),
    (1019, mint(13), "mint"),  # gmgn ref_ form
    (1020, mint(15), "mint"),  # the holder wallet before it is dropped
    (1021, BASE_EVM, "evm"),  # "on Base"
    (1026, mint(18), "mint"),  # the glued <addr>pump run yields nothing; the next one does
    (1027, mint(19), "mint"),
    (1028, mint(20), "mint"),
    (1029, mint(21), "mint"),
    (1030, mint(1), "mint"),  # an edited message is still its own message
    (1032, mint(22), "mint"),  # label on a line before, blank line between
    (1033, mint(23), "mint"),
    (1033, mint(24), "mint"),
    (1034, mint(25), "mint"),
    (1035, mint(26), "mint"),
    (1037, mint(28), "mint"),  # forwarded: counted (skip_forwards is off by default)
    (1039, mint(29), "mint"),
    (1041, mint(31), "mint"),
    (1042, mint(32), "mint"),
    (1044, mint(33), "mint"),  # twice in one post, once in the output
    (1045, mint(34), "mint"),  # pre block
    (1046, mint(35), "mint"),
    (1047, mint(36), "mint"),
    (1048, mint(37), "mint"),
    (1050, mint(39), "mint"),
    (1051, mint(41), "pair"),  # dexscreener pair link resolved to its base token
}


async def test_dry_run_prints_every_mention_of_the_export(clock: FakeClock) -> None:
    async with FakeDexScreener(clock=clock) as dex:
        dex.add_pair(make_pair(mint(41), pair_address=mint(40)))
        settings = Settings(
            dexscreener=DexScreenerSettings(url=dex.url),
            store=StoreSettings(url="redis://127.0.0.1:1/0"),  # dry run must not touch it
        )
        out, err = io.StringIO(), io.StringIO()
        status = await backfill_command(
            settings,
            export=str(EXPORT),
            group="@alpha_calls",
            since=None,
            validate=False,
            dry_run=True,
            out=out,
            err=err,
            clock=clock,
            metrics=Metrics.create(),
        )
    assert status == 0, err.getvalue()
    every = [json.loads(line) for line in out.getvalue().splitlines()]
    lines = [x for x in every if not x.get("unresolved")]
    got = {(x["message_id"], x["token"], x["kind"]) for x in lines}
    assert got == EXPECTED
    assert len(lines) == len(EXPECTED)
    # The address no chain and no market places is printed too, marked (not silently dropped).
    assert [x for x in every if x.get("unresolved")] == [
        {
            "group": "@alpha_calls",
            "message_id": 1022,
            "token": "0x6982508145454ce325ddbe47a25d4ec3d2311933",
            "kind": "evm",
            "ts": 1732521600 + 22 * 60,
            "unresolved": True,
            "reason": "evm_no_chain",
        }
    ]
    assert {x["group"] for x in every} == {"@alpha_calls"}
    first = next(x for x in lines if x["message_id"] == 1001)
    assert first["ts"] == 1732521660  # date_unixtime, not the local "date"
    assert "backfill: 49 messages" in err.getvalue()  # service/media messages are skipped
    assert "evm_no_chain=1" in err.getvalue()


async def test_since_and_default_group_name(clock: FakeClock) -> None:
    out, err = io.StringIO(), io.StringIO()
    async with FakeDexScreener(clock=clock) as dex:
        status = await backfill_command(
            Settings(dexscreener=DexScreenerSettings(url=dex.url)),
            export=str(EXPORT),
            group=None,
            since=1732521600 + 45 * 60,
            validate=False,
            dry_run=True,
            out=out,
            err=err,
            clock=clock,
            metrics=Metrics.create(),
        )
    assert status == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    # 1051's pair is unknown to this market: not counted (never recorded under the pair), but
    # printed, marked, since nothing was validated.
    recorded = {x["message_id"] for x in lines if not x.get("unresolved")}
    assert recorded == {1045, 1046, 1047, 1048, 1050}
    assert [(x["message_id"], x["kind"], x["reason"]) for x in lines if x.get("unresolved")] == [
        (1051, "pair", "unknown_pair")
    ]
    assert "rejected:unknown_pair=1" in err.getvalue()
    # The export has no @username; the chat's peer id stands in, as for a live group.
    assert {x["group"] for x in lines} == {"-1001987654321"}


async def test_not_an_export_is_a_clear_error(tmp_path: Path, clock: FakeClock) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    err = io.StringIO()
    status = await backfill_command(
        Settings(),
        export=str(bad),
        group=None,
        since=None,
        validate=False,
        dry_run=True,
        out=io.StringIO(),
        err=err,
        clock=clock,
        metrics=Metrics.create(),
    )
    assert status == 1
    assert "not a Telegram Desktop JSON export" in err.getvalue()


async def test_dry_run_without_validation_prints_pairs_and_chainless_evm_unresolved(
    tmp_path: Path, clock: FakeClock
) -> None:
    export = write_export(
        tmp_path / "result.json",
        message(1, f"📈 https://dexscreener.com/solana/{mint(51)}"),  # DexScreener fails
        message(2, f"📈 Chart https://dexscreener.com/base/{EVM_PAIR}"),
        message(3, f"CA: 0x{'12' * 20}"),  # no chain anywhere
        message(4, f"https://dexscreener.com/solana/{mint(50)}"),  # neither pair nor token
        message(5, f"CA: {mint(52)}"),
    )
    async with FakeDexScreener(clock=clock) as dex:
        dex.add_pair(make_pair(EVM_TOKEN, chain="base", pair_address=EVM_PAIR))
        dex.fail_next(500)
        settings = Settings(dexscreener=DexScreenerSettings(url=dex.url, max_attempts=1))
        status, lines, err = await dry_run(settings, export, clock)
    assert status == 0, err
    group, unresolved = "-1001987654321", {"unresolved": True}
    assert lines == [
        {"group": group, "message_id": 1, "token": mint(51), "kind": "pair", "ts": T0 + 1}
        | unresolved
        | {"reason": "deferred"},
        {"group": group, "message_id": 2, "token": EVM_TOKEN.lower(), "kind": "evm_pair"}
        | {"ts": T0 + 2},
        {"group": group, "message_id": 3, "token": "0x" + "12" * 20, "kind": "evm", "ts": T0 + 3}
        | unresolved
        | {"reason": "evm_no_chain"},
        {"group": group, "message_id": 4, "token": mint(50), "kind": "pair", "ts": T0 + 4}
        | unresolved
        | {"reason": "unknown_pair"},
        {"group": group, "message_id": 5, "token": mint(52), "kind": "mint", "ts": T0 + 5},
    ]
