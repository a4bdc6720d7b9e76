"""Cached OHLCV bodies: the price paths a replay measures outcomes on, without the network.

A cache entry is one GeckoTerminal OHLCV answer, as fetched, in a small envelope::

    {"pool": "<pool address>", "mint": "<token>", "timeframe": "1m",
     "fetched_at": 1714651320, "before": null, "body": {<the response body, unchanged>}}

``timeframe`` is ``1m`` or ``5m``; ``fetched_at`` and ``before`` (the ``before_timestamp``
asked for, or ``null``) say up to when the candles are complete. A cache is a ``.jsonl`` file
(one envelope per line), a ``.json`` file (one envelope or a list of them), or a directory of
such files (read in name order). Entries of one mint are merged: candles are de-duplicated by
start (the last one read wins, as :func:`~callsbot.models.candle_series` does) and the path is
complete up to the latest entry's time. The body is parsed by the live client's own parser, so
an answer priced for another token (``meta.base.address`` not the mint) is refused here too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs

from callsbot.market.prices import GeckoTerminalError, Timeframe, parse_ohlcv
from callsbot.models import Candle, candle_series
from callsbot.replay.tape import PricePath


class CandleCacheError(ValueError):
    """A cache file that cannot be read; the message names the file and the line."""


@attrs.frozen
class CacheEntry:
    """One cached OHLCV answer."""

    pool: str
    mint: str
    timeframe: Timeframe
    candles: tuple[Candle, ...]
    complete_until: float
    symbol: str = ""
    name: str = ""


def envelope(
    pool: str,
    mint: str,
    timeframe: Timeframe,
    body: Any,
    *,
    fetched_at: float,
    before: int | None = None,
) -> dict[str, Any]:
    """The cache envelope of one fetched OHLCV ``body`` (what the tracker or a script writes)."""
    return {
        "pool": pool,
        "mint": mint,
        "timeframe": timeframe.value,
        "fetched_at": fetched_at,
        "before": before,
        "body": body,
    }


def parse_entry(data: Any) -> CacheEntry:
    """One envelope as a :class:`CacheEntry`.

    Raises:
        CandleCacheError: not an envelope, or a body the live client would refuse.
    """
    if not isinstance(data, dict):
        raise CandleCacheError("not a JSON object")
    try:
        pool, mint = str(data["pool"]), str(data["mint"])
        timeframe = Timeframe(data["timeframe"])
        fetched_at = float(data["fetched_at"])
        before = data.get("before")
        body = data["body"]
    except (KeyError, TypeError, ValueError) as exc:
        raise CandleCacheError(f"not an OHLCV cache envelope ({exc!r})") from None
    try:
        candles, _skipped = parse_ohlcv(body, mint)
    except GeckoTerminalError as exc:
        raise CandleCacheError(f"{mint}: {exc}") from None
    meta = body.get("meta", {}).get("base", {}) if isinstance(body, dict) else {}
    complete = fetched_at if before is None else min(float(before), fetched_at)
    return CacheEntry(
        pool,
        mint,
        timeframe,
        candles,
        complete,
        symbol=str(meta.get("symbol") or ""),
        name=str(meta.get("name") or ""),
    )


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in (".json", ".jsonl"))
    return [path]


def read_entries(path: str | Path) -> Iterator[CacheEntry]:
    """Every entry of a cache file or directory, in reading order.

    Raises:
        CandleCacheError: naming the file (and line) that cannot be read.
    """
    for file in _files(Path(path)):
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise CandleCacheError(f"{file}: {exc}") from None
        if file.suffix == ".jsonl":
            items: Iterable[tuple[str, str]] = (
                (f"{file}:{n}", line) for n, line in enumerate(text.splitlines(), 1)
            )
        else:
            items = [(str(file), text)]
        for where, chunk in items:
            if not chunk.strip():
                continue
            try:
                data = json.loads(chunk)
            except ValueError as exc:
                raise CandleCacheError(f"{where}: not JSON ({exc})") from None
            for one in data if isinstance(data, list) else [data]:
                try:
                    yield parse_entry(one)
                except CandleCacheError as exc:
                    raise CandleCacheError(f"{where}: {exc}") from None


def merge(entries: Iterable[CacheEntry]) -> dict[str, PricePath]:
    """One path per mint from its entries (the first entry's pool names the path)."""
    found: dict[str, list[CacheEntry]] = {}
    for entry in entries:
        found.setdefault(entry.mint, []).append(entry)
    paths: dict[str, PricePath] = {}
    for mint, group in found.items():
        minute = [c for e in group if e.timeframe is Timeframe.MINUTE for c in e.candles]
        five = [c for e in group if e.timeframe is Timeframe.FIVE_MINUTES for c in e.candles]
        paths[mint] = PricePath(
            token=mint,
            pool=group[0].pool,
            minute=candle_series(minute),
            five_minute=candle_series(five),
            as_of=max(e.complete_until for e in group),
            symbol=next((e.symbol for e in group if e.symbol), ""),
            name=next((e.name for e in group if e.name), ""),
        )
    return paths


def load_paths(path: str | Path) -> dict[str, PricePath]:
    """The price paths of a cache file or directory, by mint.

    Raises:
        CandleCacheError: naming what cannot be read.
    """
    return merge(read_entries(path))
