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


def token(address: str) -> str:
    """Sorted set of the groups that called ``address``; score = unix seconds of the call."""
    return f"{PREFIX}:token:{address}"


def heartbeat(role: str) -> str:
    """String holding ``role``'s last beat in unix seconds."""
    return f"{PREFIX}:heartbeat:{role}"


def claim(key: str) -> str:
    """String set with NX for "first one wins" claims (alerts, seen messages, seen txs)."""
    return f"{PREFIX}:claim:{key}"
