// callsbot dashboard: snapshot, then server-sent events, rendered with textContent only.
//
// Why fetch() and not EventSource: EventSource cannot send an Authorization header, and the
// alternatives (the token in the URL, or a cookie) leak it into logs and history or make it an
// ambient credential. fetch() streams the same text/event-stream, sends the bearer token read
// from the page's #token= fragment (never sent to the server, removed from the address bar),
// and this script honours the protocol itself: id, event, data, retry and Last-Event-ID.
"use strict";

(() => {
  const TOKEN_KEY = "callsbot-dash-token";
  const state = {
    snap: null,
    tokens: new Map(),
    alerts: [],
    lastId: null,
    retryMs: 2000,
    now: 0,
    nowAt: 0,
    rate: 1,
    dirty: true,
  };

  // -- the token: from #token=… once, then sessionStorage (this tab only) ---------------------

  function readToken() {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (m) {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }
  const token = readToken();

  function headers(extra) {
    const h = Object.assign({ Accept: "application/json" }, extra || {});
    if (token) h.Authorization = "Bearer " + token;
    return h;
  }

  // -- DOM helpers: text only ---------------------------------------------------------------

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function svg(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }
  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }
  const $ = (id) => document.getElementById(id);

  // -- formatting ---------------------------------------------------------------------------

  function usd(v) {
    if (v === null || v === undefined) return "–";
    const a = Math.abs(v);
    for (const [size, unit] of [[1e9, "B"], [1e6, "M"], [1e3, "k"]]) {
      if (a >= size) return "$" + (v / size).toFixed(v / size < 10 ? 2 : 1) + unit;
    }
    return "$" + v.toFixed(0);
  }
  function price(v) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    if (v === 0) return "$0";
    if (v >= 1) return "$" + v.toFixed(v >= 1000 ? 0 : 2);
    const decimals = Math.min(12, 3 - Math.floor(Math.log10(v)));
    return "$" + v.toFixed(decimals);
  }
  function span(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m";
    if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0");
    return Math.floor(s / 86400) + "d";
  }
  function points(p) {
    if (p === 0) return "±0";
    const t = (p > 0 ? "+" : "") + p.toFixed(1);
    return t.endsWith(".0") ? t.slice(0, -2) : t;
  }
  function clock(ts) {
    const d = new Date(ts * 1000);
    return d.toISOString().slice(11, 19);
  }
  function pct(x) {
    return x === null || x === undefined ? "–" : Math.round(x * 100) + "%";
  }

  // -- the server's clock, extrapolated between events --------------------------------------

  function setNow(now, rate) {
    if (typeof now === "number") {
      state.now = now;
      state.nowAt = performance.now();
    }
    if (typeof rate === "number") state.rate = rate;
  }
  function serverNow() {
    return state.now + ((performance.now() - state.nowAt) / 1000) * state.rate;
  }

  // -- status line --------------------------------------------------------------------------

  function conn(text, cls) {
    const node = $("conn");
    node.textContent = text;
    node.className = "pill " + (cls || "");
  }

  // -- rendering ----------------------------------------------------------------------------

  const STATUS = {
    alerted: ["alerted", "ok"],
    below_threshold: ["below threshold", "muted"],
    cooldown: ["cooldown", "info"],
    degraded: ["degraded", "warn"],
    market_invalid: ["market invalid", "bad"],
    alert_failed: ["alert failed", "bad"],
    no_buy: ["no buy yet", "dim"],
  };

  function tokenCell(row) {
    const td = el("td", "c-token");
    const top = el("div", "sym");
    const a = el("a", "symbol", row.symbol ? "$" + row.symbol : row.token.slice(0, 6) + "…");
    a.href = "https://dexscreener.com/" + encodeURIComponent(row.chain || "solana") + "/" + encodeURIComponent(row.token);
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    top.appendChild(a);
    if (row.market && row.market.price !== null) top.appendChild(el("span", "dim small", " " + price(row.market.price)));
    td.appendChild(top);
    const name = el("div", "name", row.name || "");
    name.title = row.name || "";
    name.dir = "auto";
    td.appendChild(name);
    const addr = el("div", "addr", row.token.slice(0, 4) + "…" + row.token.slice(-4));
    addr.title = row.token;
    td.appendChild(addr);
    return td;
  }

  function groupsCell(row) {
    const td = el("td", "c-groups");
    td.appendChild(el("div", "count", row.groups));
    const tier = el("div", "tier t" + Math.max(-1, Math.min(2, row.tier_points)), points(row.tier_points));
    tier.title = "consensus tier points for " + row.groups + " group(s)";
    td.appendChild(tier);
    return td;
  }

  function callsCell(row, now, windowS) {
    const td = el("td", "c-calls");
    const live = row.calls.filter((c) => c.ts + windowS > now);
    if (!live.length) td.appendChild(el("span", "dim", row.groups ? "" : "no call in the window"));
    for (const c of live) {
      const call = el("div", "call");
      const g = el("span", "group", c.group);
      g.title = c.group;
      g.dir = "auto";
      call.appendChild(g);
      call.appendChild(el("span", "age", span(now - c.ts) + " ago"));
      const bar = el("span", "bar");
      const fill = el("span", "fill");
      const left = Math.max(0, c.ts + windowS - now);
      const share = Math.min(1, left / windowS);
      fill.style.width = (100 * share).toFixed(1) + "%";
      if (share < 0.1) fill.classList.add("ending");
      else if (share < 0.25) fill.classList.add("late");
      bar.appendChild(fill);
      bar.title = span(left) + " left in the window";
      call.appendChild(bar);
      call.appendChild(el("span", "left", span(left)));
      if (c.weight !== null && c.weight !== undefined) {
        const w = "w" + c.weight.toFixed(2) + (c.discount ? " −" + Math.round(c.discount * 100) + "%" : "");
        call.appendChild(el("span", "weight", w));
      }
      td.appendChild(call);
    }
    return td;
  }

  function moneyCell(row) {
    const td = el("td", "c-money");
    const m = row.smart_money;
    if (!m) {
      td.appendChild(el("span", "dim", "–"));
      return td;
    }
    td.appendChild(el("div", "buy", usd(m.usd) + (m.buys > 1 ? " ×" + m.buys : "")));
    const who = el("div", "who", m.label || m.wallet);
    who.title = m.wallet;
    td.appendChild(who);
    return td;
  }

  function scoreCell(row) {
    const td = el("td", "c-score");
    const s = row.score;
    if (!s) {
      td.appendChild(el("span", "dim", "–"));
      return td;
    }
    const total = el("div", "total" + (s.total >= state.snap.threshold ? " hot" : ""), s.total.toFixed(1));
    td.appendChild(total);
    td.appendChild(el("div", "parts", s.base.toFixed(1) + " " + points(s.consensus)));
    td.title = s.lines.map((l) => points(l.points) + " " + l.reason).join("\n");
    return td;
  }

  function whyCell(row) {
    const td = el("td", "c-why");
    const [label, cls] = STATUS[row.status] || [row.status, "muted"];
    td.appendChild(el("span", "tag " + cls, label));
    const why = el("div", "why", row.why);
    why.title = row.why;
    td.appendChild(why);
    return td;
  }

  const rowElements = new Map();

  function renderTokens(now) {
    const body = $("tokens");
    const windowS = state.snap.window_s;
    const rows = [...state.tokens.values()].sort(
      (a, b) => b.groups - a.groups || (b.score ? b.score.total : -1) - (a.score ? a.score.total : -1) || b.updated - a.updated,
    );
    // Rows are kept per token and refilled in place (and moved into order), so a row the
    // trader is looking at stays the same element across renders.
    const keep = new Set(rows.map((r) => r.token));
    for (const [token, tr] of rowElements) {
      if (!keep.has(token)) {
        tr.remove();
        rowElements.delete(token);
      }
    }
    for (const row of rows) {
      let tr = rowElements.get(row.token);
      if (!tr) {
        tr = el("tr");
        tr.dataset.token = row.token;
        rowElements.set(row.token, tr);
      }
      tr.className = "s-" + row.status;
      tr.replaceChildren(tokenCell(row), groupsCell(row), callsCell(row, now, windowS), moneyCell(row), scoreCell(row), whyCell(row));
      body.appendChild(tr);
    }
    $("tokens-empty").hidden = rows.length > 0;
    $("token-count").textContent = rows.length ? rows.length + " active" : "";
  }

  function renderAlerts(now) {
    const horizons = state.snap.horizons;
    const head = $("alerts-head");
    clear(head);
    for (const h of ["time", "token", "score", "entry", "live", ...horizons.map((x) => "+" + x)]) head.appendChild(el("th", "", h));
    const body = $("alerts");
    clear(body);
    let outcomes = false;
    for (const a of state.alerts) {
      const tr = el("tr");
      tr.dataset.key = a.key;
      const t = el("td", "mono", clock(a.at).slice(0, 5));
      t.title = clock(a.at) + " · " + span(now - a.at) + " ago";
      tr.appendChild(t);
      const tok = el("td", "sym", "$" + a.symbol);
      tok.title = a.name + "\n" + a.token + "\n" + a.reason;
      tr.appendChild(tok);
      const sc = el("td", "score-cell", a.score.toFixed(1));
      sc.appendChild(el("span", "dim small", " " + a.base.toFixed(1) + points(a.consensus)));
      sc.title = "score " + a.score.toFixed(1) + " = base " + a.base.toFixed(1) + " " + points(a.consensus) + " consensus";
      tr.appendChild(sc);
      tr.appendChild(el("td", "mono", price(a.entry)));
      const mult = el("td", "mono mult", a.multiple === null ? "–" : "×" + a.multiple.toFixed(2));
      if (a.multiple !== null) mult.classList.add(a.multiple >= 1 ? "up" : "down");
      tr.appendChild(mult);
      for (const h of horizons) {
        const v = a.outcomes ? a.outcomes[h] : null;
        if (a.outcomes) outcomes = true;
        const td = el("td", "mono out", v === null || v === undefined ? "·" : "×" + v.toFixed(1));
        td.title = "+" + h + ": " + (v === null || v === undefined ? "not resolved yet" : "×" + v.toFixed(3));
        if (v !== null && v !== undefined) td.classList.add(v >= 1 ? "up" : "down");
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    $("alerts-empty").hidden = state.alerts.length > 0;
    $("outcomes-note").textContent = state.snap.outcomes_available
      ? outcomes || !state.alerts.length ? "" : "no outcomes yet"
      : "outcomes not available (no history)";
  }

  function whisker(rows, label) {
    // Drawn in CSS pixels at the panel's width, so the text keeps the page's size.
    const W = 560, ROW = 20, PAD = 110, H = rows.length * ROW + 18;
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "whiskers", role: "img" });
    const x = (f) => PAD + f * (W - PAD - 96);
    for (const f of [0, 0.25, 0.5, 0.75, 1]) {
      s.appendChild(svg("line", { x1: x(f), x2: x(f), y1: 0, y2: H - 14, class: "grid" }));
      const t = svg("text", { x: x(f), y: H - 2, class: "axis", "text-anchor": "middle" });
      t.textContent = Math.round(f * 100) + "%";
      s.appendChild(t);
    }
    rows.forEach((r, i) => {
      const y = i * ROW + 12;
      const name = svg("text", { x: PAD - 6, y: y + 4, class: "label", "text-anchor": "end" });
      name.textContent = label(r);
      s.appendChild(name);
      s.appendChild(svg("line", { x1: x(r.low), x2: x(r.high), y1: y, y2: y, class: "ci" }));
      for (const e of [r.low, r.high]) s.appendChild(svg("line", { x1: x(e), x2: x(e), y1: y - 5, y2: y + 5, class: "ci" }));
      if (r.rate !== null) s.appendChild(svg("circle", { cx: x(r.rate), cy: y, r: 4, class: "dot" }));
      const n = svg("text", { x: W - 88, y: y + 4, class: "n" });
      n.textContent = (r.rate === null ? "–" : pct(r.rate)) + "  n=" + r.n;
      s.appendChild(n);
    });
    return s;
  }

  function renderScoreboard() {
    const box = $("scoreboard");
    clear(box);
    const sb = state.snap.scoreboard;
    if (!sb.available) {
      box.appendChild(el("p", "empty", "Not available: needs the outcomes report (history)."));
      return;
    }
    if (!sb.rows.length) {
      box.appendChild(el("p", "empty", "No outcomes yet."));
      return;
    }
    box.appendChild(whisker(sb.rows, (r) => (r.level === "0" ? "solo" : r.level + (r.level === "1" ? " grp" : " grps"))));
  }

  function renderGroups() {
    const box = $("groups");
    clear(box);
    const g = state.snap.groups;
    if (!g.available) {
      box.appendChild(el("p", "empty", "Not available: needs the history's group statistics."));
      return;
    }
    if (!g.leaderboard.length && !g.copies.length) {
      box.appendChild(el("p", "empty", "No group statistics yet."));
      return;
    }
    if (g.leaderboard.length) {
      box.appendChild(whisker(g.leaderboard.slice(0, 12), (r) => (r.group.length > 16 ? r.group.slice(0, 15) + "…" : r.group)));
    }
    if (g.copies.length) {
      const t = el("table", "copies");
      const h = el("tr");
      for (const c of ["leader", "", "follower", "n", "lag"]) h.appendChild(el("th", "", c));
      t.appendChild(h);
      for (const c of g.copies.slice(0, 10)) {
        const tr = el("tr");
        tr.append(el("td", "", c.leader), el("td", "dim", "→"), el("td", "", c.follower), el("td", "mono", c.n), el("td", "mono", span(c.lag_s)));
        t.appendChild(tr);
      }
      box.appendChild(t);
    }
  }

  function renderHealth() {
    const h = state.snap.health;
    const list = $("health");
    clear(list);
    const pill = $("ready");
    if (!h.available) {
      list.appendChild(el("li", "dim", "not available"));
      pill.textContent = "health –";
      pill.className = "pill";
      return;
    }
    pill.textContent = h.ready ? "ready" : "not ready";
    pill.className = "pill " + (h.ready ? "ok" : "warn");
    if (h.ready) list.appendChild(el("li", "ok-text", "ready: every service reports healthy"));
    for (const r of h.reasons) list.appendChild(el("li", "warn-text", r));
  }

  function renderHeader(now) {
    const s = state.snap;
    $("window").textContent = span(s.window_s);
    $("threshold").textContent = s.threshold.toFixed(1);
    $("tiers").textContent = s.tiers
      .slice()
      .sort((a, b) => b.min_groups - a.min_groups)
      .map((t) => (t.min_groups === 0 ? "solo" : t.min_groups + "+") + " " + points(t.points))
      .join(" · ");
    $("clock").textContent = clock(now) + (state.rate !== 1 ? " (" + state.rate + "×)" : "");
  }

  function render() {
    if (!state.snap) return;
    const now = serverNow();
    renderHeader(now);
    if (state.dirty) {
      renderAlerts(now);
      renderScoreboard();
      renderGroups();
      renderHealth();
      state.dirty = false;
    }
    renderTokens(now);
  }

  // -- state changes ------------------------------------------------------------------------

  function tierPoints(groups) {
    // The highest tier whose min_groups is at most groups (scoring.tier_points).
    let best = null;
    for (const t of state.snap.tiers) if (t.min_groups <= groups && (!best || t.min_groups > best.min_groups)) best = t;
    return best ? best.points : 0;
  }

  function takeSnapshot(snap) {
    state.snap = snap;
    state.tokens = new Map(snap.tokens.map((r) => [r.token, r]));
    state.alerts = snap.alerts;
    state.lastId = snap.last_event_id;
    setNow(snap.now, snap.rate);
    state.dirty = true;
    render();
  }

  function apply(kind, data) {
    setNow(data.now, data.rate);
    switch (kind) {
      case "token":
        state.tokens.set(data.token.token, data.token);
        break;
      case "call": {
        // One more call on a row this page has: update it here rather than resend the row.
        const row = state.tokens.get(data.token);
        if (!row) break;
        const i = row.calls.findIndex((c) => c.group === data.call.group);
        if (i >= 0) row.calls[i] = data.call;
        else row.calls.push(data.call);
        row.calls.sort((a, b) => a.ts - b.ts);
        const live = row.calls.filter((c) => c.ts + state.snap.window_s > data.now).length;
        row.groups = live;
        row.tier_points = tierPoints(live);
        row.updated = Math.max(row.updated, data.at);
        break;
      }
      case "token_removed":
        state.tokens.delete(data.token);
        break;
      case "alert": {
        const i = state.alerts.findIndex((a) => a.key === data.alert.key);
        if (i >= 0) state.alerts[i] = data.alert;
        else state.alerts.unshift(data.alert);
        state.dirty = true;
        break;
      }
      case "health":
        state.snap.health = data.health;
        state.dirty = true;
        break;
      case "scoreboard":
        state.snap.scoreboard = data.scoreboard;
        state.dirty = true;
        break;
      case "groups":
        state.snap.groups = data.groups;
        state.dirty = true;
        break;
      default:
        break; // "tick": the clock only
    }
    scheduleRender();
  }

  let renderPending = false;
  function scheduleRender() {
    if (renderPending) return;
    renderPending = true;
    // Coalesce bursts of events into one render per frame.
    requestAnimationFrame(() => {
      renderPending = false;
      render();
    });
  }

  // -- network ------------------------------------------------------------------------------

  async function loadSnapshot() {
    const resp = await fetch("/api/dash/snapshot", { headers: headers(), cache: "no-store" });
    if (resp.status === 401) throw new Error("token");
    if (!resp.ok) throw new Error("snapshot " + resp.status);
    takeSnapshot(await resp.json());
  }

  async function onFrame(frame) {
    if (frame.retry !== null) state.retryMs = frame.retry;
    if (frame.data === null) return;
    if (frame.event === "reset") {
      await loadSnapshot();
      return;
    }
    if (frame.id !== null) {
      const id = Number(frame.id);
      if (state.lastId !== null && id <= state.lastId) return; // already in the snapshot
      state.lastId = id;
    }
    apply(frame.event || "message", JSON.parse(frame.data));
  }

  function parseBlock(block) {
    const frame = { id: null, event: null, data: null, retry: null };
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? "" : line.slice(i + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "id") frame.id = value;
      else if (field === "event") frame.event = value;
      else if (field === "data") frame.data = frame.data === null ? value : frame.data + "\n" + value;
      else if (field === "retry" && /^\d+$/.test(value)) frame.retry = Number(value);
    }
    return frame;
  }

  async function stream() {
    const extra = { Accept: "text/event-stream" };
    if (state.lastId !== null) extra["Last-Event-ID"] = String(state.lastId);
    const resp = await fetch("/api/dash/events", { headers: headers(extra), cache: "no-store" });
    if (resp.status === 401) throw new Error("token");
    if (resp.status === 503) throw new Error("busy");
    if (!resp.ok || !resp.body) throw new Error("events " + resp.status);
    conn("live", "ok");
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        await onFrame(parseBlock(block));
      }
    }
  }

  const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function main() {
    for (;;) {
      try {
        if (state.snap === null) await loadSnapshot();
        await stream();
        conn("reconnecting…", "warn");
      } catch (err) {
        const why = String(err && err.message);
        if (why === "token") {
          conn(token ? "token rejected" : "token required: open /dash#token=…", "bad");
          return;
        }
        conn(why === "busy" ? "too many viewers; retrying…" : "offline; retrying…", "warn");
        await wait(why === "busy" ? 10000 : state.retryMs);
        continue;
      }
      await wait(state.retryMs);
    }
  }

  setInterval(render, 1000); // ages and time left move between events
  main();
})();
