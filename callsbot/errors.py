"""callsbot's error vocabulary: one small tree that every layer raises from.

Two branches matter to the process:

- :class:`FatalError`: no restart can fix it (bad configuration, a rejected credential, an
  unusable Telegram session, no group resolvable). The supervisor ends the process with the
  error's :attr:`~FatalError.exit_code`; it never needs to know which adapter raised it.
- :class:`Unavailable`: a peer could not be asked right now (store, market data, feed, sink,
  history). Callers buffer, defer or degrade, never treat it as an answer.

Adapters subclass these (``CieloAuthError(CredentialsRejected)``,
``RateLimited(MarketUnavailable)``) to say more; callers catch the branch they can act on.
"""

from __future__ import annotations

import enum

#: Exit status of a configuration error (also used for refused startup checks).
EXIT_CONFIG = 2
#: Exit status of any other fatal error.
EXIT_FATAL = 3


class CallsbotError(Exception):
    """Base of every error callsbot raises on purpose."""


class FatalError(CallsbotError):
    """Restarting cannot fix this: the process ends with :attr:`exit_code`."""

    exit_code: int = EXIT_FATAL


class ConfigError(FatalError):
    """A setting is missing, unknown, of the wrong type or out of range.

    The message names the key and the kind of problem, never a value that could be a secret.

    Attributes:
        key: dotted name of the offending setting (``section.key``), or an env var name.
        problem: what is wrong with it.
    """

    exit_code = EXIT_CONFIG

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class CredentialsRejected(FatalError):
    """A peer refused our credential (API key, bot token, password)."""


class SessionError(FatalError):
    """The Telegram session file is missing, unauthorised, unsafe or used by another process."""


class NoGroupsResolved(FatalError):
    """None of the configured groups could be resolved."""


class Unavailable(CallsbotError):
    """A peer could not be asked right now; retrying later may work."""


class StoreFault(enum.StrEnum):
    """Why the store could not be asked: readiness, ``check`` and the startup checks name it.

    Some faults are outages (wait, buffer, retry); the others are mistakes a retry cannot fix
    (:data:`REJECTIONS`), refused at startup and reported as such at run time.
    """

    TIMEOUT = "timeout"  # no answer in time: frozen, overloaded, a network stall
    CONNECTION = "connection"  # refused, reset, unreachable
    OOM = "oom"  # maxmemory reached: writes are refused
    READONLY = "readonly"  # a replica, or a failover in progress
    NOPERM = "noperm"  # the ACL user lacks a command or key right callsbot needs
    AUTH = "auth"  # wrong password or user
    TLS = "tls"  # rediss:// against a plain server, or a certificate problem
    REBUILDING = "rebuilding"  # the window lost its data and is not rebuilt yet
    ERROR = "error"  # any other error reply


#: Faults that are configuration mistakes, not outages: startup refuses them (exit 2).
REJECTIONS = frozenset({StoreFault.AUTH, StoreFault.NOPERM, StoreFault.TLS, StoreFault.READONLY})


class StoreError(Unavailable):
    """The store could not be asked (unreachable, timed out, or answered with an error).

    Attributes:
        fault: what kind of failure it was (``error`` when nothing more specific is known).
    """

    def __init__(self, message: str, *, fault: StoreFault = StoreFault.ERROR) -> None:
        super().__init__(message)
        self.fault = fault


class MarketUnavailable(Unavailable):
    """Market data could not be had right now (rate limited, down, timed out, bad response)."""


class FeedUnavailable(Unavailable):
    """The wallet feed could not be polled right now."""


class SinkError(Unavailable):
    """An alert sink did not take the alert."""


class HistoryUnavailable(Unavailable):
    """The history database could not be written or read right now."""
