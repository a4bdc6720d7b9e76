"""Test machinery shipped with the package, never on the production path.

Local HTTP servers that speak the real DexScreener, Cielo and Telegram Bot API schemas, errors
included, and a redis-server starter for free loopback ports. The demo replays its bundled
session through them, the benchmarks measure against them, and the tests inject faults with
them. No code path of the bot itself imports this package; it is simply pointed at their URL.
"""
