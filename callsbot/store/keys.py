"""Every Redis key callsbot uses, built here and nowhere else (docs/store.md lists them).

The token and heartbeat keys keep the deployed system's layout so existing ``redis-cli``
checks still work.
"""

from __future__ import annotations

import os
import secrets
import socket

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

#: Table names (what callers pass to Tables; each is one Redis hash, see :func:`table`).
#: The scorer's buys waiting for market data; row key = token, value = JSON.
PENDING_BUYS = "scorer:pending"
#: The scorer's late-consensus watch list; row key = token, value = JSON.
WATCH_LIST = "scorer:watch"


def token(address: str) -> str:
    """Sorted set of the groups that called ``address``; score = unix seconds of the call."""
    return f"{PREFIX}:token:{address}"


#: String: the published reputation (weights, copy probabilities, clusters, the moment they
#: describe) as JSON; replaced by each publication, no TTL.
REPUTATION = f"{PREFIX}:reputation"


def votes(address: str) -> str:
    """Hash of the at-once votes for ``address``: field = group, value = the vote as JSON."""
    return f"{PREFIX}:votes:{address}"


def heartbeat(role: str) -> str:
    """String holding ``role``'s last beat in unix seconds."""
    return f"{PREFIX}:heartbeat:{role}"


def probe(name: str) -> str:
    """String written by a process's readiness probe (a real write; short TTL)."""
    return f"{PREFIX}:probe:{name}"


def claim(key: str) -> str:
    """String set with NX for "first one wins" claims (alerts, seen messages, seen txs); a
    lease holds its owner's name as the value."""
    return f"{PREFIX}:claim:{key}"


def table(name: str) -> str:
    """Hash holding the rows of table ``name`` (:data:`PENDING_BUYS`, :data:`WATCH_LIST`)."""
    return f"{PREFIX}:table:{name}"


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
    """Claim name: ``token`` was alerted and a sink confirmed it (held for the cooldown)."""
    return f"alert:{token}"


def followup_claim(token: str, alert_at: float, checkpoint: int) -> str:
    """Claim name: the follow-up reply of the alert of ``token`` at ``alert_at`` (unix s) for
    ``checkpoint`` (seconds after it) was sent."""
    return f"followup:{token}:{int(alert_at)}:{checkpoint}"


def followup_claims_of(token: str) -> str:
    """Glob over every :func:`followup_claim` of one token (the demo's reset)."""
    return claim(f"followup:{token}:*")


def alert_lease(token: str) -> str:
    """Lease name: a scorer is sending ``token``'s alert right now (held for a short lease)."""
    return f"alert-lease:{token}"


def chat_cursor(chat_id: int) -> str:
    """Cursor name: the last message id of ``chat_id`` that the pipeline finished."""
    return f"msg:{chat_id}"


def reputation_job() -> str:
    """Claim name: one process computes the reputation per job interval."""
    return "job:reputation"


def lease_owner(role: str) -> str:
    """A lease owner name unique to this process and this start (role, host, pid, a random part):
    a restarted process, even with the same pid in a container, never takes its predecessor's
    leases for its own. Never ``1``, the value of a plain claim."""
    return f"{role}@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
