"""What the periodic job publishes for every scorer: weights, copy probabilities, clusters.

:func:`build_reputation` computes it from first mentions and labels at a moment;
:class:`Reputation` is the value the store keeps (:meth:`Reputation.to_json` is its wire form)
and the weighted consensus reads. Until a job has published one, :data:`NEUTRAL` stands in:
every weight 1, no copies, no clusters.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import attrs

from callsbot.config import ConsensusSettings
from callsbot.reputation.independence import CopyModel, CopyRules, copy_model
from callsbot.reputation.inputs import Label, Mention
from callsbot.reputation.weights import DAY, Weights, compute_weights

#: Version of the JSON form; a reader refuses any other.
FORMAT = 1


@attrs.frozen
class Reputation:
    """Weights and copy relations as of ``computed_at``.

    Attributes:
        computed_at: unix seconds of the moment they describe (labels resolved after it and
            mentions dated after it were not used).
        weights: group → weight, for groups with labels (every other group weighs 1).
        copies: (leader, follower) → c, for pairs with c > 0.
        clusters: groups that mirror each other; each counts at most as its strongest member.
    """

    computed_at: float
    weights: dict[str, float] = attrs.field(factory=dict)
    copies: dict[tuple[str, str], float] = attrs.field(factory=dict)
    clusters: tuple[tuple[str, ...], ...] = ()
    #: follower → {leader: c}: :attr:`copies` indexed for the scorer's hot path (derived).
    leaders: dict[str, dict[str, float]] = attrs.field(init=False, eq=False, repr=False)
    #: group → index of its cluster in :attr:`clusters` (derived).
    cluster_index: dict[str, int] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        leaders: dict[str, dict[str, float]] = {}
        for (leader, follower), c in self.copies.items():
            leaders.setdefault(follower, {})[leader] = c
        object.__setattr__(self, "leaders", leaders)
        index = {g: i for i, members in enumerate(self.clusters) for g in members}
        object.__setattr__(self, "cluster_index", index)

    def weight(self, group: str) -> float:
        """The group's weight; 1 when it has none."""
        return self.weights.get(group, 1.0)

    def copy(self, leader: str, follower: str) -> float:
        """c(leader → follower); 0 when not a copy."""
        return self.copies.get((leader, follower), 0.0)

    def to_json(self) -> str:
        """The wire form (a JSON object, ``format`` 1); :meth:`from_json` reads it."""
        payload: dict[str, Any] = {
            "format": FORMAT,
            "computed_at": self.computed_at,
            "weights": dict(sorted(self.weights.items())),
            "copies": [[a, b, c] for (a, b), c in sorted(self.copies.items())],
            "clusters": [list(c) for c in self.clusters],
        }
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Reputation:
        """The value :meth:`to_json` wrote.

        Raises:
            ValueError: not that JSON, or another format version.
        """
        try:
            raw = json.loads(text)
            if raw.get("format") != FORMAT:
                raise ValueError(f"unknown reputation format {raw.get('format')!r}")
            weights = {str(g): _finite(w) for g, w in raw["weights"].items()}
            copies = {(str(a), str(b)): _finite(c) for a, b, c in raw["copies"]}
            clusters = tuple(tuple(str(g) for g in c) for c in raw["clusters"])
            return cls(_finite(raw["computed_at"]), weights, copies, clusters)
        except (TypeError, KeyError, AttributeError, ValueError) as exc:
            raise ValueError(f"not a published reputation: {exc}") from None


def _finite(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    return float(value)


#: What the scorer uses before any job published: every weight 1, no copies.
NEUTRAL = Reputation(0.0)


@attrs.frozen
class Computed:
    """Everything one job run computed (the published part and its evidence).

    Attributes:
        reputation: what is published.
        weights: every labelled group's weight with its counts.
        copies: every candidate pair with its evidence.
    """

    reputation: Reputation
    weights: Weights
    copies: CopyModel


def label_lookback(settings: ConsensusSettings) -> float:
    """How far back labels are read (s): six forgetting half-lives (a weight below 1/64)."""
    return 6 * settings.forgetting_days * DAY


def build_reputation(
    mentions: Iterable[Mention],
    labels: Iterable[Label],
    *,
    at: float,
    settings: ConsensusSettings,
    rules: CopyRules | None = None,
) -> Computed:
    """Weights (section 5) and copy relations (section 6) as of ``at``.

    Only mentions dated before ``at`` and labels resolved at or before ``at`` are used, whatever
    the sources handed over.
    """
    weights = compute_weights(labels, at=at, settings=settings)
    model = copy_model((m for m in mentions if m.ts < at), at=at, rules=rules)
    reputation = Reputation(
        computed_at=at,
        weights={g: e.weight for g, e in weights.groups.items()},
        copies=model.copies(),
        clusters=model.clusters,
    )
    return Computed(reputation, weights, model)
