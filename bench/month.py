"""A synthetic month of call-group history for the reputation benchmarks (seeded).

200 groups by default: 20 leaders, 25 copy-cats (each repeats 80 % of one leader's calls 30–120 s
later), 10 forwarders (each forwards 30 % of one leader's posts), and independent groups. Each
token is called by 1 + a geometric number of independent groups or leaders around its launch;
copy-cats and forwarders follow their leader. A quarter of the tokens reach 2×; every first
mention gets a label, resolved within a day.
"""

from __future__ import annotations

import random

import attrs

from callsbot.models import ForwardHeader
from callsbot.reputation.inputs import Label, Mention

DAY = 86400.0


@attrs.frozen
class Month:
    """The generated history and which pairs copy (for a recall figure)."""

    mentions: tuple[Mention, ...]
    labels: tuple[Label, ...]
    copies: frozenset[tuple[str, str]]
    at: float


def month(
    seed: int, *, groups: int = 200, mentions: int = 100_000, days: int = 30, at: float = 1.8e9
) -> Month:
    """About ``mentions`` mentions of ``groups`` groups over ``days`` days ending at ``at``."""
    rng = random.Random(seed)
    names = [f"@group_{i:03d}" for i in range(groups)]
    chat = {g: -1_000_000_000_000 - i for i, g in enumerate(names)}
    leaders, copycats, forwarders = names[:20], names[20:45], names[45:55]
    independent = names[55:] + leaders
    follows = {c: rng.choice(leaders) for c in copycats}
    forwards = {f: rng.choice(leaders) for f in forwarders}
    copycats_of: dict[str, list[str]] = {}
    for c, leader in follows.items():
        copycats_of.setdefault(leader, []).append(c)
    forwarders_of: dict[str, list[str]] = {}
    for f, leader in forwards.items():
        forwarders_of.setdefault(leader, []).append(f)

    start = at - days * DAY
    out: list[Mention] = []
    labels: list[Label] = []
    n = 0
    while len(out) < mentions:
        n += 1
        token = f"T{n:07d}"
        launch = rng.uniform(start, at - 3 * 3600)
        hit = rng.random() < 0.25
        k = 1
        while k < 40 and rng.random() < 0.65:
            k += 1
        calls: list[tuple[float, str, ForwardHeader | None]] = []
        for group in rng.sample(independent, k):
            ts = launch + rng.expovariate(1 / 1200)
            calls.append((ts, group, None))
            for c in copycats_of.get(group, ()):
                if rng.random() < 0.8:
                    calls.append((ts + rng.uniform(30, 120), c, None))
            for f in forwarders_of.get(group, ()):
                if rng.random() < 0.3:
                    header = ForwardHeader(chat[group], None, n, int(ts))
                    calls.append((ts + rng.uniform(60, 600), f, header))
        for ts, group, header in calls:
            out.append(Mention(ts, group, token, chat[group], n, hash(group) & 0xFFFF, header))
            good = hit and ts - launch < 3600 and rng.random() < 0.9
            resolved = ts + (rng.uniform(600, DAY) if good else DAY)
            labels.append(Label(group, token, ts, good, resolved))
    copies = frozenset((leader, c) for c, leader in follows.items())
    return Month(tuple(out), tuple(labels), copies, at)
