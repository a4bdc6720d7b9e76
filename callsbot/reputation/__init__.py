"""Group reputation, independence and the weighted consensus (docs/consensus.md): pure.

Nothing here does I/O. The modules work on their own small input types
(:mod:`~callsbot.reputation.inputs`) and hand back frozen values; adapters read the mention log,
the labels and the window store and pass plain values in.

- :mod:`~callsbot.reputation.weights`: per-group weights from hit labels (section 5).
- :mod:`~callsbot.reputation.independence`: per-message votes and copy probabilities (section 6).
- :mod:`~callsbot.reputation.weighted`: the weighted consensus sum S (section 7).
- :mod:`~callsbot.reputation.snapshot`: what the periodic job publishes for the scorers.
- :mod:`~callsbot.reputation.report`: the per-group report of ``python -m callsbot groups``.
"""
