"""The reputation job: weights and copy probabilities, computed periodically and published.

Every ``[consensus] job_interval_seconds`` one process (whichever claims
``job:reputation`` first) reads the last 30 days of first mentions and the labels of the last
six forgetting half-lives, computes the group weights (outcomes.md section 5) and the copy
relations (section 6) off the event loop, and publishes them to the store with the moment they
describe. Scorers read them from there (:meth:`callsbot.scorer.Scorer.reputation`).

The job is wired only when a mention log is configured (the history store provides one);
:mod:`callsbot.reputation.inputs` has in-memory sources for tests and the bench.
"""

from __future__ import annotations

import asyncio
import logging
import time

from callsbot.clock import Clock
from callsbot.config import ConsensusSettings
from callsbot.errors import Unavailable
from callsbot.reputation.independence import CopyRules
from callsbot.reputation.inputs import Labels, MemoryLabels, MentionLog
from callsbot.reputation.snapshot import Computed, build_reputation, label_lookback
from callsbot.store import keys
from callsbot.store.base import Claims, ReputationBoard
from callsbot.tasks import wait_stop

log = logging.getLogger("callsbot.reputation")


class ReputationJob:
    """Computes and publishes the reputation every ``settings.job_interval_seconds``.

    Args:
        mentions: the mention log (first mentions with sender, forward and fingerprints).
        labels: resolved hit labels (none yet: every weight stays 1).
        board: where the result is published.
        claims: so that one process per interval computes it.
        settings: ``[consensus]`` (interval, prior strength, forgetting, clip bounds).
        clock: "now".
        rules: the copy test's constants (default: outcomes.md's).
    """

    name = "reputation"

    def __init__(
        self,
        *,
        mentions: MentionLog,
        labels: Labels | None,
        board: ReputationBoard,
        claims: Claims,
        settings: ConsensusSettings,
        clock: Clock,
        rules: CopyRules | None = None,
    ) -> None:
        self._mentions = mentions
        self._labels: Labels = labels if labels is not None else MemoryLabels()
        self._board = board
        self._claims = claims
        self._settings = settings
        self._clock = clock
        self._rules = rules or CopyRules()
        self._problem: str | None = None
        self._last: Computed | None = None

    @property
    def last(self) -> Computed | None:
        """What this process computed last (with its evidence), if anything."""
        return self._last

    def health(self) -> list[str]:
        """The last run's failure, until a run succeeds."""
        return [] if self._problem is None else [self._problem]

    async def run(self, stop: asyncio.Event) -> None:
        """Compute and publish every interval until ``stop`` is set."""
        while not stop.is_set():
            await self.run_once()
            await wait_stop(stop, self._settings.job_interval_seconds)

    async def run_once(self, *, claim: bool = True) -> Computed | None:
        """Compute and publish once (after winning this interval's claim when ``claim``).

        Returns:
            What was published, or ``None`` when another process holds the claim or a source
            or the store was unavailable (the reason is in :meth:`health`).
        """
        interval = self._settings.job_interval_seconds
        try:
            if claim and not await self._claims.claim(keys.reputation_job(), max(1, int(interval))):
                return None
            at = self._clock.time()
            mentions = await self._mentions.first_mentions(at - self._rules.lookback_seconds, at)
            labels = await self._labels.labels(at - label_lookback(self._settings), at)
            started = time.perf_counter()
            # Seconds of pure computation for a month of mentions: off the event loop, so the
            # pipeline and the scorer sharing this process keep their latency.
            computed = await asyncio.to_thread(
                build_reputation,
                mentions,
                labels,
                at=at,
                settings=self._settings,
                rules=self._rules,
            )
            took = time.perf_counter() - started
            await self._board.publish_reputation(computed.reputation)
        except Unavailable as exc:
            self._problem = f"reputation not computed: {exc}"
            log.warning("reputation: %s; trying again in %.0fs", exc, interval)
            return None
        self._problem = None
        self._last = computed
        log.info(
            "reputation: %d mentions, %d labels → %d weighted groups, %d copy relations, "
            "%d clusters in %.1fs",
            len(mentions),
            len(labels),
            len(computed.reputation.weights),
            len(computed.reputation.copies),
            len(computed.reputation.clusters),
            took,
        )
        return computed
