"""Independence: which calls are one opinion repeated (outcomes.md section 6).

Two parts.

**At once, per message** (:class:`VoteBook`): a message about a token votes 0 when it

- forwards a monitored group (the origin counts itself; the vote is credited to the origin),
- forwards an unmonitored channel that another group already forwarded for the token (a
  channel votes once, under the channel, however many groups forward it),
- repeats the normalised text (equal SHA-1, or simhash Hamming ≤ 3) of an earlier message about
  the token from another group within 24 h,
- comes from a sender who already voted for the token through another group.

**From history, per ordered pair of groups** (:func:`copy_model`): over the last 30 days of
first mentions, L(A→B) = the tokens B first called 0 < Δ ≤ 10 min after A, each weighing
1/(groups that called it) so that shared *rare* calls are the evidence. The copy probability
c(A→B) is the Wilson lower bound of that weighted share of B's calls when L ≥ 5, the lift over a
null model (A's timeline circularly shifted by seeded random offsets of at least an hour) is at
least 3, the median lag is at most 5 min and B follows A at least twice as often as A follows B;
otherwise 0. Pairs that pass every test but the last in both directions are mirrors of each
other: they form a cluster that counts at most as its strongest member.

docs/consensus.md records every choice the method left open.
"""

from __future__ import annotations

import bisect
import math
import random
import statistics
from collections import deque
from collections.abc import Iterable, Mapping

import attrs

from callsbot.reputation.fingerprint import hamming
from callsbot.reputation.inputs import Mention, first_of_each
from callsbot.reputation.wilson import Z95, wilson_lower

#: Another group's text about the token counts as "earlier" for this long (s).
TEXT_WINDOW_SECONDS = 86400.0
#: Simhashes this close (differing bits) are the same text.
SIMHASH_MAX_DISTANCE = 3
#: B follows A when B's call comes 0 < Δ ≤ this after A's (s), in history and at scoring.
FOLLOW_SECONDS = 600.0

# -- at once -----------------------------------------------------------------------------------

#: The message is the group's own call.
OWN = "own"
#: A forward of a monitored group: votes 0, the vote is the origin's.
FORWARD = "forward"
#: A forward of an unmonitored channel (or a hidden origin): one vote per channel.
CHANNEL = "channel"
#: The same normalised text as an earlier message of another group.
SAME_TEXT = "same_text"
#: A sender who already voted through another group.
SAME_SENDER = "same_sender"

_RANK = {OWN: 0, CHANNEL: 1, FORWARD: 2, SAME_TEXT: 3, SAME_SENDER: 4}
#: The book's per-(token, group) votes are swept of old entries from this many on (then at
#: each doubling).
_SWEEP_MIN = 4096


@attrs.frozen
class AtOnceVote:
    """What one message (or a group's best message about a token) is, for independence.

    Attributes:
        kind: :data:`OWN`, :data:`FORWARD`, :data:`CHANNEL`, :data:`SAME_TEXT` or
            :data:`SAME_SENDER`.
        voter: whose vote it is: the group itself, the origin group of a forward, or
            ``channel:<peer id>`` / ``hidden:<name>`` for an unmonitored origin. Calls with the
            same voter count once.
        of: the group it repeats (same text or sender), or the origin of a forward.
    """

    kind: str
    voter: str
    of: str | None = None

    @property
    def independent(self) -> bool:
        """The message may count (its own call, or a channel's one vote)."""
        return self.kind in (OWN, CHANNEL)

    def describe(self) -> str:
        """Short words for the consensus line (empty for a group's own call)."""
        if self.kind == FORWARD:
            return f"fwd of {self.of}"
        if self.kind == CHANNEL:
            return (
                f"fwd of {self.voter}" if self.of is None else f"fwd of {self.voter} via {self.of}"
            )
        if self.kind == SAME_TEXT:
            return f"same text as {self.of}"
        if self.kind == SAME_SENDER:
            return f"same sender as {self.of}"
        return ""

    def to_json(self) -> dict[str, str | None]:
        """``{"kind", "voter", "of"}``."""
        return {"kind": self.kind, "voter": self.voter, "of": self.of}

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> AtOnceVote:
        """The vote :meth:`to_json` wrote.

        Raises:
            ValueError: not such a dict.
        """
        kind, voter, of = raw.get("kind"), raw.get("voter"), raw.get("of")
        if kind not in _RANK or not isinstance(voter, str) or not isinstance(of, str | None):
            raise ValueError(f"not a vote: {raw!r}")
        return cls(str(kind), voter, of)


def own_vote(group: str) -> AtOnceVote:
    """A group's own, independent call."""
    return AtOnceVote(OWN, group)


@attrs.frozen
class MessageVote:
    """The at-once decision on one message.

    Attributes:
        mention: the message's mention.
        vote: what it is.
        value: 1 when it counts, 0 when it repeats a vote already cast (a forward of a monitored
            group is 0 here: the origin's own message counts).
    """

    mention: Mention
    vote: AtOnceVote
    value: float


@attrs.frozen
class _Seen:
    ts: float
    group: str
    sha1: str | None
    simhash: int | None
    sender_id: int | None
    voter: str
    value: float


class VoteBook:
    """Decides the at-once vote of each message, given the messages before it.

    Pure and in memory: it remembers each token's messages of the last 24 h. Feed it messages
    in time order; a decision is never revised by a later message (what is decided at t depends
    only on messages dated at or before t).

    Args:
        monitored: chat id → group name of the monitored groups. Every mention added teaches
            the book its own chat id as well.
    """

    def __init__(self, monitored: Mapping[int, str] | None = None) -> None:
        self._monitored: dict[int, str] = dict(monitored or {})
        self._seen: dict[str, deque[_Seen]] = {}
        self._order: deque[tuple[float, str]] = deque()  # (date, token) in the order added
        self._best: dict[tuple[str, str], tuple[AtOnceVote, float]] = {}
        self._best_sweep_at = _SWEEP_MIN
        self._newest = -math.inf

    @property
    def monitored(self) -> Mapping[int, str]:
        """The monitored groups known so far (chat id → name)."""
        return self._monitored

    def learn(self, chat_id: int, group: str) -> None:
        """Record that ``chat_id`` is the monitored group ``group``."""
        self._monitored[chat_id] = group

    def add(self, m: Mention) -> MessageVote:
        """Decide ``m``'s vote and remember it for the messages after it."""
        if m.chat_id is not None:
            self._monitored.setdefault(m.chat_id, m.group)
        self._prune(m.ts)
        seen = self._seen.setdefault(m.token, deque())
        vote, value = self._decide(m, seen)
        seen.append(_Seen(m.ts, m.group, m.sha1, m.simhash, m.sender_id, vote.voter, value))
        self._order.append((m.ts, m.token))
        key = (m.token, m.group)
        best = self._best.get(key)
        if best is None or _RANK[vote.kind] < _RANK[best[0].kind]:
            self._best[key] = (vote, m.ts)
        else:
            self._best[key] = (best[0], max(best[1], m.ts))
        return MessageVote(m, vote, value)

    def group_vote(self, token: str, group: str) -> AtOnceVote:
        """The group's best vote for ``token`` so far (its own call beats a repeat)."""
        best = self._best.get((token, group))
        return own_vote(group) if best is None else best[0]

    def _decide(self, m: Mention, seen: Iterable[_Seen]) -> tuple[AtOnceVote, float]:
        channel: str | None = None
        fwd = m.forward
        if fwd is not None and fwd.origin_peer != m.chat_id:
            origin = self._monitored.get(fwd.origin_peer) if fwd.origin_peer is not None else None
            if origin is not None and origin != m.group:
                return AtOnceVote(FORWARD, origin, origin), 0.0
            if origin is None and fwd.origin_peer is not None:
                channel = f"channel:{fwd.origin_peer}"
            elif origin is None and fwd.origin_name:
                channel = f"hidden:{fwd.origin_name}"
        # One pass over the token's earlier messages of other groups that counted (a group
        # repeating its own call after a copy-cat copied it is not a copy of the copy). The
        # first match of each rule wins; the rules rank channel, then text, then sender.
        text: _Seen | None = None
        sender: _Seen | None = None
        for s in seen:
            if not s.value > 0 or s.ts > m.ts or s.group == m.group:
                continue
            if channel is not None and s.voter == channel:
                return AtOnceVote(CHANNEL, channel, s.group), 0.0
            if text is None and m.ts - s.ts <= TEXT_WINDOW_SECONDS and _same_text(m, s):
                text = s
                if channel is None:
                    break  # nothing later in the pass could outrank it
            elif sender is None and m.sender_id is not None and s.sender_id == m.sender_id:
                sender = s
        if text is not None:
            return AtOnceVote(SAME_TEXT, m.group, text.group), 0.0
        if sender is not None:
            return AtOnceVote(SAME_SENDER, m.group, sender.group), 0.0
        if channel is not None:
            return AtOnceVote(CHANNEL, channel), 1.0
        return own_vote(m.group), 1.0

    def _prune(self, ts: float) -> None:
        # Amortised O(1) per message: only what fell out of the 24 h is visited.
        if ts <= self._newest:
            return
        self._newest = ts
        cutoff = ts - TEXT_WINDOW_SECONDS
        order = self._order
        while order and order[0][0] < cutoff:
            _, token = order.popleft()
            seen = self._seen.get(token)
            while seen and seen[0].ts < cutoff:
                seen.popleft()
            if seen is not None and not seen:
                del self._seen[token]
        if len(self._best) >= self._best_sweep_at:
            self._best = {k: v for k, v in self._best.items() if v[1] >= cutoff}
            self._best_sweep_at = max(_SWEEP_MIN, 2 * len(self._best))

    @property
    def remembered(self) -> int:
        """Messages held (the last 24 h)."""
        return sum(len(s) for s in self._seen.values())


def _same_text(m: Mention, s: _Seen) -> bool:
    if m.sha1 is not None and m.sha1 == s.sha1:
        return True
    return (
        m.simhash is not None
        and s.simhash is not None
        and hamming(m.simhash, s.simhash) <= SIMHASH_MAX_DISTANCE
    )


def message_votes(
    mentions: Iterable[Mention], monitored: Mapping[int, str] | None = None
) -> list[MessageVote]:
    """Every message's at-once vote, the messages taken in time order (ties: as given)."""
    book = VoteBook(monitored)
    ordered = sorted(mentions, key=lambda m: m.ts)
    for m in ordered:
        if m.chat_id is not None:
            book.learn(m.chat_id, m.group)
    return [book.add(m) for m in ordered]


def is_forward_of_monitored(m: Mention, monitored: Mapping[int, str]) -> bool:
    """``m`` forwards another monitored group's message."""
    fwd = m.forward
    if fwd is None or fwd.origin_peer is None or fwd.origin_peer == m.chat_id:
        return False
    origin = monitored.get(fwd.origin_peer)
    return origin is not None and origin != m.group


# -- from history ------------------------------------------------------------------------------


@attrs.frozen
class CopyRules:
    """The constants of the statistical copy test (outcomes.md section 6).

    Attributes:
        lookback_seconds: the history considered (30 days).
        follow_seconds: B follows A when 0 < Δ ≤ this (10 min).
        min_follows: fewest raw follows L for a copy (5).
        min_lift: least lift of the weighted follows over the null model (3).
        max_median_lag_seconds: the largest median lag of a copy (5 min).
        min_direction: B must follow A at least this many times as often as A follows B (2).
        shuffles: shifted timelines of the null model (20).
        min_shift_seconds: smallest shift of a null timeline (1 h).
        min_mirror_bound: a pair is "strong both ways" (a cluster) when each direction passes
            every test but the direction test and its share's Wilson lower bound is at least
            this (docs/consensus.md: chance co-calls of independent groups pass the other
            tests with bounds near 0.01).
        seed: seeds every pair's shuffles (with the pair's names).
        z: z of the Wilson bound (95 %).
    """

    lookback_seconds: float = 30 * 86400.0
    follow_seconds: float = FOLLOW_SECONDS
    min_follows: int = 5
    min_lift: float = 3.0
    max_median_lag_seconds: float = 300.0
    min_direction: float = 2.0
    shuffles: int = 20
    min_shift_seconds: float = 3600.0
    min_mirror_bound: float = 0.2
    seed: int = 14
    z: float = Z95


#: The verdicts of a candidate pair.
COPY = "copy"
LOW_LIFT = "low lift"
SLOW = "slow"
MUTUAL = "mutual"
NOT_ONE_WAY = "not one-way"


@attrs.frozen
class CopyRelation:
    """The evidence that ``follower`` copies ``leader`` (computed for pairs with L ≥ min).

    Attributes:
        leader: A.
        follower: B.
        follows: L, tokens B first called 0 < Δ ≤ 10 min after A (raw count).
        weighted_follows: the same, each token weighing 1/(groups that called it).
        reverse_follows: tokens A first called 0 < Δ ≤ 10 min after B.
        shared: tokens both called in the period, at any distance.
        follower_calls: tokens B called in the period.
        share: weighted follows / B's weighted calls.
        effective_calls: Kish's effective number of B's weighted calls (the Wilson n).
        null_follows: mean weighted follows over the shifted timelines.
        lift: ``weighted_follows / null_follows`` (``inf`` when the null never follows).
        median_lag: median Δ of the follows, seconds.
        c: the copy probability (the Wilson lower bound of ``share``), 0 unless a copy.
        verdict: :data:`COPY`, :data:`LOW_LIFT`, :data:`SLOW`, :data:`MUTUAL` (a cluster) or
            :data:`NOT_ONE_WAY`.
    """

    leader: str
    follower: str
    follows: int
    weighted_follows: float
    reverse_follows: int
    shared: int
    follower_calls: int
    share: float
    effective_calls: float
    null_follows: float
    lift: float
    median_lag: float
    c: float
    verdict: str


@attrs.frozen
class CopyModel:
    """The copy relations at ``at``.

    Attributes:
        at: the end of the period (exclusive).
        since: its start.
        relations: every pair with at least ``min_follows`` follows, copies or not.
        clusters: groups that mirror each other (each sorted; largest first).
    """

    at: float
    since: float
    relations: tuple[CopyRelation, ...] = ()
    clusters: tuple[tuple[str, ...], ...] = ()

    def copies(self) -> dict[tuple[str, str], float]:
        """(leader, follower) → c for every relation with c > 0."""
        return {(r.leader, r.follower): r.c for r in self.relations if r.c > 0}


def copy_model(
    mentions: Iterable[Mention], *, at: float, rules: CopyRules | None = None
) -> CopyModel:
    """The copy probability of every ordered pair of groups over ``rules.lookback_seconds``.

    Args:
        mentions: mentions (first or not; forwards of monitored groups are left out: the
            at-once rule already gives them 0 and credits the origin).
        at: the end of the period (exclusive); the period starts ``lookback_seconds`` before.
        rules: the constants (default :class:`CopyRules`).
    """
    rules = rules or CopyRules()
    since = at - rules.lookback_seconds
    inside = [m for m in mentions if since <= m.ts < at]
    monitored = {m.chat_id: m.group for m in inside if m.chat_id is not None}
    calls = first_of_each(m for m in inside if not is_forward_of_monitored(m, monitored))

    by_token: dict[str, list[tuple[float, str]]] = {}
    for m in calls:
        by_token.setdefault(m.token, []).append((m.ts, m.group))
    rarity = {token: 1.0 / len(entries) for token, entries in by_token.items()}
    times: dict[str, dict[str, float]] = {}
    n_calls: dict[str, int] = {}
    w_calls: dict[str, float] = {}
    w_squares: dict[str, float] = {}
    for token, entries in by_token.items():
        r = rarity[token]
        for ts, group in entries:
            times.setdefault(group, {})[token] = ts
            n_calls[group] = n_calls.get(group, 0) + 1
            w_calls[group] = w_calls.get(group, 0.0) + r
            w_squares[group] = w_squares.get(group, 0.0) + r * r

    follows: dict[tuple[str, str], list[float]] = {}  # lags
    weighted: dict[tuple[str, str], float] = {}
    for token, entries in by_token.items():
        entries.sort()
        r = rarity[token]
        for j, (tb, b) in enumerate(entries):
            for i in range(j - 1, -1, -1):
                ta, a = entries[i]
                lag = tb - ta
                if lag > rules.follow_seconds:
                    break
                if lag <= 0:
                    continue
                follows.setdefault((a, b), []).append(lag)
                weighted[(a, b)] = weighted.get((a, b), 0.0) + r

    period = at - since
    # Pairs with at least min_follows follows; the rest have c = 0 whatever else holds.
    candidates: dict[tuple[str, str], _Candidate] = {}
    for pair, lags in follows.items():
        if len(lags) < rules.min_follows:
            continue
        a, b = pair
        null = _null_follows(times[a], times[b], rarity, since, period, pair, rules)
        lift = math.inf if null == 0 else weighted[pair] / null
        median = statistics.median(lags)
        share = weighted[pair] / w_calls[b]
        n_eff = w_calls[b] ** 2 / w_squares[b]
        candidates[pair] = _Candidate(
            share=share,
            n_eff=n_eff,
            null=null,
            lift=lift,
            median=median,
            core=lift >= rules.min_lift and median <= rules.max_median_lag_seconds,
            bound=wilson_lower(share * n_eff, n_eff, z=rules.z),
        )

    relations: list[CopyRelation] = []
    edges: list[tuple[str, str]] = []
    for pair, cand in sorted(candidates.items()):
        a, b = pair
        share, n_eff, null, lift, median = cand.share, cand.n_eff, cand.null, cand.lift, cand.median
        lags = follows[pair]
        reverse = len(follows.get((b, a), ()))
        reverse_cand = candidates.get((b, a))
        one_way = len(lags) >= rules.min_direction * reverse
        # Mirrors: neither direction is a copy (then the other one would be), both are strong.
        mirror = (
            reverse_cand is not None
            and reverse_cand.core
            and reverse < rules.min_direction * len(lags)
            and min(cand.bound, reverse_cand.bound) >= rules.min_mirror_bound
        )
        c = 0.0
        if lift < rules.min_lift:
            verdict = LOW_LIFT
        elif median > rules.max_median_lag_seconds:
            verdict = SLOW
        elif one_way:
            verdict = COPY
            c = cand.bound
        elif mirror:
            verdict = MUTUAL
            if a < b:
                edges.append((a, b))
        else:
            verdict = NOT_ONE_WAY
        relations.append(
            CopyRelation(
                leader=a,
                follower=b,
                follows=len(lags),
                weighted_follows=weighted[pair],
                reverse_follows=reverse,
                shared=len(times[a].keys() & times[b].keys()),
                follower_calls=n_calls[b],
                share=share,
                effective_calls=n_eff,
                null_follows=null,
                lift=lift,
                median_lag=median,
                c=c,
                verdict=verdict,
            )
        )
    return CopyModel(at, since, tuple(relations), _components(edges))


@attrs.frozen
class _Candidate:
    share: float
    n_eff: float
    null: float
    lift: float
    median: float
    core: bool
    bound: float


def _null_follows(
    leader: Mapping[str, float],
    follower: Mapping[str, float],
    rarity: Mapping[str, float],
    since: float,
    period: float,
    pair: tuple[str, str],
    rules: CopyRules,
) -> float:
    """Mean weighted follows of ``follower`` after ``leader``'s timeline shifted circularly."""
    if period <= 2 * rules.min_shift_seconds:
        return math.inf  # too short a period to shift by an hour: no evidence of copying
    # A shared token follows in a shifted timeline when the leader's call, moved by `shift`
    # around the period, lands in [the follower's call - follow_seconds, the follower's call)
    # (not before the period's start). The shifts that do that are one arc of the circle per
    # token; with the arcs sorted by start, each shift finds its tokens by bisection instead of
    # visiting every shared token.
    follow = rules.follow_seconds
    arcs: list[tuple[float, float]] = []  # (start, rarity) of arcs follow_seconds long
    short: list[tuple[float, float, float]] = []  # (start, length, rarity): cut by the start
    for token in leader.keys() & follower.keys():
        offset, due = leader[token] - since, follower[token] - since
        if due >= follow:
            arcs.append(((due - follow - offset) % period, rarity[token]))
        else:
            short.append((-offset % period, due, rarity[token]))
    arcs.sort()
    starts = [a for a, _ in arcs]
    # One generator per pair, seeded by the pair's names: the answer does not depend on the
    # order pairs are visited in, nor on which other groups exist.
    rng = random.Random(f"{rules.seed}|{pair[0]}|{pair[1]}")
    hits: list[float] = []
    for _ in range(rules.shuffles):
        shift = rng.uniform(rules.min_shift_seconds, period - rules.min_shift_seconds)
        # Arcs holding `shift` start in (shift - follow, shift], around the circle.
        top = bisect.bisect_right(starts, shift)
        if shift - follow >= 0:
            hits.extend(r for _, r in arcs[bisect.bisect_right(starts, shift - follow) : top])
        else:
            hits.extend(r for _, r in arcs[:top])
            hits.extend(r for _, r in arcs[bisect.bisect_right(starts, shift - follow + period) :])
        hits.extend(r for start, length, r in short if (shift - start) % period < length)
    # fsum: the exactly rounded sum, whatever order the tokens came in.
    return math.fsum(hits) / rules.shuffles


def _components(edges: Iterable[tuple[str, str]]) -> tuple[tuple[str, ...], ...]:
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[str, list[str]] = {}
    for x in parent:
        groups.setdefault(find(x), []).append(x)
    return tuple(sorted((tuple(sorted(g)) for g in groups.values()), key=lambda g: (-len(g), g)))
