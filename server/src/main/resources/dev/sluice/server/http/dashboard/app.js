// Sluice dashboard: one EventSource, one card per resource, updated in place once a second.
// No framework and no build step: the coordinator serves this file as is.

const POINTS = 900; // 15 minutes at one point a second, as /v1/history keeps
const series = new Map(); // "resource\u0000dimension" -> number[] (oldest first)
const cards = new Map(); // resource -> { root, refs }
const KEY = "sluice.adminKey";

const $ = (sel) => document.querySelector(sel);
const fmt = new Intl.NumberFormat("en", { maximumFractionDigits: 1 });

function secs(s) {
  if (!(s > 0)) return "0";
  if (s < 0.001) return `${Math.round(s * 1e6)} µs`;
  if (s < 1) return `${fmt.format(s * 1000)} ms`;
  return `${fmt.format(s)} s`;
}

function rate(r) {
  const p = r.periodSeconds;
  const unit = p === 1 ? "s" : p === 60 ? "min" : p === 3600 ? "h" : p === 86400 ? "day" : `${fmt.format(p)} s`;
  return `${r.dimension} ${fmt.format(r.amount)}/${unit} (burst ${fmt.format(r.burst)})`;
}

function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

function figure(parent, label, testid) {
  const d = el("div");
  d.append(el("span", { class: "label" }, label));
  const v = el("span", { class: "value", "data-testid": testid }, "–");
  d.append(v);
  parent.append(d);
  return v;
}

function card(r) {
  const root = el("section", { class: "card", "data-testid": `resource-${r.name}`, "data-resource": r.name });
  const h = el("h2");
  h.append(el("span", {}, r.name));
  const badge = el("span", { class: "badge", "data-testid": `paused-${r.name}` }, "paused");
  badge.hidden = true;
  h.append(badge);
  root.append(h);
  const limits = el("div", { class: "limits", "data-testid": `limits-${r.name}` });
  root.append(limits);
  const dims = el("div");
  root.append(dims);
  const axis = el("div", { class: "axis" });
  axis.append(el("span", {}, "15 min ago"), el("span", {}, "utilization, 100 % dashed · now"));
  root.append(axis);
  const figs = el("div", { class: "figures" });
  const refs = {
    badge, limits, dims, dimRows: new Map(),
    inflight: figure(figs, "in flight", `inflight-${r.name}`),
    granted: figure(figs, "granted", `granted-${r.name}`),
    p50: figure(figs, "wait p50", `p50-${r.name}`),
    p99: figure(figs, "wait p99", `p99-${r.name}`),
    interactive: figure(figs, "waiting: interactive", `waiting-${r.name}-interactive`),
    default: figure(figs, "waiting: default", `waiting-${r.name}-default`),
    batch: figure(figs, "waiting: batch", `waiting-${r.name}-batch`),
    rejected: figure(figs, "rejected / timed out", `rejected-${r.name}`),
  };
  root.append(figs);
  const actions = el("div", { class: "actions" });
  const pause = el("button", { class: "pause", "data-testid": `pause-${r.name}`, type: "button" }, "Pause");
  const resume = el("button", { class: "resume", "data-testid": `resume-${r.name}`, type: "button" }, "Resume");
  pause.addEventListener("click", () => act(r.name, "pause"));
  resume.addEventListener("click", () => act(r.name, "resume"));
  actions.append(pause, resume);
  root.append(actions);
  return { root, refs };
}

function dimRow(c, name, dim) {
  let row = c.refs.dimRows.get(dim);
  if (row) return row;
  const d = el("div", { class: "dim" });
  d.append(el("span", { class: "name", title: dim }, dim));
  const canvas = el("canvas", { "data-testid": `chart-${name}-${dim}`, width: 300, height: 40,
    role: "img", "aria-label": `${dim} utilization, last 15 minutes` });
  const pct = el("span", { class: "pct", "data-testid": `util-${name}-${dim}` }, "0 %");
  d.append(canvas, pct);
  c.refs.dims.append(d);
  row = { canvas, pct };
  c.refs.dimRows.set(dim, row);
  return row;
}

function draw(canvas, points) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 300;
  const h = canvas.clientHeight || 40;
  if (canvas.width !== Math.round(w * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
  }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  const top = Math.max(1, ...points);
  const y = (v) => h - 2 - (v / top) * (h - 4);
  g.strokeStyle = "#cbd5e1"; // the 100 % line
  g.setLineDash([3, 3]);
  g.beginPath();
  g.moveTo(0, y(1));
  g.lineTo(w, y(1));
  g.stroke();
  g.setLineDash([]);
  if (points.length === 0) return;
  const step = w / (POINTS - 1);
  const x0 = w - (points.length - 1) * step;
  g.beginPath();
  points.forEach((v, i) => (i === 0 ? g.moveTo(x0 + i * step, y(v)) : g.lineTo(x0 + i * step, y(v))));
  g.strokeStyle = "#2563eb";
  g.lineWidth = 1.5;
  g.stroke();
  g.lineTo(x0 + (points.length - 1) * step, h);
  g.lineTo(x0, h);
  g.closePath();
  g.fillStyle = "rgba(37, 99, 235, 0.12)";
  g.fill();
  canvas.dataset.points = String(points.length);
}

function render(sample) {
  $('[data-testid="node"]').textContent = `node ${sample.node}`;
  const shown = sample.resources.length;
  $('[data-testid="count"]').textContent = sample.total > shown
    ? `${shown} of ${sample.total} resources (first by name)` : `${shown} resource${shown === 1 ? "" : "s"}`;
  $('[data-testid="empty"]').hidden = shown > 0;
  const main = $("#resources");
  const seen = new Set();
  for (const r of sample.resources) {
    seen.add(r.name);
    let c = cards.get(r.name);
    if (!c) {
      c = card(r);
      cards.set(r.name, c);
      main.append(c.root);
    }
    const f = c.refs;
    c.root.classList.toggle("paused", r.paused);
    f.badge.hidden = !r.paused;
    f.badge.textContent = !r.paused ? "" : r.pausedForSeconds < 0 ? "paused until resumed"
      : `paused ${fmt.format(r.pausedForSeconds)} s`;
    const l = r.limit;
    f.limits.textContent = l.rates.map(rate).join(" · ")
      + (l.concurrency > 0 ? ` · at most ${l.concurrency} in flight` : "")
      + ` · waiting room ${fmt.format(l.maxWaiting)}`
      + (l.learn ? ` · ${l.learn.summary.replace(/^\(|\)$/g, "")}` : "");
    f.inflight.textContent = l.concurrency > 0 ? `${r.inFlight} / ${l.concurrency}` : String(r.inFlight);
    f.granted.textContent = String(r.granted);
    f.p50.textContent = secs(r.waitP50Seconds);
    f.p99.textContent = secs(r.waitP99Seconds);
    f.interactive.textContent = String(r.waiting.interactive);
    f.default.textContent = String(r.waiting.default);
    f.batch.textContent = String(r.waiting.batch);
    const rejected = Object.values(r.rejected).reduce((a, b) => a + b, 0);
    f.rejected.textContent = `${rejected} / ${r.timedOut}`;
    for (const rs of l.rates) {
      const key = `${r.name}\u0000${rs.dimension}`;
      let s = series.get(key);
      if (!s) series.set(key, (s = []));
      const u = r.utilization[rs.dimension] ?? 0;
      s.push(u);
      if (s.length > POINTS) s.splice(0, s.length - POINTS);
      const row = dimRow(c, r.name, rs.dimension);
      row.pct.textContent = `${Math.round(u * 100)} %`;
      row.pct.classList.toggle("hot", u >= 0.95);
      draw(row.canvas, s);
    }
  }
  for (const [name, c] of cards) {
    if (!seen.has(name)) {
      c.root.remove();
      cards.delete(name);
    }
  }
  loadBuffers();
}

// Buffers are not in the keyless event stream (their URLs and counts are an admin's to read):
// they come from /v1/buffers, with the key set for this tab (or none on an open coordinator).
let buffersLoading = false;
async function loadBuffers() {
  if (buffersLoading) return;
  buffersLoading = true;
  const headers = {};
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = `Bearer ${key}`;
  try {
    const res = await fetch("/v1/buffers", { headers });
    const body = res.ok ? await res.json() : { buffers: [] };
    renderBuffers(body.buffers.map((b) => ({
      name: b.name, url: `${b.method} ${b.url}`, pacedBy: b.resource || `buffer:${b.name}`, stats: b.stats,
    })));
  } catch (e) {
    // Shown again on the next sample.
  } finally {
    buffersLoading = false;
  }
}

function renderBuffers(buffers) {
  const section = $("#buffers");
  section.hidden = buffers.length === 0;
  const rows = buffers.map((b) => {
    const tr = el("tr", { "data-testid": `buffer-${b.name}` });
    const s = b.stats;
    const cells = [
      [b.name], [b.url], [b.pacedBy],
      [String(s.pending), "n", `buffer-pending-${b.name}`], [String(s.running), "n"],
      [String(s.completed), "n", `buffer-completed-${b.name}`], [String(s.failed), "n"],
      [fmt.format(s.deliveredPerSecond), "n"], [secs(s.oldestPendingAgeSeconds), "n"],
      [s.paused ? "paused" : "delivering"],
    ];
    for (const [text, cls, testid] of cells) {
      const td = el("td", cls ? { class: cls } : {}, text);
      if (testid) td.setAttribute("data-testid", testid);
      tr.append(td);
    }
    return tr;
  });
  section.querySelector("tbody").replaceChildren(...rows);
}

async function act(resource, verb) {
  const headers = { "Content-Type": "application/json" };
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = `Bearer ${key}`;
  try {
    const res = await fetch(`/v1/resources/${encodeURIComponent(resource)}/${verb}`, { method: "POST", headers });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      const msg = body.error ? body.error.message : `${res.status} ${res.statusText}`;
      showError(`${verb} ${resource} refused (${res.status}): ${msg}`);
      return;
    }
    showError("");
  } catch (e) {
    showError(`${verb} ${resource} failed: ${e}`);
  }
}

function connect() {
  const status = $('[data-testid="conn-status"]');
  const events = new EventSource("/v1/events");
  events.addEventListener("snapshot", (e) => {
    status.textContent = "live";
    status.className = "status live";
    render(JSON.parse(e.data));
  });
  events.onerror = () => {
    // EventSource reconnects by itself (the server asks for a 2 s retry).
    status.textContent = "reconnecting…";
    status.className = "status reconnecting";
  };
}

async function start() {
  const form = $("#key-form");
  const input = $("#api-key");
  if (sessionStorage.getItem(KEY)) input.placeholder = "key set for this tab";
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const v = input.value.trim();
    if (v) sessionStorage.setItem(KEY, v);
    else sessionStorage.removeItem(KEY);
    input.value = "";
    input.placeholder = v ? "key set for this tab" : "slk_… (for pause / resume)";
    showError("");
  });
  try {
    const res = await fetch("/v1/history");
    if (res.ok) {
      const h = await res.json();
      for (const [name, dims] of Object.entries(h.resources)) {
        for (const [dim, points] of Object.entries(dims)) {
          // The newest point comes with the first snapshot: keep the history before it.
          series.set(`${name}\u0000${dim}`, points.slice(0, -1));
        }
      }
    }
  } catch (e) {
    // No history: the charts start empty and fill as samples arrive.
  }
  connect();
}

start();
