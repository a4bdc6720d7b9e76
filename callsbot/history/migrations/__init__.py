"""Alembic migrations of the history database (applied by :func:`callsbot.history.sql.upgrade`)."""
