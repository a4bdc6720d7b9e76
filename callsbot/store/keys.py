"""Every Redis key callsbot uses, built here and nowhere else (docs/store.md lists them).

The token and heartbeat keys keep the deployed system's layout so existing ``redis-cli``
checks still work.
"""

from __future__ import annotations

PREFIX = "signal_aggregator"

#: Sorted set of tokens with a mention in the window; member = token, score = latest mention.
ACTIVE = f"{PREFIX}:active"
#: Hash of catch-up cursors; field = cursor name, value = integer (e.g. last message id).
CURSORS = f"{PREFIX}:cursors"
#: Stream of encoded events (split mode); fields ``o`` (writer), ``k`` (kind), ``p`` (JSON).
EVENTS = f"{PREFIX}:events"
#: Hash of event-stream readers' positions; field = reader name, value = last entry id handled.
EVENT_READERS = f"{PREFIX}:events:readers"
#: Hash marking the window whole (the generation marker); no TTL, it lives as long as the data.
#: Fields: ``generation`` (id of the build), ``state`` (``ready`` | ``rebuilding``), ``since``
#: (unix seconds of the last state change), ``checks`` (the keeper's check count: a value
#: lower than the keeper last saw means the store went back to an older copy of its data).
#: A store that lost its data has no marker; reads of the window refuse to answer without one.
WINDOW = f"{PREFIX}:window"


def token(address: str) -> str:
    """Sorted set of the groups that called ``address``; score = unix seconds of the call."""
    return f"{PREFIX}:token:{address}"


def heartbeat(role: str) -> str:
    """String holding ``role``'s last beat in unix seconds."""
    return f"{PREFIX}:heartbeat:{role}"


def probe(name: str) -> str:
    """String written by a process's readiness probe (a real write; short TTL)."""
    return f"{PREFIX}:probe:{name}"


def claim(key: str) -> str:
    """String set with NX for "first one wins" claims (alerts, seen messages, seen txs)."""
    return f"{PREFIX}:claim:{key}"


# -- claim and cursor names (what callers pass to Claims and Cursors; never formatted elsewhere) --


def seen_mention(chat_id: int, message_id: int, token: str) -> str:
    """Claim name: this message's mention of ``token`` was recorded."""
    return f"msg:{chat_id}:{message_id}:{token}"


def seen_mentions_of_chat(chat_id: int) -> str:
    """Glob over every :func:`seen_mention` claim of one chat (tools and the demo's reset)."""
    return claim(f"msg:{chat_id}:*")


def seen_tx(tx_hash: str) -> str:
    """Claim name: this feed transaction was handled."""
    return f"tx:{tx_hash}"


def alert_claim(token: str) -> str:
    """Claim name: ``token`` was alerted (held for the cooldown)."""
    return f"alert:{token}"


def chat_cursor(chat_id: int) -> str:
    """Cursor name: the last message id of ``chat_id`` that the pipeline finished."""
    return f"msg:{chat_id}"
