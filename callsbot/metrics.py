"""Prometheus metrics, one registry per process, passed down explicitly.

No metric carries a token address as a label: label values are small fixed sets (reasons,
outcomes, roles, sinks), so the series count stays bounded however many tokens are seen.
"""

from __future__ import annotations

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


def _counter(registry: CollectorRegistry, name: str, doc: str, *labels: str) -> Counter:
    return Counter(name, doc, labels, registry=registry)


def _gauge(registry: CollectorRegistry, name: str, doc: str, *labels: str) -> Gauge:
    return Gauge(name, doc, labels, registry=registry)


@attrs.define
class Metrics:
    """Every metric callsbot exports. Build one per process with :meth:`create`."""

    registry: CollectorRegistry
    messages_seen: Counter
    mentions_recorded: Counter
    mentions_rejected: Counter
    extraction_dropped: Counter
    market_requests: Counter
    market_cache: Counter
    feed_items: Counter
    feed_polls: Counter
    buys: Counter
    cielo_ws_events: Counter
    cielo_ws_reconnects: Counter
    cielo_ws_failures: Counter
    cielo_ws_connected: Gauge
    cielo_ws_fallback: Gauge
    cielo_gap_fill_items: Counter
    alerts: Counter
    store_errors: Counter
    queue_depth: Gauge
    heartbeat_age: Gauge
    buffer_size: Gauge
    buffer_overflow: Counter
    loop_restarts: Counter
    groups_resolved: Gauge
    group_message_age: Gauge
    group_stale: Gauge
    flood_wait: Gauge
    flood_waits: Counter
    pipeline_latency: Histogram
    levels_reached: Counter
    events_published: Counter
    scorer_reactions: Counter
    stream_appended: Counter
    stream_dropped: Counter
    stream_skipped: Counter
    stream_lag: Histogram
    events_dropped: Counter
    event_handler_errors: Counter
    event_lag: Histogram
    history_events: Counter
    history_buffer: Gauge
    history_up: Gauge
    history_write_seconds: Histogram
    tracker_queue: Gauge
    tracker_scheduled: Gauge
    tracker_oldest_due: Gauge
    tracker_events: Counter
    tracker_fetches: Counter
    tracker_followups: Counter
    store_state: Gauge
    store_clock_skew: Gauge
    window_whole: Gauge
    window_rebuilds: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        """Create all metrics in ``registry`` (a fresh one when ``None``)."""
        r = registry if registry is not None else CollectorRegistry()
        return cls(
            registry=r,
            messages_seen=_counter(r, "callsbot_messages_seen", "Telegram messages seen", "source"),
            mentions_recorded=_counter(
                r, "callsbot_mentions_recorded", "Mentions written to the store", "kind"
            ),
            mentions_rejected=_counter(
                r, "callsbot_mentions_rejected", "Addresses not recorded, by reason", "reason"
            ),
            extraction_dropped=_counter(
                r, "callsbot_extraction_dropped", "Addresses beyond the per-message cap"
            ),
            market_requests=_counter(
                r, "callsbot_market_requests", "Market-data HTTP requests by outcome", "outcome"
            ),
            market_cache=_counter(
                r, "callsbot_market_cache", "Market-data cache lookups by result", "result"
            ),
            feed_items=_counter(r, "callsbot_feed_items", "Cielo feed items by outcome", "outcome"),
            feed_polls=_counter(r, "callsbot_feed_polls", "Cielo polls by outcome", "outcome"),
            buys=_counter(r, "callsbot_buys", "Buys handed to the scorer, by path", "path"),
            cielo_ws_events=_counter(
                r, "callsbot_cielo_ws_events", "Cielo WebSocket messages by kind", "kind"
            ),
            cielo_ws_reconnects=_counter(
                r, "callsbot_cielo_ws_reconnects", "Cielo WebSocket connections after the first"
            ),
            cielo_ws_failures=_counter(
                r,
                "callsbot_cielo_ws_failures",
                "Cielo WebSocket connections lost or refused",
                "reason",
            ),
            cielo_ws_connected=_gauge(
                r, "callsbot_cielo_ws_connected", "1 while the Cielo WebSocket is connected"
            ),
            cielo_ws_fallback=_gauge(
                r,
                "callsbot_cielo_ws_fallback",
                "1 while the Cielo WebSocket is down and REST polls",
            ),
            cielo_gap_fill_items=_counter(
                r,
                "callsbot_cielo_gap_fill_items",
                "Items read by REST gap fills after a (re)connect, by outcome",
                "outcome",
            ),
            alerts=_counter(
                r, "callsbot_alerts", "Alerts delivered, by sink and outcome", "sink", "outcome"
            ),
            store_errors=_counter(r, "callsbot_store_errors", "Store operations that failed", "op"),
            queue_depth=_gauge(r, "callsbot_queue_depth", "Messages waiting for a worker"),
            heartbeat_age=_gauge(
                r, "callsbot_heartbeat_age_seconds", "Age of a role's last heartbeat", "role"
            ),
            buffer_size=_gauge(
                r, "callsbot_buffer_size", "Mentions buffered while the store is down"
            ),
            buffer_overflow=_counter(
                r, "callsbot_buffer_overflow", "Mentions lost because the buffer was full"
            ),
            loop_restarts=_counter(
                r, "callsbot_loop_restarts", "Supervised loops restarted after a crash", "loop"
            ),
            groups_resolved=_gauge(
                r, "callsbot_groups_resolved", "Configured groups by resolution state", "state"
            ),
            group_message_age=_gauge(
                r,
                "callsbot_group_last_message_age_seconds",
                "Seconds since the latest message seen from a group (or since listening began)",
                "group",
            ),
            group_stale=_gauge(
                r,
                "callsbot_group_stale",
                "1 while a group has been silent longer than telegram.stale_after_seconds",
                "group",
            ),
            flood_wait=_gauge(
                r,
                "callsbot_telegram_flood_wait_seconds",
                "The FloodWait a group's postponed catch-up waits out (0: none)",
                "group",
            ),
            flood_waits=_counter(
                r,
                "callsbot_telegram_flood_waits",
                "Catch-ups postponed by a FloodWait longer than telegram.flood_wait_max_seconds",
                "group",
            ),
            pipeline_latency=Histogram(
                "callsbot_pipeline_seconds",
                "Handler entry to recorded mention",
                registry=r,
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5),
            ),
            levels_reached=_counter(
                r, "callsbot_levels_reached", "Tokens reaching a group count (3 = 3+)", "level"
            ),
            events_published=_counter(r, "callsbot_events_published", "Events published", "kind"),
            scorer_reactions=_counter(
                r, "callsbot_scorer_reactions", "Watch-list re-scores started by a new mention"
            ),
            stream_appended=_counter(r, "callsbot_stream_appended", "Events put on the stream"),
            stream_dropped=_counter(
                r, "callsbot_stream_dropped", "Events dropped: the stream buffer was full"
            ),
            stream_skipped=_counter(r, "callsbot_stream_skipped", "Unreadable stream entries"),
            stream_lag=Histogram(
                "callsbot_stream_lag_seconds",
                "Event time to being read off the stream",
                registry=r,
                buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
            ),
            events_dropped=_counter(
                r, "callsbot_events_dropped", "Events dropped for a full subscriber", "subscriber"
            ),
            event_handler_errors=_counter(
                r, "callsbot_event_handler_errors", "Subscriber failures", "subscriber"
            ),
            event_lag=Histogram(
                "callsbot_event_lag_seconds",
                "Event time to handling, per subscriber",
                ["subscriber"],
                registry=r,
                buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
            ),
            history_events=_counter(
                r,
                "callsbot_history_events",
                "Events by what the recorder did with them (written, spooled, dropped)",
                "outcome",
            ),
            history_buffer=_gauge(
                r, "callsbot_history_buffer", "Events waiting to be written to the history"
            ),
            history_up=_gauge(
                r, "callsbot_history_up", "1 when the last history write succeeded, else 0"
            ),
            history_write_seconds=Histogram(
                "callsbot_history_write_seconds",
                "Duration of one history batch write",
                registry=r,
                buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
            ),
            tracker_queue=_gauge(
                r, "callsbot_tracker_queue", "Outcome price fetches due now and not yet made"
            ),
            tracker_scheduled=_gauge(
                r, "callsbot_tracker_scheduled", "Outcome price fetches scheduled (due or not)"
            ),
            tracker_oldest_due=_gauge(
                r,
                "callsbot_tracker_oldest_due_seconds",
                "How late the oldest due outcome price fetch is (0 when none is due)",
            ),
            tracker_events=_counter(
                r, "callsbot_tracker_events", "Events taken by the outcome tracker", "kind"
            ),
            tracker_fetches=_counter(
                r, "callsbot_tracker_fetches", "Outcome price fetches by outcome", "outcome"
            ),
            tracker_followups=_counter(
                r, "callsbot_tracker_followups", "Alert follow-up replies by outcome", "outcome"
            ),
            store_state=_gauge(
                r,
                "callsbot_store_state",
                "1 for each problem the last store probe found (ok, timeout, connection, oom, "
                "readonly, noperm, auth, tls, error, eviction, skew), else 0",
                "state",
            ),
            store_clock_skew=_gauge(
                r,
                "callsbot_store_clock_skew_seconds",
                "This process's clock minus the store's (Redis TIME), at the last probe",
            ),
            window_whole=_gauge(
                r,
                "callsbot_window_whole",
                "1 while the window store holds the whole window, 0 while it is rebuilt",
            ),
            window_rebuilds=_counter(
                r,
                "callsbot_window_rebuilds",
                "Rebuilds of the window from the history, by why (start, lost, rolled_back)",
                "why",
            ),
        )

    def render(self) -> bytes:
        """Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
