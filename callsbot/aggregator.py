"""The aggregator pipeline: message → extract → resolve pairs → validate → record.

Sources (the Telegram listener, catch-up, a Telegram Desktop export) hand
:class:`IncomingMessage` objects to :meth:`Aggregator.submit`, which only puts them on a bounded
queue: a Telegram handler never waits on HTTP or Redis, and a full queue makes the handler wait
(back-pressure) rather than drop. Worker tasks do the rest.

Nothing is lost to a bad moment: a market-data outage defers the candidate and asks again later,
a store outage keeps the mention (with its original timestamp) in a bounded buffer that is
written when the store is back.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import attrs

from callsbot.clock import Clock, unix_seconds
from callsbot.config import Settings
from callsbot.extract import Entity, extract
from callsbot.market.models import MarketData, MarketUnavailable, Reason, Status
from callsbot.metrics import Metrics
from callsbot.store import SignalStore, StoreError

log = logging.getLogger("callsbot.aggregator")

Sleep = Callable[[float], Awaitable[None]]

#: Seconds between attempts to drain the store-down buffer and the deferred candidates.
_RETRY_MIN = 1.0
_RETRY_MAX = 5.0


@attrs.frozen
class IncomingMessage:
    """One Telegram message from a call group, whatever delivered it.

    Attributes:
        chat_id: Telegram's peer id of the group (``-100…`` for channels and supergroups).
        group: the name mentions are recorded under: ``@username``, else ``str(chat_id)``.
        message_id: the message's id within the chat.
        ts: the message's own date (Telegram's server clock), unix seconds.
        text: the plain text (``message.message``, not the markdown rendering).
        entities: formatting entities, Bot-API names, UTF-16 offsets.
        source: ``live``, ``edit``, ``catch_up`` or ``backfill`` (metrics and logs only).
    """

    chat_id: int
    group: str
    message_id: int
    ts: int
    text: str
    entities: tuple[Entity, ...] = ()
    source: str = "live"


@attrs.frozen
class Candidate:
    """An address from one message, on its way to being recorded."""

    kind: str  # mint | pair | evm | evm_pair: what the message named
    address: str  # the token; for a pair, its address until resolved
    chain: str
    group: str
    chat_id: int
    message_id: int
    ts: int
    # The pair address once resolved to ``address``; equal to ``address`` when the pair slot
    # held no known pair and the address is being tried as a token itself.
    pair: str | None = None

    @property
    def is_pair(self) -> bool:
        """A pair address still waiting to be resolved to its base token."""
        return self.kind in ("pair", "evm_pair") and self.pair is None

    @property
    def slot_token(self) -> bool:
        """A pair-slot address that is no known pair, tried as a token instead."""
        return self.pair is not None and self.pair == self.address

    def as_token(self, token: str) -> Candidate:
        # EVM mentions are keyed lower-case (as extracted); DexScreener answers checksummed.
        key = token.lower() if self.kind == "evm_pair" else token
        return attrs.evolve(self, address=key, pair=self.address)


@attrs.frozen
class Mention:
    """A validated mention ready for the store."""

    token: str
    kind: str
    group: str
    ts: int
    claim_key: str


@attrs.frozen
class Recorded:
    """What the pipeline did with one address (returned for tests, backfill and the demo)."""

    token: str
    kind: str
    group: str
    message_id: int
    ts: int
    outcome: str  # recorded | duplicate | buffered | deferred | rejected:<reason>
    groups_in_window: int | None = None


def short(address: str) -> str:
    """``AbCd…wXyZ``: enough to recognise an address in a log line."""
    return address if len(address) <= 12 else f"{address[:4]}…{address[-4:]}"


class Aggregator:
    """Turns call-group messages into mentions in the store.

    Args:
        settings: all settings (telegram, extraction, store sections are read).
        store: where mentions go.
        market: validation and pair resolution (batched and cached by the implementation).
        clock: "now" for expiry decisions.
        metrics: the process's metrics.
        validate: ``False`` records every extracted mint without asking market data (backfill
            ``--no-validate``); pair addresses are still resolved.
        spool: where :meth:`run` saves what still waits at shutdown (and takes it back from).
        sleep: injectable for tests.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        store: SignalStore,
        market: MarketData | None,
        clock: Clock,
        metrics: Metrics,
        validate: bool = True,
        spool: Path | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._tg = settings.telegram
        self._store = store
        self._market = market
        self._clock = clock
        self._metrics = metrics
        self._validate = validate
        self._sleep = sleep
        self._spool = spool
        self._queue: asyncio.Queue[IncomingMessage] = asyncio.Queue(maxsize=self._tg.queue_size)
        self._buffer: collections.deque[Mention] = collections.deque()
        self._deferred: collections.deque[Candidate] = collections.deque()
        self._cursors: dict[int, int] = {}
        self._in_flight: set[IncomingMessage] = set()
        self._flushing = asyncio.Lock()
        self._wake = asyncio.Event()
        self._overflow_logged = False

    # -- intake --------------------------------------------------------------------------------

    async def submit(self, message: IncomingMessage) -> None:
        """Queue a message for the workers; waits while the queue is full (back-pressure)."""
        self._metrics.messages_seen.labels(message.source).inc()
        await self._queue.put(message)
        self._metrics.queue_depth.set(self._queue.qsize())

    @property
    def backlog(self) -> int:
        """Messages waiting for a worker."""
        return self._queue.qsize()

    @property
    def buffered(self) -> int:
        """Mentions waiting for the store to come back."""
        return len(self._buffer)

    @property
    def deferred(self) -> int:
        """Candidates waiting for market data to answer."""
        return len(self._deferred)

    # -- running -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serve the queue until ``stop`` is set, then finish what is queued and return.

        With a spool file, whatever still waits when the run ends (messages queued or being
        processed if the run is cancelled before it drained, mentions waiting for the store or
        for market data) is saved there, and the next run starts by taking it back.
        """
        spooled: list[IncomingMessage] = []
        if self._spool is not None:
            spooled = await asyncio.to_thread(self._load_spool, self._spool)
        try:
            async with asyncio.TaskGroup() as tg:
                workers = [
                    tg.create_task(self._worker(), name=f"aggregator-worker-{i}")
                    for i in range(self._tg.workers)
                ]
                retry = tg.create_task(self._retry_loop(), name="aggregator-retry")
                for message in spooled:
                    await self._queue.put(message)
                await stop.wait()
                await self.drain()
                for task in [*workers, retry]:
                    task.cancel()
        finally:
            # Synchronous on purpose: this also runs while the task is being cancelled (the
            # grace period ran out), when no further await could be relied on to finish.
            if self._spool is not None:
                self._save_spool(self._spool)

    def _save_spool(self, path: Path) -> None:
        messages = list(self._in_flight)
        while not self._queue.empty():
            messages.append(self._queue.get_nowait())
            self._queue.task_done()
        if not (messages or self._buffer or self._deferred):
            return
        lines = [json.dumps({"message": attrs.asdict(m)}) for m in messages]
        lines += [json.dumps({"mention": attrs.asdict(m)}) for m in self._buffer]
        lines += [json.dumps({"candidate": attrs.asdict(c)}) for c in self._deferred]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        log.warning(
            "stopped with %d messages unprocessed, %d mentions waiting for the store and %d for "
            "market data; saved to %s for the next start",
            len(messages),
            len(self._buffer),
            len(self._deferred),
            path,
        )

    def _load_spool(self, path: Path) -> list[IncomingMessage]:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        messages: list[IncomingMessage] = []
        for line in filter(None, text.splitlines()):
            try:
                entry = json.loads(line)
                if "message" in entry:
                    raw = entry["message"]
                    entities = tuple(Entity(**e) for e in raw.pop("entities"))
                    messages.append(IncomingMessage(**raw, entities=entities))
                elif "mention" in entry:
                    self._buffer.append(Mention(**entry["mention"]))
                else:
                    self._deferred.append(Candidate(**entry["candidate"]))
            except (ValueError, TypeError, KeyError) as exc:
                log.error("spool %s: unreadable line skipped (%s): %.120s", path, exc, line)
        path.unlink()
        self._metrics.buffer_size.set(len(self._buffer))
        log.info(
            "took back %d messages, %d buffered and %d deferred mentions from %s",
            len(messages),
            len(self._buffer),
            len(self._deferred),
            path,
        )
        self._wake.set()
        return messages

    async def drain(self) -> None:
        """Wait until every queued message went through a worker, then try the buffer once."""
        await self._queue.join()
        await self.flush_buffer()
        await self.flush_cursors()

    async def _worker(self) -> None:
        while True:
            message = await self._queue.get()
            self._in_flight.add(message)
            try:
                await self.process(message)
            except asyncio.CancelledError:
                # Cut off mid-message (the grace ran out): it stays in _in_flight, and run()
                # spools it for the next start; its claims make reprocessing it harmless.
                self._queue.task_done()
                raise
            except Exception:
                # One bad message must not kill the worker; the message itself is logged.
                log.exception("failed to process message %s/%s", message.group, message.message_id)
                self._metrics.mentions_rejected.labels("internal_error").inc()
            self._in_flight.discard(message)
            self._queue.task_done()
            self._metrics.queue_depth.set(self._queue.qsize())

    async def _retry_loop(self) -> None:
        delay = _RETRY_MIN
        while True:
            # asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow the cancel that
            # ends this loop (gh-86296), leaving run() waiting for a task that never stops.
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({waker}, timeout=delay)
            finally:
                waker.cancel()
            self._wake.clear()
            if not self._buffer and not self._deferred:
                delay = _RETRY_MIN
                continue
            progressed = await self.flush_buffer()
            progressed = await self.retry_deferred() or progressed
            delay = _RETRY_MIN if progressed else min(delay * 2, _RETRY_MAX)

    # -- the pipeline --------------------------------------------------------------------------

    async def process(self, message: IncomingMessage) -> list[Recorded]:
        """Run one message through the whole pipeline (workers call this; so can tests)."""
        started = self._clock.time()
        found = extract(
            message.text, message.entities, max_addresses=self._settings.extraction.max_addresses
        )
        if found.dropped:
            self._metrics.extraction_dropped.inc(found.dropped)
            log.warning(
                "message %s/%s named %d addresses over the cap of %d; they were dropped",
                message.group,
                message.message_id,
                found.dropped,
                self._settings.extraction.max_addresses,
            )
        candidates = [self._candidate(message, "mint", a, "solana") for a in found.mints]
        candidates += [self._candidate(message, "pair", a, "solana") for a in found.pairs]
        results: list[Recorded] = []
        for evm in found.evm:
            candidates.append(self._candidate(message, "evm", evm.address, evm.chain or ""))
        for evm in found.evm_pairs:
            candidates.append(self._candidate(message, "evm_pair", evm.address, evm.chain or ""))
        results += await self._handle(candidates)
        if message.source in ("live", "catch_up"):
            seen = self._cursors.get(message.chat_id, 0)
            self._cursors[message.chat_id] = max(seen, message.message_id)
        self._metrics.pipeline_latency.observe(max(0.0, self._clock.time() - started))
        return results

    def _candidate(self, m: IncomingMessage, kind: str, address: str, chain: str) -> Candidate:
        return Candidate(kind, address, chain, m.group, m.chat_id, m.message_id, m.ts)

    async def _handle(self, candidates: Sequence[Candidate]) -> list[Recorded]:
        """Locate, resolve, validate and record; results in the order the message named them.

        An EVM address without a chain takes the chain of its most liquid pair anywhere. A pair
        address that is no known pair is tried once as a token (call templates put mints into
        chart links); only if that fails too is it rejected as ``unknown_pair``.
        """
        if not candidates:
            return []
        position: dict[str, int] = {}
        for i, c in enumerate(candidates):
            position.setdefault(c.address, i)
        done: list[tuple[int, Recorded]] = []

        def settle(c: Candidate, result: Recorded) -> None:
            done.append((position.get(c.pair or c.address, len(position)), result))

        tokens: list[Candidate] = [c for c in candidates if c.chain and not c.is_pair]
        chainless = [c for c in candidates if not c.chain]
        if chainless:
            chains = await self._locate(chainless)
            for c in chainless:
                if chains is None:
                    settle(c, self._defer(c))
                elif (chain := chains.get(c.address)) is None:
                    settle(c, self._reject(c, "evm_no_chain"))
                else:
                    # Found as a token: a chainless pair slot is settled as one too.
                    pair = c.address if c.kind == "evm_pair" else c.pair
                    tokens.append(attrs.evolve(c, chain=chain, pair=pair))
        for chain in sorted({c.chain for c in candidates if c.is_pair and c.chain}):
            pairs = [c for c in candidates if c.is_pair and c.chain == chain]
            resolved = await self._resolve(pairs, chain)
            for c in pairs:
                if resolved is None:
                    settle(c, self._defer(c))
                elif (base := resolved.get(c.address)) is None:
                    tokens.append(attrs.evolve(c, pair=c.address))
                else:
                    tokens.append(c.as_token(base))
        tokens.sort(key=lambda c: position.get(c.pair or c.address, 0))
        tokens = _dedupe(tokens)
        valid: list[Candidate] = []
        if self._market is None:
            for c in tokens:
                if c.slot_token:
                    settle(c, self._reject(c, "unknown_pair"))
                else:
                    valid.append(c)
        else:
            # Without the gate, only pair-slot addresses need asking: do they trade at all?
            asked = tokens if self._validate else [c for c in tokens if c.slot_token]
            valid = [c for c in tokens if not self._validate and not c.slot_token]
            for chain in sorted({c.chain for c in asked}):
                group = [c for c in asked if c.chain == chain]
                try:
                    verdicts = await self._market.verdicts([c.address for c in group], chain=chain)
                except MarketUnavailable as exc:
                    log.warning("market data unavailable (%s); %d deferred", exc, len(group))
                    verdicts = {}
                for c in group:
                    verdict = verdicts.get(c.address)
                    if verdict is None or verdict.status is Status.UNKNOWN:
                        settle(c, self._defer(c))
                    elif c.slot_token and verdict.reason is Reason.NO_PAIRS:
                        settle(c, self._reject(c, "unknown_pair"))
                    elif verdict.status is Status.INVALID and self._validate:
                        settle(c, self._reject(c, verdict.reason.value))
                    else:
                        valid.append(c)
            valid.sort(key=lambda c: position.get(c.pair or c.address, 0))
        for c in valid:
            settle(c, await self._record(c))
        return [result for _, result in sorted(done, key=lambda item: item[0])]

    async def _locate(self, chainless: Sequence[Candidate]) -> dict[str, str | None] | None:
        if self._market is None:
            return {c.address: None for c in chainless}
        try:
            return dict(await self._market.locate([c.address for c in chainless]))
        except MarketUnavailable as exc:
            log.warning("chain lookup unavailable (%s); %d addresses deferred", exc, len(chainless))
            return None

    async def _resolve(
        self, pairs: Sequence[Candidate], chain: str
    ) -> dict[str, str | None] | None:
        if self._market is None:
            return {c.address: None for c in pairs}
        try:
            return dict(await self._market.resolve_pairs([c.address for c in pairs], chain=chain))
        except MarketUnavailable as exc:
            log.warning("pair lookup unavailable (%s); %d pairs deferred", exc, len(pairs))
            return None

    async def _record(self, c: Candidate) -> Recorded:
        mention = Mention(
            token=c.address,
            kind=c.kind,
            group=c.group,
            ts=c.ts,
            claim_key=f"msg:{c.chat_id}:{c.message_id}:{c.address}",
        )
        if self._buffer:
            # The store was away a moment ago: queue behind what waits, keep order, don't
            # make every new mention pay for the timeouts of a dead peer.
            return self._keep(mention, c)
        outcome, count = await self._write(mention)
        if outcome == "buffered":
            return self._keep(mention, c)
        return self._recorded(c, outcome, count)

    async def _write(self, mention: Mention) -> tuple[str, int | None]:
        """Claim and record in one round trip; ``buffered``: the caller must keep ``mention``."""
        try:
            count = await self._store.record_once(
                mention.token,
                mention.group,
                mention.ts,
                claim=mention.claim_key,
                ttl=self._tg.seen_ttl_seconds,
            )
        except StoreError as exc:
            self._metrics.store_errors.labels("record").inc()
            log.warning("store unavailable, buffering %s: %s", short(mention.token), exc)
            return "buffered", None
        if count is None:
            self._metrics.mentions_rejected.labels("duplicate").inc()
            return "duplicate", None
        self._metrics.mentions_recorded.labels(mention.kind).inc()
        log.info(
            "mention %s %s groups=%d",
            mention.group,
            short(mention.token),
            count,
            extra={"token": mention.token, "group": mention.group, "groups": count},
        )
        if count >= 2 and log.isEnabledFor(logging.INFO):
            # The line needs the group names: a second round trip, only when it is printed.
            await self._log_consensus(mention.token, count)
        return "recorded", count

    async def _log_consensus(self, token: str, count: int) -> None:
        try:
            groups = await self._store.groups(token)
        except StoreError:
            return
        first = min(groups.values(), default=unix_seconds(self._clock))
        minutes = (unix_seconds(self._clock) - first) / 60
        log.info(
            "consensus %s groups=%d [%s] first call %.0f min ago",
            token,
            count,
            ", ".join(sorted(groups, key=groups.__getitem__)),
            minutes,
            extra={"token": token, "groups": count},
        )

    def _keep(self, mention: Mention, c: Candidate) -> Recorded:
        if len(self._buffer) >= self._tg.buffer_size:
            self._metrics.buffer_overflow.inc()
            if not self._overflow_logged:
                log.error(
                    "STORE BUFFER FULL (%d mentions): new mentions are being LOST until the "
                    "store is back",
                    self._tg.buffer_size,
                )
                self._overflow_logged = True
            return self._recorded(c, "rejected:buffer_full", None)
        self._buffer.append(mention)
        self._metrics.buffer_size.set(len(self._buffer))
        self._wake.set()
        return self._recorded(c, "buffered", None)

    async def flush_buffer(self) -> bool:
        """Write buffered mentions in order until the store fails again; True if any went."""
        progressed = False
        async with self._flushing:  # the retry loop, drain() and callers may all try at once
            while self._buffer:
                mention = self._buffer[0]
                outcome, _ = await self._write(mention)
                if outcome == "buffered":
                    break
                self._buffer.popleft()
                progressed = True
        self._metrics.buffer_size.set(len(self._buffer))
        if progressed and not self._buffer:
            log.info("store is back; buffered mentions written")
            self._overflow_logged = False
        return progressed

    def _defer(self, c: Candidate) -> Recorded:
        if len(self._deferred) >= self._tg.buffer_size:
            self._metrics.mentions_rejected.labels("deferred_full").inc()
            return self._recorded(c, "rejected:deferred_full", None)
        self._deferred.append(c)
        self._wake.set()
        return self._recorded(c, "deferred", None)

    async def retry_deferred(self) -> bool:
        """Ask market data again for candidates it could not judge; True if any settled."""
        if not self._deferred:
            return False
        batch = list(self._deferred)
        self._deferred.clear()
        cutoff = unix_seconds(self._clock) - self._store.window
        live = [c for c in batch if c.ts > cutoff]
        for c in batch:
            if c.ts <= cutoff:
                self._metrics.mentions_rejected.labels("expired_unknown").inc()
        before = len(live)
        await self._handle(live)
        return len(self._deferred) < before

    def _reject(self, c: Candidate, reason: str) -> Recorded:
        self._metrics.mentions_rejected.labels(reason).inc()
        log.debug("rejected %s from %s: %s", short(c.address), c.group, reason)
        return self._recorded(c, f"rejected:{reason}", None)

    def _recorded(self, c: Candidate, outcome: str, count: int | None) -> Recorded:
        return Recorded(c.address, c.kind, c.group, c.message_id, c.ts, outcome, count)

    async def flush_cursors(self) -> None:
        """Write the last processed message id of each chat (the catch-up cursors).

        Called on the heartbeat, not per message: it keeps a round trip off the hot path, and a
        cursor a few seconds behind only means catch-up re-reads a few messages, which the
        per-message claims then skip.
        """
        pending, self._cursors = self._cursors, {}
        for chat_id, message_id in pending.items():
            try:
                await self._store.advance_cursor(cursor_name(chat_id), message_id)
            except StoreError:
                self._metrics.store_errors.labels("cursor").inc()
                current = self._cursors.get(chat_id, 0)
                self._cursors[chat_id] = max(current, message_id)


def cursor_name(chat_id: int) -> str:
    """Name of the catch-up cursor (last processed message id) of a chat."""
    return f"msg:{chat_id}"


def _dedupe(candidates: list[Candidate]) -> list[Candidate]:
    seen: set[str] = set()
    out: list[Candidate] = []
    for c in candidates:
        if c.address not in seen:
            seen.add(c.address)
            out.append(c)
    return out
