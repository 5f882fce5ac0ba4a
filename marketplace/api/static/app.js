// The CONA dashboard: reads the public API only; live updates come from /v1/events (SSE).
"use strict";

const CLASSES = { 1: "CPU", 2: "GPU", 3: "NPU", 4: "TPU" };
const SVGNS = "http://www.w3.org/2000/svg";
const state = { orders: new Map(), topology: null, lastTs: 0, events: null };

const $ = (sel) => document.querySelector(sel);
function el(tag, attrs = {}, ...kids) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVGNS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v; else if (v !== null && v !== undefined) e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}
const short = (a) => (a ? a.slice(0, 6) + "…" + a.slice(-4) : "—");
const eth = (wei) => { const v = Number(BigInt(wei || "0") / 10n ** 9n) / 1e9; return v.toPrecision(4); };
const loadColour = (x) => `hsl(${Math.round(130 * (1 - Math.min(1, Math.max(0, x))))},70%,45%)`;
async function getJSON(url) {
  const r = await fetch(url, { headers: { accept: "application/json" } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error(body.detail || r.statusText), { status: r.status, body });
  return body;
}

// ---------------------------------------------------------------- topology map

function drawMap(topo) {
  const svg = $("#map");
  svg.replaceChildren();
  const placed = topo.nodes.filter((n) => n.lat !== null && n.lon !== null);
  const pos = new Map();
  if (placed.length) {
    // equirectangular, x scaled by cos(mean latitude) so the map keeps its shape
    const meanLat = placed.reduce((s, n) => s + n.lat, 0) / placed.length;
    const k = Math.cos((meanLat * Math.PI) / 180);
    for (const n of placed) pos.set(n.id, [n.lon * k, -n.lat]);
  } else {
    topo.nodes.forEach((n, i) => {  // no coordinates: a circle
      const a = (2 * Math.PI * i) / topo.nodes.length;
      pos.set(n.id, [Math.cos(a) * 10, Math.sin(a) * 10]);
    });
  }
  const xs = [...pos.values()].map((p) => p[0]), ys = [...pos.values()].map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const pad = Math.max(x1 - x0, y1 - y0) * 0.06 || 1;
  svg.setAttribute("viewBox", `${x0 - pad} ${y0 - pad} ${x1 - x0 + 2 * pad} ${y1 - y0 + 2 * pad}`);
  svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
  const r = Math.max(x1 - x0, y1 - y0) / 180;
  const links = el("svg:g"), nodes = el("svg:g"), provs = el("svg:g"), labels = el("svg:g");
  for (const l of topo.links) {
    const a = pos.get(l.u), b = pos.get(l.v);
    if (!a || !b) continue;
    const line = el("svg:line", { x1: a[0], y1: a[1], x2: b[0], y2: b[1], class: "link" + (l.up ? "" : " down") });
    line.append(el("svg:title", { text: `${l.u}–${l.v}: ${l.latency_ms.toFixed(2)} ms` +
      (l.bandwidth_mbps ? `, ${l.bandwidth_mbps} Mbit/s` : "") }));
    links.append(line);
  }
  for (const n of topo.nodes) {
    const p = pos.get(n.id);
    if (!p) continue;
    const c = el("svg:circle", { cx: p[0], cy: p[1], r: r, class: "node", "data-node": n.id });
    c.append(el("svg:title", { text: `${n.label || n.id} (node ${n.id})` }));
    nodes.append(c);
  }
  const byNode = new Map();
  for (const pr of topo.providers) {
    if (pr.attachment === null || !pos.has(pr.attachment)) continue;
    if (!byNode.has(pr.attachment)) byNode.set(pr.attachment, []);
    byNode.get(pr.attachment).push(pr);
  }
  for (const [nid, list] of byNode) {
    const p = pos.get(nid);
    list.forEach((pr, i) => {
      const load = pr.load ?? 0;
      const c = el("svg:circle", { cx: p[0] + i * r * 2.4, cy: p[1], r: r * 2.2, class: "provider",
        fill: loadColour(load), "data-provider": pr.address, "data-load": load });
      c.append(el("svg:title", { text: `${pr.hostname || pr.address} at ${nid}: load ${(load * 100).toFixed(0)}%` }));
      provs.append(c);
    });
    const node = topo.nodes.find((n) => n.id === nid);
    labels.append(el("svg:text", { x: p[0] + r * 3, y: p[1] - r * 2.5, style: `font-size:${r * 5}px;stroke-width:${r}px`,
      text: node?.label || nid }));
  }
  svg.append(links, nodes, provs, labels);
  const unattached = topo.providers.filter((p) => p.attachment === null).length;
  $("#topo-summary").textContent = `${topo.name}: ${topo.nodes.length} nodes · ${topo.links.length} links · ` +
    `${topo.providers.length} providers`;
  $("#unattached").textContent = unattached ? `${unattached} registered provider(s) without an attachment (no LSA yet)` : "";
}

async function loadTopology() {
  try {
    state.topology = await getJSON("/v1/topology");
    drawMap(state.topology);
    $("#block").textContent = state.topology.block;
  } catch (e) {
    $("#topo-summary").textContent = e.status === 404 ? "no topology loaded" : `unavailable: ${e.message}`;
  }
}

// ---------------------------------------------------------------- providers' hardware

async function loadProviders() {
  const head = $("#providers thead"), body = $("#providers tbody");
  let rows, source;
  try {
    rows = await getJSON("/v1/providers"); source = "engine (LSAs)";
  } catch (e) {
    rows = state.topology ? state.topology.providers : []; source = "chain registry";
  }
  $("#providers-source").textContent = `from the ${source}`;
  const devices = (p) => (p.devices || []).map((d) => typeof d === "string" ? d : (d.model || d.name || JSON.stringify(d)));
  head.replaceChildren(el("tr", {}, ...["provider", "host", "devices", "node", "load", "status"].map((t) => el("th", { text: t }))));
  body.replaceChildren(...rows.map((p) => {
    const load = p.load ?? null;
    const bar = el("span", { class: "load", title: load === null ? "unknown" : `${(load * 100).toFixed(0)}%` },
      el("i", { style: `width:${(load ?? 0) * 100}%;background:${loadColour(load ?? 0)}` }));
    const dev = devices(p);
    return el("tr", { "data-provider": p.address },
      el("td", { class: "mono", text: short(p.address), title: p.address }), el("td", { text: p.hostname || "—" }),
      el("td", { text: dev.length ? dev.join(", ") : "—", title: dev.join("\n") }),
      el("td", { text: p.attachment ?? "—" }), el("td", {}, bar), el("td", { text: p.status }));
  }));
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: 6, class: "empty", text: "no providers yet" })));
}

// ---------------------------------------------------------------- order book and timelines

function orderRow(o) {
  return el("tr", { id: `order-${o.id}`, "data-state": o.state },
    el("td", { text: o.id }), el("td", {}, el("span", { class: `state ${o.state}`, text: o.state })),
    el("td", { class: "mono", text: short(o.buyer), title: o.buyer }), el("td", { text: o.device_class }),
    el("td", { text: o.units }), el("td", { text: `${o.duration}s` }), el("td", { text: eth(o.max_price) }),
    el("td", { class: "mono", text: short(o.provider), title: o.provider || "" }), el("td", { text: o.placed_block }));
}

function renderBook(changed) {
  const body = $("#orders tbody");
  const list = [...state.orders.values()].sort((a, b) => b.id - a.id);
  body.replaceChildren(...list.map(orderRow));
  if (!list.length) body.append(el("tr", {}, el("td", { colspan: 9, class: "empty", text: "no orders yet" })));
  if (changed) document.getElementById(`order-${changed}`)?.classList.add("flash");
  const live = list.filter((o) => !o.final).length;
  $("#book-summary").textContent = `${list.length} orders · ${live} live`;
  renderTimelines();
}

function renderTimelines() {
  const box = $("#timelines");
  const list = [...state.orders.values()].sort((a, b) => b.id - a.id).slice(0, 20);
  if (!list.length) { box.replaceChildren(el("div", { class: "empty", text: "no leases yet" })); return; }
  const t0 = Math.min(...list.map((o) => o.placed_at));
  const t1 = Math.max(state.lastTs, ...list.map((o) => o.updated_at)) + 1;
  box.replaceChildren(...list.map((o) => {
    const bar = el("div", { class: "bar" });
    o.timeline.forEach((step, i) => {
      const end = i + 1 < o.timeline.length ? o.timeline[i + 1].at : (o.final ? step.at : t1);
      const left = ((step.at - t0) / (t1 - t0)) * 100, width = Math.max(0.4, ((end - step.at) / (t1 - t0)) * 100);
      bar.append(el("span", { class: step.state, style: `left:${left}%;width:${width}%`, title: `${step.state} at ${new Date(step.at * 1000).toISOString()}` }));
    });
    return el("div", { class: "tl", "data-order": o.id }, el("span", { text: `#${o.id}` }), bar);
  }));
}

async function loadOrders() {
  let cursor = null, pages = 0;
  do {  // the book is small on a dashboard: walk a few pages
    const page = await getJSON(`/v1/orders?limit=200${cursor ? `&cursor=${cursor}` : ""}`);
    for (const o of page.orders) state.orders.set(o.id, o);
    cursor = page.next_cursor;
  } while (cursor && ++pages < 5);
  renderBook();
}

function applyEvent(ev) {
  state.lastTs = Math.max(state.lastTs, ev.timestamp);
  $("#block").textContent = ev.block;
  if (ev.order === undefined || ev.state === undefined) {
    if (ev.contract === "ProviderRegistry") { loadTopology().then(loadProviders); }
    return;
  }
  const a = ev.args;
  let o = state.orders.get(ev.order);
  if (ev.event === "OrderPlaced") {
    o = { id: ev.order, buyer: a.buyer, state: "open", final: false, device_class: CLASSES[a.deviceClass] || String(a.deviceClass),
      units: a.units, duration: a.duration, tier: a.tier, max_price: String(a.maxPrice), escrow: String(a.escrow),
      provider: null, price: "0", placed_block: ev.block, placed_at: ev.timestamp, placed_tx: ev.tx_hash,
      updated_block: ev.block, updated_at: ev.timestamp, timeline: [] };
  }
  if (!o) return;
  // already in the book from /v1/orders (the feed and the first page may overlap)
  if (o.timeline.length && (o.updated_block > ev.block || (o.updated_block === ev.block && o.state === ev.state))) return;
  o.state = ev.state; o.final = ev.final; o.updated_block = ev.block; o.updated_at = ev.timestamp;
  if (ev.event === "Assigned") o.provider = a.provider;
  if ((ev.event === "AcceptanceTimedOut" || ev.event === "OrderFailed") && ev.state === "assigned") o.provider = a.next;
  o.timeline.push({ state: ev.state, at: ev.timestamp });
  state.orders.set(o.id, o);
  renderBook(o.id);
  if (["Assigned", "Settled", "Cancelled", "OrderFailed", "Resolved"].includes(ev.event)) loadTopology().then(loadProviders);
}

function subscribe() {
  const src = new EventSource("/v1/events?backlog=0");
  state.events = src;
  src.addEventListener("open", () => { $("#live").className = "dot on"; });
  src.addEventListener("error", () => { $("#live").className = "dot off"; });
  src.addEventListener("hello", (m) => { $("#live").className = "dot on"; $("#block").textContent = JSON.parse(m.data).block; });
  src.addEventListener("chain", (m) => applyEvent(JSON.parse(m.data)));
}

// ---------------------------------------------------------------- audit

async function audit(id) {
  const box = $("#audit");
  box.replaceChildren(el("div", { class: "empty", text: `reading order ${id} from the chain…` }));
  try {
    const h = await getJSON(`/v1/audit/orders/${id}`);
    const summary = el("p", {},
      `order ${h.order} is `, el("span", { class: `state ${h.state.toLowerCase()}`, text: h.state.toLowerCase() }),
      ` at block ${h.block}; replayed from its events: ${h.replayed_state.toLowerCase()} — `,
      el("span", { class: h.consistent ? "ok" : "bad", text: h.consistent ? "consistent" : `mismatch: ${h.mismatches.join("; ")}` }),
      ` · escrow ${eth(h.money.escrow)}, paid ${eth(h.money.paid)}, refunded ${eth(h.money.refunded)}, remaining ${eth(h.money.remaining)}`);
    const rows = h.transitions.map((t) => el("tr", {},
      el("td", { text: t.block }), el("td", { text: new Date(t.timestamp * 1000).toISOString().replace(".000Z", "Z") }),
      el("td", { text: t.event }), el("td", {}, el("span", { class: `state ${(t.state || "").toLowerCase()}`, text: (t.state || "").toLowerCase() })),
      el("td", { class: "mono", text: t.tx_hash.slice(0, 18) + "…", title: t.tx_hash }),
      el("td", { class: "mono", text: JSON.stringify(t.args), title: JSON.stringify(t.args, null, 1) })));
    const table = el("table", { id: "audit-table" },
      el("thead", {}, el("tr", {}, ...["block", "time", "event", "state after", "tx", "args"].map((t) => el("th", { text: t })))),
      el("tbody", {}, ...rows));
    box.replaceChildren(summary, table);
  } catch (e) {
    box.replaceChildren(el("div", { class: "error", text: e.message }));
  }
}

$("#orders tbody").addEventListener("click", (e) => {
  const tr = e.target.closest("tr[id^=order-]");
  if (tr) { const id = tr.id.slice(6); $("#audit-id").value = id; audit(id); }
});
$("#audit-form").addEventListener("submit", (e) => { e.preventDefault(); audit($("#audit-id").value); });

async function main() {
  try {
    const dep = await getJSON("/v1/deployment");
    $("#chain").textContent = `chain ${dep.chain_id} (${dep.backend})`;
  } catch (e) { $("#chain").textContent = "chain unreachable"; }
  await loadTopology();
  await loadProviders();
  subscribe();  // before the book: an event racing the first page is applied idempotently
  await loadOrders();
  setInterval(() => loadTopology().then(loadProviders), 10000);
  document.body.dataset.ready = "1";
}
main();
