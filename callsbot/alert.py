"""The alert value object and its renderings (Telegram HTML, plain text, JSON).

Every string that comes from the feed or market data (names, symbols, wallet labels, group
names, addresses) is escaped with :func:`html.escape` in the HTML rendering: a token called
``<b>x</b>&<script>`` must show up as text, never as markup.
"""

from __future__ import annotations

import html
import re
from typing import Any

import attrs

from callsbot.models import Buy, MarketSnapshot
from callsbot.scoring import ScoreCard, format_points, format_price, format_usd

#: Telegram's limit on one message's text.
TELEGRAM_MAX_CHARS = 4096
#: Longest name/symbol/label shown (longer ones are cut, before escaping).
MAX_FIELD_CHARS = 64
#: Longest reason line shown.
MAX_LINE_CHARS = 400

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


@attrs.frozen
class Alert:
    """One token crossing the alert threshold.

    Attributes:
        buy: the feed trade that surfaced the token (the latest one when re-scored).
        snapshot: market data at scoring time.
        card: the score with every reason line and the consensus line.
        created_at: unix seconds when the alert was made.
    """

    buy: Buy
    snapshot: MarketSnapshot
    card: ScoreCard
    created_at: float

    @property
    def token(self) -> str:
        """The token's address."""
        return self.buy.token

    @property
    def name(self) -> str:
        """Market-data name, else the feed's."""
        return self.snapshot.name or self.buy.name or "?"

    @property
    def symbol(self) -> str:
        """Market-data symbol, else the feed's."""
        return self.snapshot.symbol or self.buy.symbol or "?"

    def links(self) -> dict[str, str]:
        """Links: DexScreener always, pump.fun for ``…pump`` mints, Birdeye otherwise."""
        chain = (self.snapshot.chain or self.buy.chain or "solana").lower()
        pair = self.snapshot.pair_address or self.token
        links = {"DexScreener": f"https://dexscreener.com/{chain}/{pair}"}
        if chain == "solana" and self.token.endswith("pump"):
            links["pump.fun"] = f"https://pump.fun/coin/{self.token}"
        else:
            links["Birdeye"] = f"https://birdeye.so/token/{self.token}?chain={chain}"
        return links

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the JSONL sink's line)."""
        s, b, c = self.snapshot, self.buy, self.card
        return {
            "ts": self.created_at,
            "token": self.token,
            "chain": s.chain or b.chain,
            "name": self.name,
            "symbol": self.symbol,
            "score": round(c.total, 2),
            "base": round(c.base, 2),
            "degraded": c.degraded,
            "lines": [{"points": line.points, "reason": line.reason} for line in c.lines],
            "consensus": self._consensus_json(),
            "buy": {
                "tx_hash": b.tx_hash,
                "wallet": b.wallet,
                "wallet_label": b.wallet_label,
                "usd": b.usd,
                "ts": b.ts,
                "dex": b.dex,
                "first_interaction": b.first_interaction,
            },
            "market": {
                "pair": s.pair_address,
                "dex": s.dex,
                "price_usd": s.price_usd,
                "liquidity_usd": s.liquidity_usd,
                "volume_h24": s.volume_h24,
                "market_cap": s.market_cap,
                "fdv": s.fdv,
                "pair_created_at": s.pair_created_at,
                "price_change_h1": s.price_change_h1,
                "price_change_h24": s.price_change_h24,
            },
            "links": self.links(),
        }

    def _consensus_json(self) -> dict[str, Any]:
        cons = self.card.consensus
        out: dict[str, Any] = {
            "points": cons.points,
            "groups": list(cons.groups),
            "degraded": cons.degraded,
            "reason": cons.reason,
            "mode": cons.mode,
        }
        if cons.strength is not None:
            out["strength"] = round(cons.strength, 4)
            out["terms"] = [
                {
                    "group": t.group,
                    "ts": t.ts,
                    "weight": round(t.weight, 4),
                    "vote": round(t.vote, 4),
                    "decay": round(t.decay, 4),
                    "value": round(t.value, 4),
                    "note": t.note,
                }
                for t in cons.terms
            ]
        return out


def clean(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """``text`` without control/bidi characters, at most ``limit`` characters (``…`` if cut)."""
    text = _CONTROL.sub("", text).replace("\n", " ").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _esc(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    return html.escape(clean(text, limit), quote=True)


def telegram_length(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units); raw HTML over-counts, which is safe."""
    return len(text.encode("utf-16-le")) // 2


def _market_lines(alert: Alert) -> list[str]:
    s = alert.snapshot
    mcap = s.market_cap if s.market_cap is not None else s.fdv
    return [
        f"💵 Price: {format_price(s.price_usd)} · 🏷 MC: {format_usd(mcap)}",
        f"💧 Liquidity: {format_usd(s.liquidity_usd)} · 📊 Vol 24h: {format_usd(s.volume_h24)}",
    ]


def _buy_line(buy: Buy) -> str:
    who = buy.wallet_label or (buy.wallet[:4] + "…" + buy.wallet[-4:])
    where = f" on {buy.dex}" if buy.dex else ""
    return f"🐋 Buy {format_usd(buy.usd)} by {who}{where}"


def render_html(alert: Alert, *, limit: int = TELEGRAM_MAX_CHARS) -> str:
    """The Telegram message (``parse_mode=HTML``), at most ``limit`` characters.

    Each line is a complete fragment (every tag it opens it closes), so shortening drops whole
    reason lines and never cuts inside a tag or an entity.
    """
    c = alert.card
    degraded = " (degraded)" if c.degraded else ""
    head = [
        f"🚨 <b>{_esc(alert.name)}</b> (${_esc(alert.symbol, 32)})",
        f"<code>{_esc(alert.token, 100)}</code>",
        f"⭐ Score: <b>{c.total:.1f}/10</b> (base {c.base:.1f}, consensus "
        f"{format_points(c.consensus.points)}){degraded}",
        *(html.escape(line) for line in _market_lines(alert)),
        _esc(_buy_line(alert.buy), MAX_LINE_CHARS),
        "",
    ]
    reasons = [_esc(line.render(), MAX_LINE_CHARS) for line in c.lines]
    links = " | ".join(
        f'<a href="{html.escape(url, quote=True)}">{html.escape(label)}</a>'
        for label, url in alert.links().items()
    )
    tail = ["", f"<b>{_esc(c.consensus.reason, MAX_LINE_CHARS)}</b>", "", links]
    return _fit(head, reasons, tail, limit)


def _fit(head: list[str], middle: list[str], tail: list[str], limit: int) -> str:
    text = "\n".join([*head, *middle, *tail])
    if telegram_length(text) <= limit:
        return text
    kept = list(middle)
    while kept:
        kept.pop()
        note = f"… {len(middle) - len(kept)} more reason(s)"
        text = "\n".join([*head, *kept, note, *tail])
        if telegram_length(text) <= limit:
            return text
    # Only reachable with a tiny ``limit``: keep what fits line by line.
    out: list[str] = []
    for line in [*head, *tail]:
        if telegram_length("\n".join([*out, line])) > limit:
            break
        out.append(line)
    return "\n".join(out)


def render_text(alert: Alert) -> str:
    """A one-line plain-text summary for logs (no markup, control characters removed)."""
    c = alert.card
    parts = [
        f"ALERT {clean(alert.name)} (${clean(alert.symbol, 32)}) {alert.token}",
        f"score {c.total:.1f}/10{' degraded' if c.degraded else ''}",
        *(clean(line, MAX_LINE_CHARS) for line in _market_lines(alert)),
        clean(_buy_line(alert.buy), MAX_LINE_CHARS),
        *(clean(line.render(), MAX_LINE_CHARS) for line in c.lines),
        clean(c.consensus.reason, MAX_LINE_CHARS),
    ]
    return " | ".join(parts)
