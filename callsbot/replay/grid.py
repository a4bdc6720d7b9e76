"""``--grid KEY=V1,V2``: the configurations a backtest compares.

A key is a short name (the table below), a ``section.key`` of config.toml, or the bare name of
a ``[scoring]`` setting. Every combination of the values is one configuration: the deployed
settings with those keys replaced through :func:`callsbot.config.with_overrides`, so a value is
checked by the same rules as config.toml (types, ranges, the tiers' solo tier).

=============== ============================================ =================================
short name       setting(s)                                   value
=============== ============================================ =================================
``window``       ``store.window_seconds``                     seconds
``tiers``        ``consensus.tiers``                          ``3:2/2:1/1:0/0:-1`` (groups:points)
``mode``         ``consensus.mode``                           ``count`` or ``weighted``
``half-life``    ``consensus.half_life_seconds``              seconds
``thresholds``   ``consensus.level2_threshold``, ``level3``   ``2:3`` (θ2:θ3)
``threshold``    ``scoring.alert_threshold``                  points (also ``alert-threshold``)
``cooldown``     ``scoring.cooldown_seconds``                 seconds
=============== ============================================ =================================

``mode``, ``half-life`` and ``thresholds`` need weighted consensus; a callsbot without it says
so and exits 2.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import attrs

from callsbot.config import ScoringSettings, Settings, with_overrides
from callsbot.errors import ConfigError

#: Short names → the settings they set.
ALIASES: dict[str, tuple[str, ...]] = {
    "window": ("store.window_seconds",),
    "tiers": ("consensus.tiers",),
    "mode": ("consensus.mode",),
    "half-life": ("consensus.half_life_seconds",),
    "thresholds": ("consensus.level2_threshold", "consensus.level3_threshold"),
    "threshold": ("scoring.alert_threshold",),
    "alert-threshold": ("scoring.alert_threshold",),
    "cooldown": ("scoring.cooldown_seconds",),
}


@attrs.frozen
class Configuration:
    """One configuration of a backtest.

    Attributes:
        label: how the table names it (``deployed``, or its grid values).
        values: the grid values as given, ``(key, value)``.
        settings: the full settings.
        deployed: the settings as loaded, with no grid value applied.
    """

    label: str
    values: tuple[tuple[str, str], ...]
    settings: Settings
    deployed: bool = False


def _normal(key: str) -> str:
    return key.strip().lower().replace("_", "-")


def targets(key: str) -> tuple[str, ...]:
    """The ``section.key`` settings a grid key sets.

    Raises:
        ConfigError: an unknown key.
    """
    name = _normal(key)
    if name in ALIASES:
        return ALIASES[name]
    if "." in key:
        return (key.strip(),)
    scoring = {f.name for f in attrs.fields(ScoringSettings)}
    if key.strip() in scoring:
        return (f"scoring.{key.strip()}",)
    known = ", ".join([*ALIASES, "section.key", "any [scoring] key"])
    raise ConfigError(key, f"unknown grid key (known: {known})")


def _tiers(value: str) -> list[dict[str, int]]:
    problem = f"{value!r}: expected groups:points/..., e.g. 3:2/2:1/0:-1"
    tiers = []
    for part in value.split("/"):
        groups, sep, points = part.partition(":")
        if not sep:
            raise ConfigError("tiers", problem)
        try:
            tiers.append({"min_groups": int(groups), "points": int(points)})
        except ValueError:
            raise ConfigError("tiers", problem) from None
    return tiers


def overrides_for(key: str, value: str) -> dict[str, Any]:
    """The ``section.key → value`` overrides one grid value stands for."""
    names = targets(key)
    if _normal(key) == "tiers":
        return {names[0]: _tiers(value)}
    if _normal(key) == "thresholds":
        low, sep, high = value.partition(":")
        if not sep:
            raise ConfigError(key, f"{value!r}: expected θ2:θ3, e.g. 2:3")
        return {names[0]: low, names[1]: high}
    return {names[0]: value}


def apply(settings: Settings, values: Sequence[tuple[str, str]]) -> Settings:
    """``settings`` with the grid values applied.

    Raises:
        ConfigError: an unknown key, or a value the config rules refuse (naming the setting;
            a setting this callsbot does not have, such as ``consensus.mode`` without weighted
            consensus, is "unknown key").
    """
    merged: dict[str, Any] = {}
    for key, value in values:
        merged |= overrides_for(key, value)
    return with_overrides(settings, merged)


def parse_grid(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``["window=1800,3600", "threshold=7,8"]`` → ``[("window", [...]), ...]``.

    Raises:
        ConfigError: an item without ``=`` or values, or a key given twice.
    """
    out: list[tuple[str, list[str]]] = []
    for item in items:
        key, sep, values = item.partition("=")
        parts = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not parts:
            raise ConfigError(item, "expected KEY=V1,V2,...")
        if any(_normal(k) == _normal(key) for k, _ in out):
            raise ConfigError(key, "given twice")
        out.append((key.strip(), parts))
    return out


def configurations(settings: Settings, grid: Sequence[str]) -> list[Configuration]:
    """The deployed configuration first, then every combination of the grid's values.

    A combination equal to the deployed settings is not repeated.

    Raises:
        ConfigError: see :func:`parse_grid` and :func:`apply`.
    """
    parsed = parse_grid(grid)
    out = [Configuration("deployed", (), settings, deployed=True)]
    seen = {settings}
    for combo in itertools.product(*[[(k, v) for v in vs] for k, vs in parsed]):
        applied = apply(settings, combo)
        if applied in seen:
            continue
        seen.add(applied)
        out.append(Configuration(" ".join(f"{k}={v}" for k, v in combo), tuple(combo), applied))
    return out
