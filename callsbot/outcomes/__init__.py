"""Did consensus work? Price paths after every event, and honest rates by consensus level.

The method is ``shared/docs/outcomes.md`` sections 1–4; the decisions it leaves open are in
``docs/outcomes.md``.

- :mod:`callsbot.outcomes.path` (pure): candles → every per-event field (entry, checkpoints,
  peak, multiples, drawdowns, win, status).
- :mod:`callsbot.outcomes.stats` (pure): Wilson and Poisson score intervals, the seeded
  bootstrap of a median, the display rule.
- :mod:`callsbot.outcomes.report` (pure): outcome records → buckets and the deployed targets,
  rendered as a table, JSON or CSV.
- :mod:`callsbot.outcomes.plot`: win rate by level with interval bars (matplotlib, Agg).
- :mod:`callsbot.outcomes.command`: ``python -m callsbot outcome MINT --pool POOL --at TIME``.
"""
