"""Settings: ``config.toml`` + ``CALLSBOT_*`` environment + optional ``.env``, frozen.

Precedence, highest first: the process environment, ``.env``, ``config.toml``, the defaults
below. Every key of section ``[sect]`` named ``key`` can be set from the environment as
``CALLSBOT_SECT_KEY``. Secrets (``secret=True`` fields) may come only from the environment or
``.env``; a secret written into ``config.toml`` is a configuration error.

Errors name the key (``store.window_seconds: expected an integer, got 'x'``) and the CLI turns
them into exit status 2. A value that could be a secret (a secret field, any URL, which may hold
a password) is never quoted in an error: the key and the kind of problem are.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import attrs
from dotenv import dotenv_values

from callsbot.errors import ConfigError

ENV_PREFIX = "CALLSBOT_"
#: Environment variables that steer loading itself rather than naming a setting.
META_ENV = frozenset({"CALLSBOT_CONFIG", "CALLSBOT_ENV_FILE"})
STORE_SCHEMES = ("memory", "redis", "rediss")
HISTORY_SCHEMES = ("sqlite", "postgresql", "postgres")
#: A relative SQLite path is taken relative to the config file's directory (see load_settings).
DEFAULT_HISTORY_URL = "sqlite:///callsbot-history.sqlite3"


Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _check(predicate: Callable[[Any], bool], problem: str) -> Validator:
    def validate(_inst: Any, _attr: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and not predicate(value):
            raise ValueError(problem)

    return validate


def _show(limit: float) -> str:
    return str(int(limit)) if float(limit).is_integer() else str(limit)


def between(low: float, high: float, *, above: bool = False) -> Validator:
    """``low <= value <= high`` (``low < value`` when ``above``)."""

    def validate(_inst: Any, _attr: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if value < low or (above and value == low):
            raise ValueError(f"must be {'>' if above else '>='} {_show(low)}")
        if value > high:
            raise ValueError(f"must be <= {_show(high)}")

    return validate


def positive(high: float) -> Validator:
    """``0 < value <= high``: every number has a sane ceiling, so a typo cannot mean forever."""
    return between(0, high, above=True)


def non_negative(high: float) -> Validator:
    """``0 <= value <= high``."""
    return between(0, high)


MINUTE, HOUR, DAY = 60, 3600, 86400
USD_MAX = 1e12
POINTS_MAX = 100


def one_of(*choices: str) -> Validator:
    return _check(lambda v: v in choices, f"must be one of {', '.join(choices)}")


#: Query parameters a store URL may carry (redis-py reads them); the timeouts and retries are
#: ``[store]`` settings instead.
STORE_URL_PARAMS = frozenset(
    {
        "db",
        "client_name",
        "protocol",
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_cert_reqs",
        "ssl_check_hostname",
        "ssl_min_version",
    }
)
_ENCODE_HINT = "percent-encode the password (@ → %40, : → %3A, / → %2F, ? → %3F, # → %23)"


def store_url_problem(value: str) -> str | None:
    """What is wrong with a store URL, or ``None``; the reason never quotes the URL.

    Checks the scheme, that the password holds no raw ``@ : / ? #`` (which would move the
    host, port or database elsewhere), the port (1..65535), the database number, the query
    parameters and that an ``ssl_ca_certs`` file exists.
    """
    known = ", ".join(f"{s}://" for s in STORE_SCHEMES)
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in STORE_SCHEMES:
        shown = f" {scheme + '://'!r}" if sep and scheme.isalpha() and len(scheme) <= 10 else ""
        return f"unknown store scheme{shown}; known: {known}"
    if scheme == "memory":
        return None
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    userinfo, at, _hostport = netloc.rpartition("@")
    if at and ("@" in userinfo or userinfo.count(":") > 1):
        return f"the password holds a raw '@' or ':'; {_ENCODE_HINT}"
    if "@" in tail:
        return f"the password holds a raw '/', '?' or '#'; {_ENCODE_HINT}"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return "the port is not a number in 1..65535"
    if port == 0:
        return "the port is not a number in 1..65535"
    path = parts.path.strip("/")
    if path and not path.isdigit():
        return "the database (the path after the port) must be a number, e.g. /0"
    for name, param in parse_qsl(parts.query, keep_blank_values=True):
        if name not in STORE_URL_PARAMS:
            return (
                f"unknown URL parameter {name[:40]!r} "
                f"(known: {', '.join(sorted(STORE_URL_PARAMS))})"
            )
        if name == "ssl_ca_certs" and not os.path.isfile(param):
            return "ssl_ca_certs names no readable file (give the CA bundle's absolute path)"
    return None


def _store_url(_inst: Any, _attr: attrs.Attribute[Any], value: str) -> None:
    problem = store_url_problem(value)
    if problem is not None:
        raise ValueError(problem)


def header_safe(value: str) -> str | None:
    """Why ``value`` cannot be sent as an HTTP header value, or ``None`` when it can.

    Only visible ASCII passes: API keys have no spaces, and a control character (a pasted
    newline, a carriage return from a Windows ``.env``) would otherwise fail every request. The
    reason never quotes the value.
    """
    for ch in value:
        if not "!" <= ch <= "~":
            return f"holds the character U+{ord(ch):04X}; an HTTP header takes visible ASCII only"
    return None


def _header_value(_inst: Any, _attr: attrs.Attribute[Any], value: str | None) -> None:
    problem = header_safe(value) if value is not None else None
    if problem is not None:
        raise ValueError(problem)


def _trim_secret(value: Any) -> Any:
    # Secrets are pasted: surrounding whitespace (and a .env's stray "\r") is never meant.
    if isinstance(value, str):
        return value.strip() or None
    return value


def setting(
    default: Any = attrs.NOTHING,
    *,
    validator: Validator | None = None,
    secret: bool = False,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """Declare one setting (an attrs field with our metadata).

    A secret is not shown in ``repr``, is trimmed of surrounding whitespace (blank means
    unset), and may come only from the environment or ``.env``.
    """
    if factory is not None:
        default = attrs.Factory(factory)
    return attrs.field(
        default=default,
        validator=validator,
        converter=_trim_secret if secret else None,
        repr=not secret,
        metadata={"secret": secret},
    )


# --------------------------------------------------------------------------------------------
# Sections. Each class is one ``[section]`` of config.toml; config.toml documents every key.


@attrs.frozen
class StoreSettings:
    url: str = setting("memory://", validator=_store_url)
    window_seconds: int = setting(3600, validator=positive(7 * DAY))
    connect_timeout: float = setting(2.0, validator=positive(5 * MINUTE))
    socket_timeout: float = setting(2.0, validator=positive(5 * MINUTE))
    retries: int = setting(3, validator=non_negative(100))
    health_check_interval: int = setting(15, validator=non_negative(HOUR))
    heartbeat_interval: float = setting(5.0, validator=positive(HOUR))
    probe_interval_seconds: float = setting(2.0, validator=positive(HOUR))
    probe_timeout_seconds: float = setting(1.0, validator=positive(MINUTE))
    max_clock_skew_seconds: float = setting(300.0, validator=positive(DAY))
    allow_eviction: bool = setting(False)


@attrs.frozen
class Tier:
    """``min_groups`` or more distinct groups in the window give ``points``."""

    min_groups: int = setting(validator=non_negative(10_000))
    points: int = setting(validator=between(-POINTS_MAX, POINTS_MAX))


def _default_tiers() -> tuple[Tier, ...]:
    return (Tier(3, 2), Tier(2, 1), Tier(1, 0), Tier(0, -1))


def _tiers_cover_zero(_inst: Any, _attr: attrs.Attribute[Any], value: tuple[Tier, ...]) -> None:
    if not any(t.min_groups == 0 for t in value):
        raise ValueError("needs a tier with min_groups = 0 (the solo-signal tier)")


#: ``[consensus] mode``: ``count`` is the deployed rule, ``weighted`` docs/consensus.md's sum.
CONSENSUS_MODES = ("count", "weighted")


@attrs.frozen
class ConsensusSettings:
    """``[consensus]``: the tiers, the staleness limit, and the weighted mode's parameters.

    ``mode = "count"`` is the deployed rule (tiers on the number of distinct groups). In
    ``"weighted"`` mode S = Σ w·v·2^(−age/half-life) over the groups in the window is mapped
    onto levels by ``level2_threshold`` / ``level3_threshold`` and the levels onto ``tiers``
    (docs/consensus.md).
    """

    tiers: tuple[Tier, ...] = setting(factory=_default_tiers, validator=_tiers_cover_zero)
    heartbeat_stale_seconds: float = setting(30.0, validator=positive(DAY))
    mode: str = setting("count", validator=one_of(*CONSENSUS_MODES))
    half_life_seconds: float = setting(1800.0, validator=positive(30 * DAY))
    level2_threshold: float = setting(2.0, validator=positive(POINTS_MAX))
    level3_threshold: float = setting(3.0, validator=positive(POINTS_MAX))
    prior_strength: float = setting(20.0, validator=non_negative(10_000))
    forgetting_days: float = setting(30.0, validator=positive(3650))
    weight_min: float = setting(0.5, validator=positive(POINTS_MAX))
    weight_max: float = setting(2.0, validator=positive(POINTS_MAX))
    job_interval_seconds: float = setting(600.0, validator=positive(DAY))

    @property
    def weighted(self) -> bool:
        """``mode == "weighted"``."""
        return self.mode == "weighted"

    def problems(self) -> list[tuple[str, str]]:
        """Rules between two keys, as ``(key, problem)``; the loader raises on the first.

        Checked on the whole section (file and environment merged), not per key.
        """
        out: list[tuple[str, str]] = []
        if self.level3_threshold < self.level2_threshold:
            out.append(
                ("level3_threshold", f"must be >= level2_threshold ({self.level2_threshold:g})")
            )
        if self.weight_max < self.weight_min:
            out.append(("weight_max", f"must be >= weight_min ({self.weight_min:g})"))
        return out


@attrs.frozen
class TelegramSettings:
    api_id: int | None = setting(None, secret=True, validator=positive(2**31 - 1))
    api_hash: str | None = setting(None, secret=True, validator=_header_value)
    session: str = setting("callsbot.session")
    groups: tuple[str, ...] = setting(factory=tuple)
    skip_forwards: bool = setting(False)
    skip_own: bool = setting(True)
    resolve_retry_seconds: float = setting(300.0, validator=positive(DAY))
    queue_size: int = setting(1000, validator=positive(1_000_000))
    workers: int = setting(32, validator=positive(1024))
    buffer_size: int = setting(10000, validator=positive(10_000_000))
    #: Mentions still waiting at shutdown are saved here and taken back at the next start.
    spool_path: str = setting("callsbot-spool.jsonl")
    catch_up: bool = setting(True)
    seen_ttl_seconds: int = setting(7200, validator=positive(30 * DAY))
    #: Longest FloodWait sat out inside one call; a longer one postpones that group's catch-up.
    flood_wait_max_seconds: float = setting(120.0, validator=non_negative(HOUR))
    #: A group silent this long while connected is reported (metric, /readyz); 0: never.
    stale_after_seconds: float = setting(21600.0, validator=non_negative(30 * DAY))


@attrs.frozen
class ExtractionSettings:
    max_addresses: int = setting(20, validator=positive(1000))


@attrs.frozen
class DexScreenerSettings:
    url: str = setting("https://api.dexscreener.com")
    requests_per_minute: int = setting(250, validator=positive(100_000))
    timeout_seconds: float = setting(10.0, validator=positive(5 * MINUTE))
    positive_ttl_seconds: float = setting(600.0, validator=non_negative(7 * DAY))
    negative_ttl_seconds: float = setting(120.0, validator=non_negative(7 * DAY))
    max_attempts: int = setting(3, validator=positive(100))
    batch_size: int = setting(30, validator=between(1, 30))
    max_concurrency: int = setting(4, validator=positive(256))
    backoff_seconds: float = setting(5.0, validator=positive(HOUR))
    max_cooldown_seconds: float = setting(60.0, validator=positive(HOUR))
    retry_wait_seconds: float = setting(0.5, validator=positive(10 * MINUTE))
    retry_deadline_seconds: float = setting(20.0, validator=positive(HOUR))


@attrs.frozen
class MarketSettings:
    min_liquidity_usd: float = setting(10_000.0, validator=non_negative(USD_MAX))
    min_volume_h24_usd: float = setting(5_000.0, validator=non_negative(USD_MAX))


def _stop_fall(_inst: Any, _attr: attrs.Attribute[Any], value: float) -> None:
    if not -1.0 < value < 0.0:
        raise ValueError(f"must be between -1 and 0 (a fall, -0.5 = -50 %), got {value!r}")


@attrs.frozen
class GeckoTerminalSettings:
    url: str = setting("https://api.geckoterminal.com/api/v2")
    network: str = setting("solana")
    requests_per_minute: int = setting(20, validator=positive(10_000))
    burst: int = setting(3, validator=positive(1000))
    timeout_seconds: float = setting(15.0, validator=positive(HOUR))
    cooldown_seconds: float = setting(15.0, validator=positive(DAY))
    max_cooldown_seconds: float = setting(120.0, validator=positive(DAY))
    max_attempts: int = setting(8, validator=positive(100))
    retry_wait_seconds: float = setting(2.0, validator=positive(HOUR))
    retry_deadline_seconds: float = setting(600.0, validator=positive(DAY))


#: The section-3 checkpoints an alert follow-up may be sent at (5 min ... 24 h), seconds.
FOLLOWUP_CHECKPOINTS = (300, 900, 3600, 14400, 86400)


def _followups(_inst: Any, _attr: attrs.Attribute[Any], value: tuple[int, ...]) -> None:
    unknown = [v for v in value if v not in FOLLOWUP_CHECKPOINTS]
    if unknown:
        known = ", ".join(map(str, FOLLOWUP_CHECKPOINTS))
        raise ValueError(f"checkpoints must be among {known} (seconds), got {unknown}")


@attrs.frozen
class OutcomesSettings:
    latency_seconds: int = setting(60, validator=non_negative(HOUR))
    win_multiple: float = setting(2.0, validator=positive(1000))
    horizon_seconds: int = setting(86400, validator=positive(30 * DAY))
    stop: float = setting(-0.5, validator=_stop_fall)
    # The outcome tracker (runs with the scorer when the history is on).
    tracker: bool = setting(True)
    # A fetch that fails is tried again after retry_seconds, doubling up to retry_max_seconds;
    # after max_fetch_errors failures it is given up (its events become unresolved unless a
    # later fetch covers its candles). Rate limits delay without counting.
    retry_seconds: float = setting(300.0, validator=positive(DAY))
    retry_max_seconds: float = setting(3600.0, validator=positive(DAY))
    max_fetch_errors: int = setting(6, validator=positive(1000))
    # At start, events of the last catch_up_seconds found in the history and not yet tracked
    # are tracked (0: none).
    catch_up_seconds: int = setting(86400, validator=non_negative(30 * DAY))
    # Alert follow-up replies, seconds after the alert ([] = none), each sent at most once,
    # and not at all when it would be more than followup_max_late_seconds late.
    followups: tuple[int, ...] = setting(factory=lambda: (3600, 86400), validator=_followups)
    followup_max_late_seconds: float = setting(7200.0, validator=positive(30 * DAY))


@attrs.frozen
class CieloSettings:
    url: str = setting("https://feed-api.cielo.finance")
    api_key: str | None = setting(None, secret=True, validator=_header_value)
    poll_seconds: float = setting(30.0, validator=positive(DAY))
    limit: int = setting(100, validator=between(1, 100))
    chains: tuple[str, ...] = setting(factory=lambda: ("solana",))
    tx_types: tuple[str, ...] = setting(factory=lambda: ("swap",))
    min_usd: float = setting(0.0, validator=non_negative(USD_MAX))
    list_id: int | None = setting(None, validator=non_negative(2**53 - 1))
    new_trades: bool | None = setting(None)
    max_pages: int = setting(3, validator=positive(1000))
    seen_ttl_seconds: int = setting(86400, validator=positive(30 * DAY))
    # A tx is leased while its buy is handled; a scorer that dies meanwhile lets it go after (s).
    claim_lease_seconds: float = setting(120.0, validator=positive(DAY))
    timeout_seconds: float = setting(15.0, validator=positive(5 * MINUTE))
    max_attempts: int = setting(3, validator=positive(100))
    # Time budget for the retries of one request (5xx, timeouts), seconds.
    retry_max_seconds: float = setting(30.0, validator=positive(HOUR))
    # Longest pause after a 429 (Retry-After is capped to this; doubling back-off without one).
    backoff_max_seconds: float = setting(300.0, validator=positive(DAY))
    # How buys arrive: "poll" (REST every poll_seconds) or "websocket" (pushed; docs/feed.md).
    mode: str = setting("poll", validator=one_of("poll", "websocket"))
    ws_url: str = setting("wss://feed-api.cielo.finance/api/v1/ws")
    # Ping interval; no pong within half of it counts as a dead connection (s).
    ws_heartbeat_seconds: float = setting(20.0, validator=positive(HOUR))
    ws_connect_timeout_seconds: float = setting(10.0, validator=positive(HOUR))
    # Reconnect back-off: jittered doubling from initial up to max (s); it starts over after a
    # connection that was subscribed, delivered an event or stayed up ws_stable_seconds.
    ws_backoff_initial_seconds: float = setting(0.5, validator=positive(HOUR))
    ws_backoff_max_seconds: float = setting(30.0, validator=positive(DAY))
    ws_backoff_jitter_seconds: float = setting(1.0, validator=non_negative(HOUR))
    ws_stable_seconds: float = setting(60.0, validator=positive(DAY))
    # Failed connections in a row (refused, handshake or protocol errors) before polling instead.
    ws_max_failures: int = setting(3, validator=positive(1000))
    # While polling instead, try the socket again this often (s).
    ws_retry_seconds: float = setting(120.0, validator=positive(DAY))


@attrs.frozen
class ScoringSettings:
    alert_threshold: float = setting(7.0, validator=between(-POINTS_MAX, POINTS_MAX))
    cooldown_seconds: int = setting(3600, validator=positive(30 * DAY))
    # An alert being sent is leased this long (renewed while the send lasts); the cooldown only
    # starts once a sink took it, so a scorer that dies mid-send is retried after the lease (s).
    alert_lease_seconds: float = setting(30.0, validator=positive(HOUR))
    watch_tick_seconds: float = setting(30.0, validator=positive(DAY))
    react_to_mentions: bool = setting(True)
    # Base-score rules (docs/scoring.md); every threshold of every rule is here.
    base_points: float = setting(2.0, validator=between(-POINTS_MAX, POINTS_MAX))
    trade_usd_medium: float = setting(1_000.0, validator=non_negative(USD_MAX))
    trade_usd_large: float = setting(5_000.0, validator=non_negative(USD_MAX))
    liquidity_low_usd: float = setting(10_000.0, validator=non_negative(USD_MAX))
    liquidity_mid_usd: float = setting(30_000.0, validator=non_negative(USD_MAX))
    liquidity_high_usd: float = setting(100_000.0, validator=non_negative(USD_MAX))
    volume_h24_mid_usd: float = setting(100_000.0, validator=non_negative(USD_MAX))
    volume_h24_high_usd: float = setting(500_000.0, validator=non_negative(USD_MAX))
    vol_liq_low: float = setting(0.2, validator=non_negative(1e6))
    vol_liq_high: float = setting(3.0, validator=non_negative(1e6))
    mcap_min_usd: float = setting(50_000.0, validator=non_negative(1e15))
    mcap_max_usd: float = setting(5_000_000.0, validator=non_negative(1e15))
    pair_age_min_minutes: float = setting(10.0, validator=non_negative(365 * DAY / MINUTE))
    pair_age_fresh_hours: float = setting(24.0, validator=non_negative(365 * DAY / HOUR))
    change_h1_hot_pct: float = setting(40.0, validator=between(-100, 1e6))
    change_h1_pump_pct: float = setting(100.0, validator=between(-100, 1e6))
    change_h1_dump_pct: float = setting(-30.0, validator=between(-100, 1e6))
    change_h24_pump_pct: float = setting(300.0, validator=between(-100, 1e6))
    change_h24_dump_pct: float = setting(-50.0, validator=between(-100, 1e6))
    wallet_label_points: float = setting(1.0, validator=between(-POINTS_MAX, POINTS_MAX))
    first_interaction_points: float = setting(0.5, validator=between(-POINTS_MAX, POINTS_MAX))
    # Buys whose market data was "unknown right now": how many are kept, and for how long (s).
    pending_max: int = setting(200, validator=positive(1_000_000))
    pending_max_age_seconds: float = setting(600.0, validator=positive(7 * DAY))
    # Most tokens on the late-consensus watch list (the oldest entry is dropped first).
    watch_max: int = setting(1000, validator=positive(1_000_000))


@attrs.frozen
class TgBotSettings:
    token: str | None = setting(None, secret=True, validator=_header_value)
    api_url: str = setting("https://api.telegram.org")
    chat_id: str | None = setting(None)
    messages_per_minute: int = setting(20, validator=positive(1000))
    timeout_seconds: float = setting(10.0, validator=positive(5 * MINUTE))
    # Attempts per message on 429/5xx/timeouts; a retry_after above the cap fails the send.
    max_attempts: int = setting(3, validator=positive(100))
    max_retry_after_seconds: float = setting(60.0, validator=positive(HOUR))


@attrs.frozen
class AlertsSettings:
    jsonl_path: str | None = setting("alerts.jsonl")
    log: bool = setting(True)


#: Shortest web token accepted: a bearer token guessed online must not be guessable.
WEB_TOKEN_MIN_CHARS = 16


def _web_token(_inst: Any, _attr: attrs.Attribute[Any], value: str | None) -> None:
    _header_value(_inst, _attr, value)
    if value is not None and len(value) < WEB_TOKEN_MIN_CHARS:
        raise ValueError(f"must be at least {WEB_TOKEN_MIN_CHARS} characters")


@attrs.frozen
class EventsSettings:
    subscriber_queue: int = setting(10_000, validator=positive(10_000_000))
    stream_maxlen: int = setting(100_000, validator=positive(100_000_000))
    stream_block_seconds: float = setting(0.5, validator=positive(MINUTE))
    publish_buffer: int = setting(100_000, validator=positive(10_000_000))


@attrs.frozen
class WebSettings:
    enabled: bool = setting(True)
    host: str = setting("127.0.0.1")
    port: int = setting(9108, validator=_check(lambda v: 0 <= v <= 65535, "must be a port"))
    #: Bearer token for every view but /healthz; required when ``host`` is not a loopback address.
    token: str | None = setting(None, secret=True, validator=_web_token)
    #: The browser dashboard (/dash) and its event stream.
    dashboard: bool = setting(True)
    #: Most live-update clients at once; one more gets 503.
    sse_max_clients: int = setting(16, validator=positive(1000))
    #: Events kept for clients that reconnect with Last-Event-ID.
    sse_buffer: int = setting(2000, validator=positive(1_000_000))
    #: Events waiting for one client before it counts as too slow and is dropped.
    sse_client_queue: int = setting(512, validator=positive(1_000_000))
    sse_keepalive_seconds: float = setting(15.0, validator=positive(HOUR))
    #: What the browser waits before reconnecting (sent as the stream's ``retry:``), ms.
    sse_retry_ms: int = setting(2000, validator=positive(HOUR * 1000))

    @property
    def loopback(self) -> bool:
        """Whether ``host`` only accepts connections from this machine."""
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP address (``127.0.0.0/8``, ``::1``); not ``0.0.0.0``/``""``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def web_exposure_problem(web: WebSettings) -> ConfigError | None:
    """The error when the web server would listen beyond this machine without a token."""
    if web.enabled and not web.loopback and not web.token:
        return ConfigError(
            env_name("web", "token"),
            f"required when web.host is {web.host!r} (not a loopback address): every view "
            "but /healthz then needs it as a bearer token",
        )
    return None


def _history_url(_inst: Any, _attr: attrs.Attribute[Any], value: str) -> None:
    scheme = value.split("://", 1)[0].split("+", 1)[0] if "://" in value else ""
    if scheme not in HISTORY_SCHEMES:
        known = ", ".join(f"{s}://" for s in HISTORY_SCHEMES)
        raise ValueError(f"unknown history database scheme in the URL; known: {known}")


@attrs.frozen
class HistorySettings:
    enabled: bool = setting(True)
    url: str = setting(DEFAULT_HISTORY_URL, validator=_history_url)
    password: str | None = setting(None, secret=True)
    keep_text: bool = setting(True)
    retention_days: int = setting(0, validator=non_negative(36500))
    prune_interval_seconds: float = setting(3600.0, validator=positive(DAY))
    batch_size: int = setting(500, validator=positive(100_000))
    queue_size: int = setting(10000, validator=positive(10_000_000))
    buffer_size: int = setting(100000, validator=positive(100_000_000))
    spool_path: str = setting("callsbot-history-spool.jsonl")
    retry_max_seconds: float = setting(30.0, validator=positive(DAY))
    connect_timeout: float = setting(5.0, validator=positive(HOUR))


@attrs.frozen
class LogSettings:
    level: str = setting("INFO", validator=one_of("DEBUG", "INFO", "WARNING", "ERROR"))
    format: str = setting("text", validator=one_of("text", "json"))


@attrs.frozen
class Settings:
    """All settings; built by :func:`load_settings`, passed down explicitly."""

    store: StoreSettings = attrs.field(factory=StoreSettings)
    consensus: ConsensusSettings = attrs.field(factory=ConsensusSettings)
    telegram: TelegramSettings = attrs.field(factory=TelegramSettings)
    extraction: ExtractionSettings = attrs.field(factory=ExtractionSettings)
    dexscreener: DexScreenerSettings = attrs.field(factory=DexScreenerSettings)
    market: MarketSettings = attrs.field(factory=MarketSettings)
    geckoterminal: GeckoTerminalSettings = attrs.field(factory=GeckoTerminalSettings)
    outcomes: OutcomesSettings = attrs.field(factory=OutcomesSettings)
    cielo: CieloSettings = attrs.field(factory=CieloSettings)
    scoring: ScoringSettings = attrs.field(factory=ScoringSettings)
    tg_bot: TgBotSettings = attrs.field(factory=TgBotSettings)
    alerts: AlertsSettings = attrs.field(factory=AlertsSettings)
    events: EventsSettings = attrs.field(factory=EventsSettings)
    web: WebSettings = attrs.field(factory=WebSettings)
    history: HistorySettings = attrs.field(factory=HistorySettings)
    log: LogSettings = attrs.field(factory=LogSettings)


# --------------------------------------------------------------------------------------------
# Loading.

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(key: str, tp: Any, value: Any, *, from_env: bool, sensitive: bool = False) -> Any:
    """Turn a TOML value (or an environment string) into ``tp`` or raise ConfigError.

    ``sensitive``: the value may be a secret (or a URL with a password): errors never quote it.
    """
    got = "" if sensitive else f", got {value!r}"
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if from_env and value == "":
            return None
        return _coerce(key, args[0], value, from_env=from_env, sensitive=sensitive)
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        split = from_env and isinstance(value, str) and not value.lstrip().startswith("[")
        if from_env and isinstance(value, str):
            value = _json_list(key, value) if value.lstrip().startswith("[") else _split(value)
        if not isinstance(value, list | tuple):
            raise ConfigError(key, f"expected a list{got}")
        # Items of a comma-separated variable are strings, to be read as the environment's.
        return tuple(
            _coerce(f"{key}[{i}]", item_tp, v, from_env=split, sensitive=sensitive)
            for i, v in enumerate(value)
        )
    if attrs.has(tp):
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a table{got}")
        return _build(key, tp, value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_env and isinstance(value, str) and value.lower() in _BOOLS:
            return _BOOLS[value.lower()]
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_env and isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif tp is float:
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif from_env and isinstance(value, str):
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is not None:
            if not math.isfinite(number):
                raise ConfigError(key, "must be a finite number (nan and inf are refused)")
            return number
    elif tp is str and isinstance(value, str):
        return value
    raise ConfigError(key, f"expected {_type_name(tp)}{got}")


def _json_list(key: str, value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError as exc:
        where = f" at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ConfigError(
            key,
            f"is not a valid JSON list ({getattr(exc, 'msg', 'bad JSON')}{where}); write a JSON "
            'list with quoted items such as ["@a", "@b"], or comma-separated values: @a, @b',
        ) from None


def _sensitive(field: attrs.Attribute[Any]) -> bool:
    # URLs may carry a password (redis://:pw@host, https://user:pw@host) just like secrets.
    return bool(field.metadata.get("secret")) or field.name == "url" or field.name.endswith("_url")


_BOOLS = {"1": True, "true": True, "yes": True, "on": True}
_BOOLS |= {"0": False, "false": False, "no": False, "off": False}


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _build(prefix: str, cls: type[T], raw: Mapping[str, Any], *, from_env: bool = False) -> T:
    """Build attrs class ``cls`` from ``raw``, naming ``prefix.key`` in every error."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in attrs.fields(typing.cast(Any, cls))}
    for name in raw:
        if name not in fields:
            raise ConfigError(f"{prefix}.{name}", f"unknown key (known: {', '.join(fields)})")
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        key = f"{prefix}.{name}"
        if name not in raw:
            if field.default is attrs.NOTHING:
                raise ConfigError(key, "missing required value")
            continue
        sensitive = _sensitive(field)
        value = _coerce(key, hints[name], raw[name], from_env=from_env, sensitive=sensitive)
        if field.converter is not None:
            value = field.converter(value)
        if field.validator is not None:
            try:
                field.validator(None, field, value)
            except ValueError as exc:
                got = "" if sensitive or isinstance(value, tuple) else f", got {value!r}"
                raise ConfigError(key, f"{exc}{got}") from None
        kwargs[name] = value
    return cls(**kwargs)


def with_overrides(settings: Settings, overrides: Mapping[str, Any]) -> Settings:
    """``settings`` with some ``section.key`` values replaced, checked by the loader's rules.

    A string value is read as the environment would give it (numbers, booleans, lists as JSON
    or comma-separated); any other value as config.toml would (a list of tables for
    ``consensus.tiers``). Secrets cannot be overridden here.

    Raises:
        ConfigError: naming the key: unknown section or key, a secret, a value of the wrong
            type, or one a validator (or the section's ``problems()``) refuses.
    """
    hints = typing.get_type_hints(Settings)
    by_section: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if section not in hints or not name:
            raise ConfigError(key, f"not a setting (sections: {', '.join(hints)})")
        by_section.setdefault(section, {})[name] = value
    changed: dict[str, Any] = {}
    for section, raw in by_section.items():
        cls = hints[section]
        fields = {f.name: f for f in attrs.fields(cls)}
        for name in raw:
            if name in fields and fields[name].metadata.get("secret"):
                raise ConfigError(f"{section}.{name}", "is a secret: not overridable here")
        text = {k: v for k, v in raw.items() if isinstance(v, str)}
        typed = {k: v for k, v in raw.items() if not isinstance(v, str)}
        values: dict[str, Any] = {}
        for part, from_env in ((text, True), (typed, False)):
            if part:
                built = _build(section, cls, part, from_env=from_env)
                values |= {k: getattr(built, k) for k in part}
        try:
            updated = attrs.evolve(getattr(settings, section), **values)
        except ValueError as exc:
            raise ConfigError(section, str(exc)) from None
        for key, problem in getattr(updated, "problems", list)():
            raise ConfigError(f"{section}.{key}", problem)
        changed[section] = updated
    return attrs.evolve(settings, **changed)


def env_name(section: str, key: str) -> str:
    """The environment variable that overrides ``[section] key``."""
    return f"{ENV_PREFIX}{section}_{key}".upper()


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    env_file: str | os.PathLike[str] | None = ".env",
) -> Settings:
    """Load settings from ``path``, a ``.env`` file and the environment.

    Args:
        path: the TOML file; ``None`` means defaults only. A path that does not exist is an error.
        environ: the environment to read (``os.environ`` when ``None``).
        env_file: an optional dotenv file; a missing file is fine.

    Raises:
        ConfigError: naming the first bad key.
    """
    environ = dict(os.environ if environ is None else environ)
    merged_env: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        try:
            values = dotenv_values(env_file)
        except UnicodeDecodeError as exc:
            raise ConfigError(str(env_file), _not_utf8(exc)) from None
        merged_env.update({k: v for k, v in values.items() if v is not None})
    merged_env.update(environ)

    file_data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                file_data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("config", f"file not found: {path}") from None
        except IsADirectoryError:
            raise ConfigError("config", f"{path} is a directory; give the TOML file") from None
        except OSError as exc:
            raise ConfigError("config", f"cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError("config", f"{path} {_not_utf8(exc)}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None

    sections = {f.name: f for f in attrs.fields(Settings)}
    for name, value in file_data.items():
        if name not in sections:
            raise ConfigError(name, f"unknown section (known: {', '.join(sections)})")
        if not isinstance(value, dict):
            raise ConfigError(name, "expected a [section] table")

    known_env: set[str] = set(META_ENV)
    built: dict[str, Any] = {}
    hints = typing.get_type_hints(Settings)
    for sname in sections:
        cls = hints[sname]
        raw: dict[str, Any] = dict(file_data.get(sname, {}))
        for field in attrs.fields(cls):
            key = f"{sname}.{field.name}"
            if field.metadata.get("secret") and field.name in raw:
                var = env_name(sname, field.name)
                raise ConfigError(key, f"is a secret: set {var} in the environment or .env")
        built_file = _build(sname, cls, raw)
        overrides: dict[str, Any] = {}
        for field in attrs.fields(cls):
            var = env_name(sname, field.name)
            known_env.add(var)
            if var in merged_env:
                overrides[field.name] = merged_env[var]
        if overrides:
            try:
                env_part = _build(sname, cls, overrides | {}, from_env=True)
            except ConfigError as exc:
                var = env_name(*exc.key.split("[")[0].split(".", 1))
                raise ConfigError(var, exc.problem) from None
            built_file = attrs.evolve(built_file, **{k: getattr(env_part, k) for k in overrides})
        for key, problem in getattr(built_file, "problems", list)():
            raise ConfigError(f"{sname}.{key}", problem)
        built[sname] = built_file

    for var in merged_env:
        if var.startswith(ENV_PREFIX) and var not in known_env:
            raise ConfigError(var, "unknown setting in the environment")
    if path is not None:
        history = built["history"]
        url = sqlite_url_next_to(history.url, Path(path).resolve().parent)
        built["history"] = attrs.evolve(history, url=url)
    settings = Settings(**built)
    exposed = web_exposure_problem(settings.web)
    if exposed is not None:
        raise exposed
    return settings


def sqlite_url_next_to(url: str, base: Path) -> str:
    """``url`` with a relative SQLite file path made relative to ``base`` (other URLs as given).

    The history's default, ``sqlite:///callsbot-history.sqlite3``, thus lands next to the
    config file whatever directory callsbot is started from.
    """
    scheme, sep, rest = url.partition(":///")
    if not sep or scheme.split("+", 1)[0] != "sqlite" or not rest or rest.startswith(":memory:"):
        return url
    if Path(rest.split("?", 1)[0]).is_absolute():
        return url
    return f"{scheme}:///{base / rest}"


def _not_utf8(exc: UnicodeDecodeError) -> str:
    byte = exc.object[exc.start : exc.start + 1].hex()
    return f"is not UTF-8 text (byte 0x{byte} at offset {exc.start}); save it as UTF-8"


def missing_for_role(settings: Settings, role: str, *, replay: bool = False) -> list[str]:
    """Environment variables that ``role`` needs but that are unset (``replay``: no Telegram)."""
    missing: list[str] = []
    if role in ("all", "aggregator") and not replay:
        if settings.telegram.api_id is None:
            missing.append(env_name("telegram", "api_id"))
        if not settings.telegram.api_hash:
            missing.append(env_name("telegram", "api_hash"))
    if role in ("all", "scorer") and not settings.cielo.api_key:
        missing.append(env_name("cielo", "api_key"))
    return missing
