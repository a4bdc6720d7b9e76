"""The bundled session, the demo's settings, and a clean slate on a shared Redis."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import attrs

from callsbot.config import Settings
from callsbot.store import SignalStore, keys
from callsbot.store.redis import RedisStore


def load_session() -> dict[str, Any]:
    """The bundled recorded session (``data/session.json``)."""
    text = resources.files("callsbot.demo").joinpath("data/session.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def symbols(session: dict[str, Any]) -> dict[str, str]:
    """Each of the session's tokens by its symbol."""
    return {
        p["baseToken"]["address"]: p["baseToken"]["symbol"] for p in session["dexscreener"]["pairs"]
    }


def demo_settings(settings: Settings, *, gecko_url: str | None = None) -> Settings:
    """The user's settings without the real sinks, and with the local GeckoTerminal (when the
    demo follows the day after)."""
    s = attrs.evolve(
        settings,
        tg_bot=attrs.evolve(settings.tg_bot, token=None, chat_id=None),
        alerts=attrs.evolve(settings.alerts, jsonl_path=None, log=False),
    )
    if gecko_url is not None:
        s = attrs.evolve(
            s,
            geckoterminal=attrs.evolve(s.geckoterminal, url=gecko_url, network="solana"),
            # The demo's database is new: nothing to catch up on; the tracker always runs.
            outcomes=attrs.evolve(s.outcomes, tracker=True, catch_up_seconds=0),
        )
    return s


async def forget_demo_keys(store: SignalStore, session: dict[str, Any]) -> None:
    """On a shared Redis, drop what an earlier demo run left, and nothing else."""
    if not isinstance(store, RedisStore):
        return
    client = store.client
    tokens = list(symbols(session))
    names = [keys.token(t) for t in tokens]
    names += [keys.claim(keys.alert_claim(t)) for t in tokens]
    names += [keys.claim(keys.alert_lease(t)) for t in tokens]
    for table in (keys.PENDING_BUYS, keys.WATCH_LIST) if tokens else ():
        await client.hdel(keys.table(table), *tokens)
    names += [keys.claim(keys.seen_tx(f["item"]["tx_hash"])) for f in session["cielo"]]
    for token in tokens:
        async for name in client.scan_iter(match=keys.followup_claims_of(token), count=500):
            names.append(name)
    for group in session["telegram"]["groups"]:
        chat_id = -(10**12 + int(group["channel_id"]))
        async for name in client.scan_iter(match=keys.seen_mentions_of_chat(chat_id), count=500):
            names.append(name)
        await client.hdel(keys.CURSORS, f"msg:{chat_id}")
    if names:
        await client.delete(*names)
    if tokens:
        await client.zrem(keys.ACTIVE, *tokens)
