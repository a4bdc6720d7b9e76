"""A synthetic month of calls for the independence and reputation tests (issue 14).

- ``@A`` calls 150 tokens of its own over 30 days.
- ``@B`` repeats 80 % of ``@A``'s calls about a minute later (40–80 s), nothing else.
- ``@C`` calls 150 tokens independently; a tenth of them are tokens ``@A`` also called, at
  unrelated times (hours away).
- ``@D`` forwards 30 % of ``@A``'s posts, 1–10 min later.

Labels: ``@A`` hits often, ``@B`` rarely (it buys late), ``@C`` and ``@D`` have none.
"""

from __future__ import annotations

import random

import attrs

from callsbot.models import ForwardHeader
from callsbot.reputation.inputs import Label, Mention

DAY = 86400.0
AT = 1_700_000_000.0 + 30 * DAY
START = AT - 30 * DAY
CHATS = {"@A": -1001, "@B": -1002, "@C": -1003, "@D": -1004}
SENDERS = {"@A": 11, "@B": 22, "@C": 33, "@D": 44}


@attrs.frozen
class History:
    mentions: tuple[Mention, ...]
    labels: tuple[Label, ...]


def _mention(ts: float, group: str, token: str, message_id: int, **kw: object) -> Mention:
    return Mention(ts, group, token, CHATS[group], message_id, SENDERS[group], **kw)  # type: ignore[arg-type]


def synthetic_history(seed: int = 7) -> History:
    rng = random.Random(seed)
    mentions: list[Mention] = []
    labels: list[Label] = []
    a_calls: list[tuple[float, str]] = []
    for i in range(150):
        ts = START + rng.uniform(0, 30 * DAY - 3600)
        token = f"A{i:04d}"
        a_calls.append((ts, token))
        mentions.append(_mention(ts, "@A", token, i))
        labels.append(Label("@A", token, ts, rng.random() < 0.5, ts + DAY))
        if rng.random() < 0.8:
            tb = ts + rng.uniform(40, 80)
            mentions.append(_mention(tb, "@B", token, i))
            labels.append(Label("@B", token, tb, rng.random() < 0.1, tb + DAY))
        if rng.random() < 0.3:
            header = ForwardHeader(CHATS["@A"], None, i, int(ts))
            mentions.append(
                Mention(ts + rng.uniform(60, 600), "@D", f"{token}", CHATS["@D"], i, None, header)
            )
    for i in range(150):
        if rng.random() < 0.1:
            ta, token = rng.choice(a_calls)
            ts = ta + rng.choice((-1, 1)) * rng.uniform(2 * 3600, 12 * 3600)
        else:
            ts, token = START + rng.uniform(0, 30 * DAY - 3600), f"C{i:04d}"
        mentions.append(_mention(min(ts, AT - 1), "@C", token, 1000 + i))
    return History(tuple(sorted(mentions, key=lambda m: m.ts)), tuple(labels))
