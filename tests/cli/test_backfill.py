"""Backfill from a hand-written Telegram Desktop export (tests/sources/data/result.json)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from callsbot.cli.backfill import backfill_command
from callsbot.clock import FakeClock
from callsbot.config import DexScreenerSettings, Settings, StoreSettings
from callsbot.metrics import Metrics
from callsbot.testing.dexscreener import FakeDexScreener, make_pair
from tests.tg import mint

EXPORT = Path(__file__).parent.parent / "sources" / "data" / "result.json"
BASE_EVM = "0x4ed4e862860bed51a9570b96d89af5e1b0efefed"

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
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    got = {(x["message_id"], x["token"], x["kind"]) for x in lines}
    assert got == EXPECTED
    assert len(lines) == len(EXPECTED)
    assert {x["group"] for x in lines} == {"@alpha_calls"}
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
    # 1051's pair is unknown to this market: not counted (never recorded under the pair).
    assert {x["message_id"] for x in lines} == {1045, 1046, 1047, 1048, 1050}
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
