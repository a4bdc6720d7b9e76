"""The history: an append-only, idempotent record of every event, in SQLite or PostgreSQL.

- :mod:`~callsbot.history.base`: the :class:`HistoryStore` interface and its contract.
- :mod:`~callsbot.history.sql`: the SQLAlchemy implementation (:func:`open_history`).
- :mod:`~callsbot.history.recorder`: the service that writes the events of the hub.
- :mod:`~callsbot.history.recording`: the JSONL recording format (export, import, replay).
- :mod:`~callsbot.fingerprint`: text normalisation, SHA-1 and simhash (pure).
- :mod:`~callsbot.history.commands`: ``db upgrade``, ``history export`` and ``history import``.

docs/history.md describes the tables and how to query them.
"""

from callsbot.history.base import HistoryStore

__all__ = ["HistoryStore"]
