"""The aggregator pipeline: message → extract → resolve pairs → validate → record.

Sources (the Telegram listener, catch-up, a Telegram Desktop export) hand
:class:`IncomingMessage` objects to :meth:`Aggregator.submit`, which only puts them on a bounded
queue: a Telegram handler never waits on HTTP or Redis, and a full queue makes the handler wait
(back-pressure) rather than drop. Worker tasks do the rest.

Nothing is lost to a bad moment: a market-data outage defers the candidate and asks again later,
a store outage keeps the mention (with its original timestamp) in a bounded buffer that is
written when the store is back. Nothing is lost to a crash either: the catch-up cursor of a chat
never passes a message that is not finished (queued, being processed, deferred, buffered, or
dropped by a full buffer), so the catch-up after any restart reads it again (:class:`CursorBook`).
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
from callsbot.errors import MarketUnavailable, StoreError
from callsbot.events import EventHub, LevelReached, MentionRecorded, structure, unstructure
from callsbot.extract import extract
from callsbot.market.models import MarketData
from callsbot.metrics import Metrics
from callsbot.models import IncomingMessage, Reason, Status, message_from_json, message_to_json
from callsbot.store import SignalStore, keys

log = logging.getLogger("callsbot.aggregator")

Sleep = Callable[[float], Awaitable[None]]

#: Seconds between attempts to drain the store-down buffer and the deferred candidates.
_RETRY_MIN = 1.0
_RETRY_MAX = 5.0

#: Sources whose messages move a chat's catch-up cursor (edits, backfill and replays do not).
CURSOR_SOURCES = frozenset({"live", "catch_up"})


@attrs.define
class _Chat:
    held: collections.Counter[int] = attrs.field(factory=collections.Counter)
    done: int = 0  # the highest message id finished
    written: int = 0  # the cursor value last written to the store
    # Messages whose mentions were dropped (a full buffer): id -> (message date, generation).
    lost: dict[int, tuple[int, int]] = attrs.field(factory=dict)
    # Its history past the cursor is not read yet; the lost marks the reading should settle.
    behind: bool = False
    marks: dict[int, int] = attrs.field(factory=dict)


class CursorBook:
    """Where each chat's catch-up cursor may stand: below every message not finished.

    A message is *held* from the moment it is queued until each of its mentions is recorded,
    rejected, or written after waiting (for market data, for the store); a message whose
    mention was dropped (the buffer was full) is *lost* until it has been read again; a chat
    whose history past its cursor is not read yet (at start, after a reconnect, while a
    FloodWait postpones its catch-up) is *behind*. The cursor of a chat is the highest finished
    message id below every held or lost one, and does not move while the chat is behind, so the
    catch-up after a crash reads again everything that was not finished, and the per-message
    claims skip what was.
    """

    def __init__(self) -> None:
        self._chats: dict[int, _Chat] = {}
        self._generation = 0

    def _chat(self, chat_id: int) -> _Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = self._chats[chat_id] = _Chat()
        return chat

    def hold(self, chat_id: int, message_id: int) -> None:
        """One more thing of this message is unfinished."""
        self._chat(chat_id).held[message_id] += 1

    def release(self, chat_id: int, message_id: int) -> None:
        """One thing of this message is finished (a no-op for a message never held)."""
        held = self._chat(chat_id).held
        if held[message_id] <= 1:
            held.pop(message_id, None)
        else:
            held[message_id] -= 1

    def finished(self, chat_id: int, message_id: int) -> None:
        """The pipeline went through this message (what it left waiting is held separately)."""
        chat = self._chat(chat_id)
        chat.done = max(chat.done, message_id)

    def lose(self, chat_id: int, message_id: int, ts: int) -> None:
        """A mention of this message was dropped: the message must be read again."""
        self._generation += 1
        self._chat(chat_id).lost[message_id] = (ts, self._generation)

    def found(self, chat_id: int, message_id: int) -> None:
        """A lost message was queued again (it is held from now on)."""
        self._chat(chat_id).lost.pop(message_id, None)

    def behind(self, chat_id: int) -> None:
        """The chat's history past its cursor is to be read: hold the cursor until
        :meth:`caught_up`. The messages lost so far are expected back from that reading."""
        chat = self._chat(chat_id)
        chat.behind = True
        chat.marks.update({mid: gen for mid, (_, gen) in chat.lost.items()})

    def caught_up(self, chat_id: int) -> int:
        """A catch-up read the chat's history and queued what it missed: the cursor may move
        again. Lost messages that it did not find (deleted since) are given up; how many."""
        chat = self._chat(chat_id)
        gone = [mid for mid, gen in chat.marks.items() if chat.lost.get(mid, (0, -1))[1] == gen]
        for mid in gone:
            del chat.lost[mid]
        chat.behind = False
        chat.marks = {}
        return len(gone)

    def expire(self, cutoff: int) -> int:
        """Forget lost messages dated at or before ``cutoff`` (they no longer count)."""
        expired = 0
        for chat in self._chats.values():
            old = [mid for mid, (ts, _) in chat.lost.items() if ts <= cutoff]
            for mid in old:
                del chat.lost[mid]
            expired += len(old)
        return expired

    def lost_chats(self) -> set[int]:
        """Chats with lost messages."""
        return {chat_id for chat_id, chat in self._chats.items() if chat.lost}

    def due(self) -> dict[int, int]:
        """Cursor values to write: chat -> the safe cursor, where it moved past the last write."""
        out: dict[int, int] = {}
        for chat_id, chat in self._chats.items():
            if chat.behind:
                continue
            limit = chat.done
            blocking = [*chat.held, *chat.lost]
            if blocking:
                limit = min(limit, min(blocking) - 1)
            if limit > chat.written:
                out[chat_id] = limit
        return out

    def written(self, chat_id: int, value: int) -> None:
        """The store took ``value`` for the chat's cursor."""
        chat = self._chat(chat_id)
        chat.written = max(chat.written, value)


@attrs.frozen
class Candidate:
    """An address from one message, on its way to being recorded."""

    kind: str  # mint | pair | evm | evm_pair: what the message named
    address: str  # the token; for a pair, its address until resolved
    chain: str
    message: IncomingMessage
    # The pair address once resolved to ``address``; equal to ``address`` when the pair slot
    # held no known pair and the address is being tried as a token itself.
    pair: str | None = None

    @property
    def group(self) -> str:
        return self.message.group

    @property
    def message_id(self) -> int:
        return self.message.message_id

    @property
    def ts(self) -> int:
        return self.message.ts

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
    chain: str
    message: IncomingMessage
    pair: str | None = None

    @property
    def group(self) -> str:
        return self.message.group

    @property
    def ts(self) -> int:
        return self.message.ts

    @property
    def claim(self) -> str:
        """The claim that makes recording this mention idempotent."""
        return keys.seen_mention(self.message.chat_id, self.message.message_id, self.token)


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
        events: where :class:`MentionRecorded` and :class:`LevelReached` are published.
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
        events: EventHub | None = None,
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
        self._events = events
        self._levels: dict[str, tuple[int, int]] = {}  # token -> (level published, window start)
        self._validate = validate
        self._sleep = sleep
        self._spool = spool
        self._queue: asyncio.Queue[IncomingMessage] = asyncio.Queue(maxsize=self._tg.queue_size)
        self._buffer: collections.deque[Mention] = collections.deque()
        self._deferred: collections.deque[Candidate] = collections.deque()
        self._retrying: list[Candidate] = []
        self._book = CursorBook()
        self._in_flight: set[IncomingMessage] = set()
        self._flushing = asyncio.Lock()
        self._wake = asyncio.Event()
        self._overflow_logged = False

    name = "pipeline"

    def health(self) -> list[str]:
        """Reasons the pipeline is not ready: store writes failing (mentions buffered)."""
        if self._buffer:
            return [f"store writes failing: {len(self._buffer)} mentions buffered"]
        return []

    # -- intake --------------------------------------------------------------------------------

    async def submit(self, message: IncomingMessage) -> None:
        """Queue a message for the workers; waits while the queue is full (back-pressure).

        From here on the message holds its chat's catch-up cursor until it is finished.
        """
        self._metrics.messages_seen.labels(message.source).inc()
        self._hold(message)
        if message.source in CURSOR_SOURCES:
            self._book.found(message.chat_id, message.message_id)
        try:
            await self._queue.put(message)
        except BaseException:
            self._release(message)
            raise
        self._metrics.queue_depth.set(self._queue.qsize())

    def _hold(self, message: IncomingMessage) -> None:
        if message.source in CURSOR_SOURCES:
            self._book.hold(message.chat_id, message.message_id)

    def _release(self, message: IncomingMessage) -> None:
        if message.source in CURSOR_SOURCES:
            self._book.release(message.chat_id, message.message_id)

    def _lose(self, message: IncomingMessage) -> None:
        if message.source in CURSOR_SOURCES:
            self._book.lose(message.chat_id, message.message_id, message.ts)

    def behind(self, chat_id: int) -> None:
        """The chat's history past its cursor is about to be read (start, reconnect, a read
        again): its cursor stays put until :meth:`caught_up`, whatever live messages finish
        meanwhile."""
        self._book.behind(chat_id)

    def caught_up(self, chat_id: int) -> None:
        """A catch-up of the chat queued every message it missed."""
        gone = self._book.caught_up(chat_id)
        if gone:
            log.warning(
                "%d messages of chat %d whose mentions were dropped are no longer in its "
                "history; given up",
                gone,
                chat_id,
            )

    def take_rereads(self) -> set[int]:
        """Chats to read again now: messages of theirs were dropped, and there is room again.

        Nothing while the buffer or the deferred list still holds anything: a message read
        again now would only be dropped again.
        """
        if self._buffer or self._deferred or self._retrying:
            return set()
        return self._book.lost_chats()

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
        deferred = [*self._retrying, *self._deferred]
        if not (messages or self._buffer or deferred):
            return
        lines = [json.dumps({"message": message_to_json(m)}) for m in messages]
        lines += [json.dumps({"mention": unstructure(m)}) for m in self._buffer]
        lines += [json.dumps({"candidate": unstructure(c)}) for c in deferred]
        # Written whole or not at all: a crash mid-write must not leave half a spool that the
        # next start would take for all of it.
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        log.warning(
            "stopped with %d messages unprocessed, %d mentions waiting for the store and %d for "
            "market data; saved to %s for the next start",
            len(messages),
            len(self._buffer),
            len(deferred),
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
                    message = message_from_json(entry["message"])
                    messages.append(message)
                elif "mention" in entry:
                    mention = structure(entry["mention"], Mention)
                    self._buffer.append(mention)
                    message = mention.message
                else:
                    candidate = structure(entry["candidate"], Candidate)
                    self._deferred.append(candidate)
                    message = candidate.message
                self._hold(message)
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
            self._release(message)
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
        if message.source in CURSOR_SOURCES:
            # What it left waiting (deferred, buffered) holds the cursor on its own.
            self._book.finished(message.chat_id, message.message_id)
        self._metrics.pipeline_latency.observe(max(0.0, self._clock.time() - started))
        return results

    def _candidate(self, m: IncomingMessage, kind: str, address: str, chain: str) -> Candidate:
        return Candidate(kind, address, chain, m)

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
            token=c.address, kind=c.kind, chain=c.chain, message=c.message, pair=c.pair
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
                claim=mention.claim,
                ttl=self._tg.seen_ttl_seconds,
            )
        except StoreError as exc:
            self._metrics.store_errors.labels("record").inc()
            log.warning("store unavailable, buffering %s: %s", short(mention.token), exc)
            return "buffered", None
        if count is None:
            self._metrics.mentions_rejected.labels("duplicate").inc()
            return "duplicate", None
        log.info(
            "mention %s %s groups=%d",
            mention.group,
            short(mention.token),
            count,
            extra={"token": mention.token, "group": mention.group, "groups": count},
        )
        self._publish(mention, count)
        return "recorded", count

    def _publish(self, mention: Mention, count: int) -> None:
        if self._events is None:
            return
        now = self._clock.time()
        m = mention.message
        ref = m.ref
        self._events.publish(
            MentionRecorded(
                at=now,
                ref=ref,
                token=mention.token,
                mention_kind=mention.kind,
                chain=mention.chain,
                count=count,
                pair=mention.pair,
                text=m.text,
                sender_id=m.sender_id,
                forward=m.forward,
            )
        )
        level, start = self._levels.get(mention.token, (0, m.ts))
        if m.ts - start >= self._store.window:
            level, start = 0, m.ts  # the window emptied since: levels count afresh
        if count > level:
            self._levels[mention.token] = (count, start)
            self._events.publish(
                LevelReached(
                    at=now,
                    token=mention.token,
                    chain=mention.chain,
                    level=count,
                    ts=m.ts,
                    ref=ref,
                )
            )

    def _keep(self, mention: Mention, c: Candidate) -> Recorded:
        if len(self._buffer) >= self._tg.buffer_size:
            self._metrics.buffer_overflow.inc()
            self._lose(mention.message)
            if not self._overflow_logged:
                log.error(
                    "STORE BUFFER FULL (%d mentions): new mentions are dropped until the "
                    "store is back; their messages are read again from Telegram then",
                    self._tg.buffer_size,
                )
                self._overflow_logged = True
            return self._recorded(c, "rejected:buffer_full", None)
        self._hold(mention.message)
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
                self._release(mention.message)
                progressed = True
        self._metrics.buffer_size.set(len(self._buffer))
        if progressed and not self._buffer:
            log.info("store is back; buffered mentions written")
            self._overflow_logged = False
        return progressed

    def _defer(self, c: Candidate) -> Recorded:
        if len(self._deferred) >= self._tg.buffer_size:
            self._metrics.mentions_rejected.labels("deferred_full").inc()
            self._lose(c.message)
            return self._recorded(c, "rejected:deferred_full", None)
        self._hold(c.message)
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
        for token in [t for t, (_, start) in self._levels.items() if start <= cutoff]:
            del self._levels[token]
        live = [c for c in batch if c.ts > cutoff]
        for c in batch:
            if c.ts <= cutoff:
                self._metrics.mentions_rejected.labels("expired_unknown").inc()
        before = len(live)
        # Held here until settled: a stop that cancels the lookup spools them, not loses them.
        self._retrying = live
        await self._handle(live)
        self._retrying = []
        # Released only now: what was deferred again took its own hold meanwhile.
        for c in batch:
            self._release(c.message)
        return len(self._deferred) < before

    def _reject(self, c: Candidate, reason: str) -> Recorded:
        self._metrics.mentions_rejected.labels(reason).inc()
        log.debug("rejected %s from %s: %s", short(c.address), c.group, reason)
        return self._recorded(c, f"rejected:{reason}", None)

    def _recorded(self, c: Candidate, outcome: str, count: int | None) -> Recorded:
        return Recorded(c.address, c.kind, c.group, c.message_id, c.ts, outcome, count)

    # -- the catch-up cursors ------------------------------------------------------------------

    async def flush_cursors(self) -> None:
        """Write each chat's catch-up cursor where it moved (see :class:`CursorBook`).

        Called on the heartbeat, not per message: it keeps a round trip off the hot path, and a
        cursor a few seconds behind only means catch-up re-reads a few messages, which the
        per-message claims then skip.
        """
        expired = self._book.expire(unix_seconds(self._clock) - self._store.window)
        if expired:
            log.info("%d dropped messages left the window before they could be read again", expired)
        for chat_id, message_id in self._book.due().items():
            try:
                await self._store.advance_cursor(keys.chat_cursor(chat_id), message_id)
            except StoreError:
                self._metrics.store_errors.labels("cursor").inc()
                continue
            self._book.written(chat_id, message_id)


def _dedupe(candidates: list[Candidate]) -> list[Candidate]:
    # Per message, never across messages: a retry hands over the deferred candidates of many
    # messages at once, and each group's call of a token is a mention of its own. Keyed like
    # the store's claim (plus the group), so what is dropped here would only have been refused
    # as a duplicate there.
    seen: set[tuple[int, int, str, str]] = set()
    out: list[Candidate] = []
    for c in candidates:
        m = c.message
        key = (m.chat_id, m.message_id, m.group, c.address)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out
