// The Faultline error dashboard. The KFL query lives in the URL (?q=…) so a view can be bookmarked and
// shared; the table is filled from /api/entries and kept live by the /api/entries/stream event stream.
// Everything the server sends is inserted as text, never as HTML: entries carry attacker-chosen strings.
"use strict";

const MAX_ROWS = 500;
const TOKEN_KEY = "faultline.token";
const $ = (id) => document.getElementById(id);

const state = { query: "", counts: {}, total: 0, stream: null, selected: null, view: "table", wall: false,
                overviewTimer: null };
const OVERVIEW_MINUTES = 15;
const OVERVIEW_EVERY_MS = 5000;

// ---- access -------------------------------------------------------------------------------------------

// A token may arrive in the fragment (#token=…, never sent to servers); keep it and take it out of the URL.
function takeTokenFromFragment() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    localStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
}

function authHeaders() {
  const t = localStorage.getItem(TOKEN_KEY);
  return t ? { Authorization: "Bearer " + t } : {};
}

async function api(path) {
  const r = await fetch(path, { headers: authHeaders() });
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  return { status: r.status, body };
}

function notice(text) {
  $("notice").textContent = text || "";
  $("notice").hidden = !text;
}

// ---- rendering -----------------------------------------------------------------------------------------

function endpoint(ep) {
  if (!ep) return "";
  const where = ep.ip.includes(":") ? `[${ep.ip}]` : ep.ip;
  const addr = ep.port == null ? where : `${where}:${ep.port}`;
  return ep.name ? `${ep.namespace}/${ep.name}` : addr;
}

// What went wrong in a word or two; an entry with an error never reads as a success, even with a status.
function errorLabel(e) {
  if (e.grpc && e.error.type === "grpc") return `gRPC ${e.grpc.statusName || "no status"}`;
  if (e.http2) return `${e.http2.frame} ${e.http2.errorCode}`;
  if (e.tls) return `TLS ${e.tls.alert || "no ServerHello"}`;
  if (e.dns) return e.error.type === "pair-not-found" ? "DNS timeout" : `DNS ${e.dns.rcodeName || "error"}`;
  if (e.error.type === "redis") return `Redis ${e.redis.code}`;
  if (e.error.type === "postgresql") return `PostgreSQL ${e.postgresql.sqlstate}`;
  if (e.error.type === "mysql") return `MySQL ${e.mysql.code}`;
  if (e.error.type === "amqp") return `AMQP ${e.amqp.replyCode}`;
  if (e.error.type === "kafka") return `Kafka ${e.kafka.errorName}`;
  if (e.error.type === "pair-not-found") return e.error.msg.startsWith("late") ? "late response" : "half connection";
  if (e.error.type === "dissection") return e.error.msg.startsWith("unexpected EOF") ? "unexpected EOF" : "parser error";
  return e.error.type;
}

function statusOf(e) {
  if (e.tcp) return { text: e.tcp.state + (e.tcp.reason ? ` (${e.tcp.reason})` : ""), cls: "bad" };
  if (e.icmp) return { text: `${e.icmp.typeName}/${e.icmp.codeName}`, cls: "bad" };
  if (e.error) {
    const status = e.response && !e.dns ? `${e.response.status} · ` : "";
    return { text: status + errorLabel(e), cls: "bad" };
  }
  if (e.dns) return { text: e.dns.rcodeName || "", cls: "" };
  if (e.response) return { text: String(e.response.status), cls: e.response.status >= 500 ? "bad" : e.response.status >= 400 ? "warn" : "" };
  return { text: "", cls: "" };
}

function cell(text, cls, full) {
  const td = document.createElement("td");
  td.textContent = text;
  td.title = full || text;  // cut with an ellipsis when long: the whole text on hover
  if (cls) td.className = cls;
  return td;
}

function row(e, fresh) {
  const tr = document.createElement("tr");
  tr.dataset.id = e.id;
  if (fresh) tr.className = "fresh";
  const st = statusOf(e);
  const time = e.timestamp.replace(/^.*T/, "").replace(/\.(\d{3})\d*Z$/, ".$1");
  tr.append(cell(time, "", e.timestamp), cell(e.node || ""), cell(e.protocol), cell(`${endpoint(e.src)} → ${endpoint(e.dst)}`),
            cell(st.text, st.cls), cell(e.cause ? e.cause.reason : "", "cause", e.cause ? e.cause.message : ""),
            cell(e.summary, "summary"));
  tr.addEventListener("click", () => openDetail(e.id));
  return tr;
}

function renderCounts() {
  const ul = $("counts");
  ul.replaceChildren();
  const kinds = Object.entries(state.counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  for (const [kind, n] of kinds) {
    const li = document.createElement("li");
    li.dataset.kind = kind;
    const k = document.createElement("span");
    k.textContent = kind;
    const c = document.createElement("span");
    c.className = "n";
    c.textContent = n;
    li.append(k, c);
    li.title = `show only ${kind}`;
    li.addEventListener("click", () => refine(`kind == ${JSON.stringify(kind)}`));
    ul.append(li);
  }
  $("total").textContent = `(${state.total})`;
  $("empty").hidden = state.total > 0;
}

function showQueryError(body) {
  const box = $("query-error");
  if (!body) { box.hidden = true; return; }
  const col = Math.max(1, body.column || 1);
  box.textContent = `${state.query}\n${" ".repeat(col - 1)}^ ${body.error}`;
  box.hidden = false;
}

// ---- loading -------------------------------------------------------------------------------------------

async function load() {
  stopStream();
  $("q").value = state.query;
  const r = await api(`/api/entries?limit=${MAX_ROWS}&q=${encodeURIComponent(state.query)}`);
  const tbody = document.querySelector("#entries tbody");
  if (r.status === 400) {
    showQueryError(r.body);
    tbody.replaceChildren();
    state.counts = {}; state.total = 0; renderCounts();
    return;
  }
  showQueryError(null);
  if (r.status === 401) {
    notice("Sign in with a token to see entries (button “Token”).");
    return;
  }
  if (r.status !== 200) {
    notice(`The operator answered ${r.status}: ${(r.body && r.body.error) || ""}`);
    return;
  }
  notice(null);
  tbody.replaceChildren(...r.body.entries.map((e) => row(e, false)));
  state.counts = r.body.counts;
  state.total = r.body.total;
  renderCounts();
  startStream();
}

async function loadViews() {
  const r = await api("/api/errorviews");
  const ul = $("views");
  ul.replaceChildren();
  if (r.status !== 200) return;
  for (const v of r.body) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = "/?q=" + encodeURIComponent(v.query);
    a.textContent = `${v.namespace}/${v.name}`;
    a.title = v.query;
    a.addEventListener("click", (ev) => { ev.preventDefault(); apply(v.query); });
    const n = document.createElement("span");
    n.className = "n";
    n.textContent = v.matched;
    li.append(a, n);
    ul.append(li);
  }
}

// ---- live updates --------------------------------------------------------------------------------------

function stopStream() {
  if (state.stream) state.stream.abort();
  state.stream = null;
  $("live").textContent = "paused";
  $("live").classList.remove("on");
}

function added(e) {
  const tbody = document.querySelector("#entries tbody");
  tbody.prepend(row(e, true));
  while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(-1);
  state.counts[e.kind] = (state.counts[e.kind] || 0) + 1;
  state.total += 1;
  renderCounts();
}

// Server-sent events read with fetch, so that the token travels in a header rather than the URL.
async function startStream() {
  const ctl = new AbortController();
  state.stream = ctl;
  const url = `/api/entries/stream?q=${encodeURIComponent(state.query)}`;
  try {
    const r = await fetch(url, { headers: authHeaders(), signal: ctl.signal });
    if (r.status !== 200) throw new Error(`stream answered ${r.status}`);
    $("live").textContent = "live";
    $("live").classList.add("on");
    const reader = r.body.getReader();
    const text = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += text.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const msg = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const data = msg.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart());
        if (msg.includes("event: entry") && data.length) added(JSON.parse(data.join("\n")));
        // The page fell so far behind that the operator overwrote entries before it could send them:
        // reload the listing rather than show a table with a silent hole.
        if (msg.includes("event: dropped")) {
          $("live").textContent = `missed ${data.join("")}; reloading`;
          setTimeout(() => { if (state.stream === ctl) load(); }, 0);
          return;
        }
      }
    }
  } catch (err) {
    if (ctl.signal.aborted) return;
  }
  if (state.stream === ctl) {
    $("live").textContent = "reconnecting";
    $("live").classList.remove("on");
    setTimeout(() => { if (state.stream === ctl) load(); }, 2000);
  }
}

// ---- detail --------------------------------------------------------------------------------------------

function fact(dl, name, value) {
  if (value == null || value === "") return;
  const dt = document.createElement("dt");
  dt.textContent = name;
  const dd = document.createElement("dd");
  dd.textContent = value;
  dl.append(dt, dd);
}

async function openDetail(id) {
  const r = await api(`/api/entries/${encodeURIComponent(id)}`);
  if (r.status !== 200) { notice(`Entry ${id}: ${(r.body && r.body.error) || r.status}`); return; }
  const e = r.body;
  state.selected = e;
  for (const tr of document.querySelectorAll("#entries tbody tr")) tr.classList.toggle("selected", tr.dataset.id === id);
  $("detail-title").textContent = e.summary;
  const dl = $("detail-facts");
  dl.replaceChildren();
  fact(dl, "id", e.id);
  fact(dl, "kind", e.kind);
  fact(dl, "time", e.timestamp);
  fact(dl, "node", e.node);
  fact(dl, "source", endpoint(e.src));
  fact(dl, "destination", endpoint(e.dst));
  if (e.src.workload || e.dst.workload) fact(dl, "workloads", `${e.src.workload || "—"} → ${e.dst.workload || "—"}`);
  fact(dl, "elapsed", `${e.elapsedTime} ms`);
  if (e.error) fact(dl, "error", `${e.error.type}: ${e.error.msg}`);
  if (e.cause) {
    fact(dl, "cause", `${e.cause.reason}: ${e.cause.message}`);
    if (e.cause.objects && e.cause.objects.length) {
      fact(dl, "objects", e.cause.objects.map((o) => `${o.kind} ${o.namespace ? o.namespace + "/" : ""}${o.name}`).join(", "));
    }
    if (e.cause.evidence && e.cause.evidence.length) fact(dl, "evidence", e.cause.evidence.join("; "));
  }
  if (e.tcp) fact(dl, "tcp", [e.tcp.state, e.tcp.reason, e.tcp.by && `by ${e.tcp.by}`].filter(Boolean).join(", "));
  if (e.icmp) {
    fact(dl, "icmp", `v${e.icmp.version} type ${e.icmp.type} code ${e.icmp.code}: ${e.icmp.typeName}/${e.icmp.codeName}`);
    const o = e.icmp.original;
    if (o) fact(dl, "original flow", `${o.protocol} ${endpoint(o.src)} → ${endpoint(o.dst)}`);
    if (e.icmp.mtu != null) fact(dl, "mtu", e.icmp.mtu);
  }
  if (e.dns) {
    fact(dl, "dns", `${e.dns.question.name} ${e.dns.question.type} (id ${e.dns.id})`);
    fact(dl, "rcode", e.dns.rcodeName);
    if (e.dns.answers && e.dns.answers.length) fact(dl, "answers", e.dns.answers.join(", "));
  }
  if (e.tls) fact(dl, "tls", [e.tls.sni, e.tls.version, e.tls.alert, e.tls.by && `by ${e.tls.by}`].filter(Boolean).join(", "));
  if (e.grpc) {
    fact(dl, "grpc", `${e.grpc.service}/${e.grpc.method}`);
    if (e.grpc.statusName) fact(dl, "grpc status", `${e.grpc.status} ${e.grpc.statusName}` + (e.grpc.message ? `: ${e.grpc.message}` : ""));
  }
  if (e.http2) fact(dl, "http2", `${e.http2.frame} ${e.http2.errorCode} by ${e.http2.by} (stream ${e.http2.stream})`);
  if (e.redis) fact(dl, "redis", [e.redis.command, e.redis.reply && `→ ${e.redis.reply}`, e.redis.code].filter(Boolean).join(" "));
  if (e.postgresql) fact(dl, "postgresql", [e.postgresql.command, e.postgresql.query, e.postgresql.sqlstate && `(${e.postgresql.severity} ${e.postgresql.sqlstate})`].filter(Boolean).join(" "));
  if (e.mysql) fact(dl, "mysql", [e.mysql.command, e.mysql.query, e.mysql.code && `(${e.mysql.code}${e.mysql.sqlstate ? " " + e.mysql.sqlstate : ""})`].filter(Boolean).join(" "));
  if (e.amqp) fact(dl, "amqp", [e.amqp.method, `channel ${e.amqp.channel}`, e.amqp.replyCode && `${e.amqp.replyCode} ${e.amqp.replyText || ""}`].filter(Boolean).join(", "));
  if (e.kafka) fact(dl, "kafka", [`${e.kafka.api} v${e.kafka.apiVersion}`, e.kafka.clientId && `client ${e.kafka.clientId}`, e.kafka.errorName && `${e.kafka.errorName}${e.kafka.topic ? ` on ${e.kafka.topic}${e.kafka.partition != null ? "-" + e.kafka.partition : ""}` : ""}`].filter(Boolean).join(", "));
  if (e.request) fact(dl, "request", `${e.request.method} ${e.request.path}`);
  if (e.response) fact(dl, "response", `${e.response.status} ${e.response.statusText || ""}`);
  $("pcap").hidden = !e.pcap;
  $("detail-json").textContent = JSON.stringify(e, null, 2);
  $("detail").hidden = false;
}

// The recording needs the token too, so it is fetched and handed to the browser as a file.
async function downloadPcap() {
  const e = state.selected;
  if (!e) return;
  const r = await fetch(`/api/entries/${encodeURIComponent(e.id)}/pcap`, { headers: authHeaders() });
  if (r.status !== 200) { notice(`pcap: ${r.status} ${await r.text()}`); return; }
  const a = document.createElement("a");
  a.href = URL.createObjectURL(await r.blob());
  a.download = `${e.id}.pcap`;
  a.click();
  URL.revokeObjectURL(a.href);
}

// ---- the wall screen: errors over time by kind, the top failing pairs ------------------------------------

// A colour per kind, the same on every refresh (a hash of the name into a palette).
const PALETTE = ["#ff6b6b", "#f4b942", "#58a6ff", "#5ccf8a", "#c678dd", "#56b6c2", "#e5c07b", "#ff9e64",
                 "#9ece6a", "#7aa2f7", "#f7768e", "#bb9af7"];
function colour(kind) {
  let h = 0;
  for (const ch of kind) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function renderOverview(o) {
  // Stacked bars, one per minute; the tallest minute fills the height.
  const w = 100, h = 40, n = o.buckets.length;
  const max = Math.max(1, ...o.buckets.map((b) => Object.values(b.counts).reduce((a, c) => a + c, 0)));
  const chart = svg("svg", { viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: "none", role: "img",
                             "aria-label": `errors per minute, last ${n} minutes` });
  o.buckets.forEach((b, i) => {
    let y = h;
    for (const [kind, c] of Object.entries(b.counts)) {
      const bh = (c / max) * h;
      y -= bh;
      const rect = svg("rect", { x: (i * w) / n + 0.1, y, width: w / n - 0.2, height: bh, fill: colour(kind) });
      rect.dataset.kind = kind;
      rect.dataset.count = c;
      const title = svg("title", {});
      title.textContent = `${b.start.slice(11, 16)} ${kind}: ${c}`;
      rect.append(title);
      chart.append(rect);
    }
  });
  $("chart").replaceChildren(chart);
  const legend = $("legend");
  legend.replaceChildren();
  for (const [kind, c] of Object.entries(o.kinds).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))) {
    const li = document.createElement("li");
    li.dataset.kind = kind;
    li.title = `show only ${kind}`;
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = colour(kind);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = kind;
    const count = document.createElement("span");
    count.className = "n";
    count.textContent = c;
    li.append(sw, name, count);
    li.addEventListener("click", () => refine(`kind == ${JSON.stringify(kind)}`));
    legend.append(li);
  }
  $("overview-total").textContent = `— ${o.total} in the last ${n} minutes`;
  const pairs = $("pairs");
  pairs.replaceChildren();
  for (const p of o.pairs) {
    const li = document.createElement("li");
    li.dataset.query = p.query;
    const text = document.createElement("span");
    text.className = "name";
    text.textContent = `${p.source} → ${p.destination}`;
    text.title = text.textContent;
    const count = document.createElement("span");
    count.className = "n";
    count.textContent = p.count;
    li.append(text, count);
    li.addEventListener("click", () => refine(p.query));
    pairs.append(li);
  }
}

async function loadOverview() {
  if (!state.wall) return;
  const r = await api(`/api/overview?minutes=${OVERVIEW_MINUTES}&q=${encodeURIComponent(state.query)}`);
  if (r.status === 200) renderOverview(r.body);
}

function showView() {
  state.wall = state.view === "wall";
  document.body.classList.toggle("wall", state.wall);
  $("overview").hidden = !state.wall;
  $("error-map").hidden = state.view !== "map";
  $("wall-toggle").textContent = state.wall ? "Table" : "Wall";
  $("map-toggle").textContent = state.view === "map" ? "Table" : "Map";
  clearInterval(state.overviewTimer);
  if (state.wall) {
    loadOverview();
    state.overviewTimer = setInterval(loadOverview, OVERVIEW_EVERY_MS);
  } else if (state.view === "map") {
    loadMap();
    state.overviewTimer = setInterval(loadMap, OVERVIEW_EVERY_MS);
  }
}

// ---- the error map: workloads by namespace, an edge per failing pair --------------------------------------

function shortName(id) {
  const parts = id.split("/");
  return parts[parts.length - 1];
}

function renderMap(m) {
  const cols = Math.max(1, m.namespaces.length);
  const rows = Math.max(1, ...m.namespaces.map((n) => n.nodes.length));
  const W = 1000, colW = W / cols, top = 40, rowH = 90, H = top + rows * rowH + 20;
  const at = {};
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "error map" });
  const defs = svg("defs", {});
  chart.append(defs);
  m.namespaces.forEach((ns, i) => {
    const g = svg("g", { class: "ns" });
    g.dataset.namespace = ns.name;
    g.append(svg("rect", { x: i * colW + 6, y: 6, width: colW - 12, height: H - 12, rx: 8 }));
    const label = svg("text", { x: i * colW + colW / 2, y: 26, "text-anchor": "middle" });
    label.textContent = ns.name || "outside the cluster";
    g.append(label);
    chart.append(g);
    ns.nodes.forEach((id, j) => {
      const x = i * colW + colW / 2, y = top + j * rowH + rowH / 2;
      at[id] = { x, y };
      const node = svg("g", { class: "node" });
      node.dataset.id = id;
      node.append(svg("circle", { cx: x, cy: y, r: 7 }));
      const t = svg("text", { x, y: y + 22, "text-anchor": "middle" });
      const name = shortName(id);
      t.textContent = name.length > 22 ? name.slice(0, 21) + "…" : name;
      const title = svg("title", {});
      title.textContent = id;
      node.append(title, t);
      chart.append(node);
    });
  });
  const legend = {};
  for (const e of m.edges) {
    const a = at[e.source], b = at[e.destination];
    if (!a || !b) continue;
    const label = e.cause || e.topKind;
    const c = colour(label);
    legend[label] = c;
    const marker = `arrow-${c.slice(1)}`;
    if (!defs.querySelector(`#${marker}`)) {
      // Sized in the map's units, not the stroke's: a wide edge keeps a readable arrowhead.
      const mk = svg("marker", { id: marker, viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 12,
                                 markerHeight: 12, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" });
      mk.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: c }));
      defs.append(mk);
    }
    // A curve bent to one side, so a pair each way draws two edges; a pair of one end loops.
    let d;
    if (e.source === e.destination) {
      d = `M ${a.x - 6} ${a.y - 6} C ${a.x - 40} ${a.y - 50}, ${a.x + 40} ${a.y - 50}, ${a.x + 6} ${a.y - 6}`;
    } else {
      const mx = (a.x + b.x) / 2, my = (a.y + b.y) / 2, dx = b.x - a.x, dy = b.y - a.y;
      const len = Math.hypot(dx, dy) || 1, bend = Math.min(60, len / 4);
      const cx = mx - (dy / len) * bend, cy = my + (dx / len) * bend;
      const ex = b.x - (dx / len) * 9, ey = b.y - (dy / len) * 9;
      d = `M ${a.x} ${a.y} Q ${cx} ${cy} ${ex} ${ey}`;
    }
    const path = svg("path", { class: "edge", d, stroke: c, "stroke-width": 1.5 + 2 * Math.log2(e.count),
                               "marker-end": `url(#${marker})` });
    path.dataset.source = e.source;
    path.dataset.destination = e.destination;
    path.dataset.count = e.count;
    path.dataset.query = e.query;
    const title = svg("title", {});
    const kinds = Object.entries(e.kinds).map(([k, n]) => `${k} ${n}`).join(", ");
    title.textContent = `${e.source} → ${e.destination}: ${e.count} (${kinds})` + (e.cause ? `, ${e.cause}` : "");
    path.append(title);
    path.addEventListener("click", () => refine(e.query));
    chart.append(path);
  }
  $("map").replaceChildren(chart);
  const ul = $("map-legend");
  ul.replaceChildren();
  for (const [label, c] of Object.entries(legend).sort()) {
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = c;
    li.append(sw, document.createTextNode(label));
    ul.append(li);
  }
  const more = m.omittedEdges ? ` (${m.omittedEdges} more pairs with ${m.omittedErrors} errors not drawn)` : "";
  $("map-total").textContent = `— ${m.total} errors, ${m.edges.length} pairs, last ${OVERVIEW_MINUTES} minutes${more}`;
}

async function loadMap() {
  if (state.view !== "map") return;
  const r = await api(`/api/map?minutes=${OVERVIEW_MINUTES}&q=${encodeURIComponent(state.query)}`);
  if (r.status === 200) renderMap(r.body);
}

// ---- wiring --------------------------------------------------------------------------------------------

function urlFor(q, view) {
  const p = new URLSearchParams();
  if (q) p.set("q", q);
  if (view && view !== "table") p.set("view", view);
  const s = p.toString().replace(/\+/g, "%20");
  return s ? "/?" + s : "/";
}

function apply(q) {
  state.query = q.trim();
  const url = urlFor(state.query, state.view);
  if (location.pathname + location.search !== url) history.pushState(null, "", url);
  load();
  loadOverview();
  loadMap();
}

// Narrows the current query with `expr` (a clicked count or pair).
function refine(expr) {
  apply(state.query ? `(${state.query}) and ${expr}` : expr);
}

function fromUrl() {
  const p = new URLSearchParams(location.search);
  state.query = p.get("q") || "";
  state.view = ["wall", "map"].includes(p.get("view")) ? p.get("view") : "table";
  showView();
  load();
}

$("query-form").addEventListener("submit", (ev) => { ev.preventDefault(); apply($("q").value); });
$("close-detail").addEventListener("click", () => { $("detail").hidden = true; });
function toggle(view) {
  state.view = state.view === view ? "table" : view;
  history.pushState(null, "", urlFor(state.query, state.view));
  showView();
}
$("wall-toggle").addEventListener("click", () => toggle("wall"));
$("map-toggle").addEventListener("click", () => toggle("map"));
$("pcap").addEventListener("click", downloadPcap);
$("sign-in").addEventListener("click", () => $("token-dialog").showModal());
$("token-form").addEventListener("submit", (ev) => {
  const how = ev.submitter && ev.submitter.value;
  if (how === "clear") localStorage.removeItem(TOKEN_KEY);
  else if ($("token").value.trim()) localStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  loadViews();
  load();
});
window.addEventListener("popstate", fromUrl);

takeTokenFromFragment();
loadViews();
fromUrl();
