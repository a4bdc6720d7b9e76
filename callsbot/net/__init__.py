"""Talking to HTTP peers: one retry policy (:mod:`.retry`) and one JSON client (:mod:`.http`).

The DexScreener client, the Cielo feed and the Telegram Bot API sink are built on these, so
retries, deadlines, Retry-After, timeouts, session ownership and secret redaction work the same
way everywhere. This package imports only the bottom layer (:mod:`callsbot.clock`,
:mod:`callsbot.errors`); adapters build their policies from their own settings sections.
"""
