"""The browser dashboard: consensus forming, alerts, scoreboard, groups and health, live.

One hub subscriber (:class:`~callsbot.dashboard.service.Dashboard`) keeps an in-memory
:class:`~callsbot.dashboard.state.DashboardState` and turns each change into a server-sent
event for every browser through one :class:`~callsbot.dashboard.stream.Broadcaster`. The views
(:mod:`callsbot.dashboard.views`) are an extension of the web server: ``/dash`` (static HTML,
script and style shipped in this package), ``/api/dash/snapshot`` and ``/api/dash/events``.

Data that other parts will own (outcomes, the report's scoreboard, group leaderboards, weighted
consensus) comes through the optional providers of :class:`~callsbot.dashboard.sources.
DashboardSources`; a panel without its provider says "not available".

A package, not more lines in ``web.py``: the dashboard is a state machine, a broadcaster and
static files, none of which the other views need, and ``web.py`` stays the small server that
other branches extend; the wiring (``runtime/roles.py``) plugs this in as a web extension.
"""
