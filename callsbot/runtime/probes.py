"""Readiness probes: ask a peer on a schedule, answer ``/readyz`` from the cached result.

``/readyz`` must answer in well under a second whatever state the store is in (frozen, full,
gone), so no view ever waits on a peer: the probe does, in its own loop and within a timeout,
and the views read what it found last.

One look at the store (:func:`inspect_store`) serves three callers: the probe (every
``store.probe_interval_seconds``), the startup checks of ``run`` (:func:`check_at_start`, which
refuse a configuration mistake with exit status 2) and ``python -m callsbot check``. It writes
(a PING answers while every write fails), measures the clock against the store's, reads the
eviction policy and the heartbeats, and names what went wrong.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping

import attrs

from callsbot.clock import Clock
from callsbot.config import StoreSettings
from callsbot.errors import REJECTIONS, ConfigError, StoreError, StoreFault
from callsbot.metrics import Metrics
from callsbot.store.base import Liveness
from callsbot.tasks import wait_stop

log = logging.getLogger("callsbot")

#: Roles whose heartbeat age is exported as a gauge.
ROLES = ("aggregator", "scorer")

#: Eviction policies under which Redis may delete callsbot's keys: every ``allkeys-*`` one, and
#: every ``volatile-*`` one too (window members, claims and heartbeats all carry a TTL).
EVICTING = ("allkeys-", "volatile-")

#: What each fault means to an operator (docs/deploy.md has the longer version).
MEANING: Mapping[StoreFault, str] = {
    StoreFault.TIMEOUT: "store unreachable (timeout)",
    StoreFault.CONNECTION: "store unreachable (connection)",
    StoreFault.OOM: "store full (oom): writes refused at maxmemory",
    StoreFault.READONLY: "store read-only (readonly): a replica, or a failover in progress",
    StoreFault.NOPERM: "store denies callsbot a command (noperm): the Redis user lacks a right",
    StoreFault.AUTH: "store rejects the credentials (auth): wrong password or user",
    StoreFault.TLS: "store TLS mismatch (tls)",
    StoreFault.REBUILDING: "window rebuilding (rebuilding)",
    StoreFault.ERROR: "store error (error)",
}

#: Every state ``callsbot_store_state`` has a series for.
STATES = (
    "ok",
    *(f.value for f in StoreFault if f is not StoreFault.REBUILDING),
    "eviction",
    "skew",
)


def evicts(policy: str | None) -> bool:
    """Whether an eviction policy may delete callsbot's keys."""
    return policy is not None and policy.startswith(EVICTING)


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines too) made one space."""
    return re.sub(r"\s+", " ", text).strip()


@attrs.frozen
class StoreFindings:
    """What one look at the store found.

    Attributes:
        fault: why the store could not be used (``None``: it took a write and answered).
        detail: the error behind ``fault``.
        skew: this process's clock minus the store's, seconds (``None``: not measured).
        policy: the eviction policy (``None``: none, or it could not be read).
        policy_note: why the policy could not be read (``CONFIG`` not permitted, renamed).
        ages: heartbeat age per role (``None``: no live beat).
    """

    fault: StoreFault | None = None
    detail: str = ""
    skew: float | None = None
    policy: str | None = None
    policy_note: str | None = None
    ages: Mapping[str, float | None] = attrs.field(factory=dict)

    def fault_reason(self) -> str | None:
        """The fault as one readiness line, or ``None``."""
        if self.fault is None:
            return None
        return one_line(f"{MEANING[self.fault]}: {self.detail}")

    def skew_reason(self, settings: StoreSettings) -> str | None:
        """The clock skew as one readiness line when it is over the limit, else ``None``."""
        if self.skew is None or abs(self.skew) <= settings.max_clock_skew_seconds:
            return None
        side = "ahead of" if self.skew > 0 else "behind"
        return (
            f"clock skew (skew): this process's clock is {abs(self.skew):.0f}s {side} the "
            f"store's (Redis TIME), over the {settings.max_clock_skew_seconds:.0f}s limit; "
            "fix NTP"
        )

    def eviction_reason(self, settings: StoreSettings) -> str | None:
        """An evicting policy as one line (unless ``store.allow_eviction``), else ``None``."""
        if settings.allow_eviction or not evicts(self.policy):
            return None
        return (
            f"store may evict callsbot's keys (eviction): maxmemory-policy is {self.policy}; "
            "set it to noeviction (docs/deploy.md) or store.allow_eviction = true"
        )

    def reasons(self, settings: StoreSettings) -> list[str]:
        """Every readiness reason these findings give (empty: ready as far as the store goes)."""
        found = [
            self.fault_reason(),
            self.skew_reason(settings),
            self.eviction_reason(settings),
        ]
        return [reason for reason in found if reason is not None]

    def states(self, settings: StoreSettings) -> set[str]:
        """The ``callsbot_store_state`` labels that are 1."""
        states = set()
        if self.fault is not None:
            states.add(self.fault.value)
        if self.skew_reason(settings) is not None:
            states.add("skew")
        if self.eviction_reason(settings) is not None:
            states.add("eviction")
        return states or {"ok"}

    def refusal(self, settings: StoreSettings) -> ConfigError | None:
        """The configuration mistake that must stop ``run`` (exit status 2), if any."""
        if self.fault in REJECTIONS:
            return ConfigError("store.url", one_line(f"{MEANING[self.fault]}: {self.detail}"))
        eviction = self.eviction_reason(settings)
        if eviction is not None:
            return ConfigError("store.allow_eviction", eviction)
        return None


async def inspect_store(store: Liveness, *, name: str, within: float) -> StoreFindings:
    """Write, measure the clock, read the eviction policy and the heartbeats, within ``within`` s.

    Never raises for the store's sake: whatever went wrong is in the findings. A failure to reach
    the store is looked at more closely (:meth:`Liveness.diagnose`) within a second timeout.

    Args:
        store: the store to look at.
        name: this process's probe key name.
        within: seconds for the whole look (the diagnosis gets as long again).
    """
    skew: float | None = None
    policy: str | None = None
    note: str | None = None
    ages: dict[str, float | None] = {}
    error: StoreError | None = None
    try:
        async with asyncio.timeout(within):
            await store.probe_write(name)
            skew = await store.sync_clock()
            try:
                policy = await store.eviction_policy()
            except StoreError as exc:
                if exc.fault in (StoreFault.TIMEOUT, StoreFault.CONNECTION):
                    raise
                # Managed Redis often forbids or renames CONFIG: say so and go on.
                note = one_line(f"maxmemory-policy not readable: {exc}")
            for role in ROLES:
                ages[role] = await store.heartbeat_age(role)
    except StoreError as exc:
        error = exc
    except TimeoutError:
        error = StoreError(f"no answer within {within:.1f}s", fault=StoreFault.TIMEOUT)
    if error is None:
        return StoreFindings(skew=skew, policy=policy, policy_note=note, ages=ages)
    try:
        async with asyncio.timeout(within):
            error = await store.diagnose(error)
    except TimeoutError:
        pass
    return StoreFindings(
        fault=error.fault, detail=str(error), skew=skew, policy=policy, policy_note=note
    )


async def check_at_start(
    store: Liveness, settings: StoreSettings, *, name: str, within: float | None = None
) -> StoreFindings:
    """The startup checks of ``run``: refuse a mistake, warn about an outage, go on.

    Args:
        store: the store the roles will use.
        settings: the ``[store]`` section (limits, ``allow_eviction``, timeouts).
        name: this process's probe key name.
        within: seconds for the look; default: one connect and two socket timeouts, enough for
            the client's own retries on a refused password or handshake.

    Raises:
        ConfigError: wrong credentials, a user that cannot write or load scripts, a read-only
            replica, TLS against a plain server, or an evicting policy (exit status 2).
    """
    if within is None:
        within = settings.connect_timeout + 2 * settings.socket_timeout
    findings = await inspect_store(store, name=name, within=within)
    refusal = findings.refusal(settings)
    if refusal is not None:
        raise refusal
    if findings.fault is not None:
        log.warning("store not usable at start (%s); continuing, it is retried", findings.detail)
    if findings.policy_note is not None:
        log.warning("%s; make sure it is noeviction (docs/deploy.md)", findings.policy_note)
    elif evicts(findings.policy):
        log.warning(
            "maxmemory-policy is %s: Redis may evict callsbot's keys (store.allow_eviction = true)",
            findings.policy,
        )
    skew = findings.skew_reason(settings)
    if skew is not None:
        log.error("%s", skew)
    return findings


class StoreProbe:
    """Looks at the store every ``interval`` seconds; ``health`` answers from the last look.

    Args:
        store: what to probe.
        clock: "now".
        metrics: ``heartbeat_age{role}``, ``store_state{state}`` and ``store_clock_skew`` are
            refreshed on every probe.
        interval: seconds between probes.
        timeout: a probe that takes longer counts as a failure (``timeout``); while one is
            overdue, ``health`` says so without waiting for it.
        settings: the ``[store]`` limits (clock skew, ``allow_eviction``).
        name: this process's probe key name.
    """

    name = "store"

    def __init__(
        self,
        store: Liveness,
        *,
        clock: Clock,
        metrics: Metrics,
        interval: float,
        timeout: float = 1.0,
        settings: StoreSettings | None = None,
        name: str = "process",
    ) -> None:
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._interval = interval
        self._timeout = timeout
        self._settings = settings if settings is not None else StoreSettings()
        self._key = name
        self._reasons: list[str] = ["store not probed yet"]
        # Monotonic start of the probe in flight: a frozen peer is reported once the probe is
        # overdue, not only when its timeout has finally unwound.
        self._started: float | None = None
        self.findings: StoreFindings | None = None

    def health(self) -> list[str]:
        """The last probe's reasons; a timeout as soon as the probe in flight is overdue."""
        started = self._started
        if started is not None and time.monotonic() - started > self._timeout:
            return [f"{MEANING[StoreFault.TIMEOUT]}: no answer within {self._timeout:.1f}s"]
        return list(self._reasons)

    async def probe(self) -> StoreFindings:
        """Look at the store now and remember what was found."""
        self._started = time.monotonic()
        try:
            findings = await inspect_store(self._store, name=self._key, within=self._timeout)
        finally:
            self._started = None
        self.findings = findings
        self._reasons = findings.reasons(self._settings)
        states = findings.states(self._settings)
        for state in STATES:
            self._metrics.store_state.labels(state).set(1 if state in states else 0)
        if findings.skew is not None:
            self._metrics.store_clock_skew.set(findings.skew)
        for role, age in findings.ages.items():
            if age is not None:
                self._metrics.heartbeat_age.labels(role).set(age)
        return findings

    async def run(self, stop: asyncio.Event) -> None:
        """Probe every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            await self.probe()
            await wait_stop(stop, self._interval)
