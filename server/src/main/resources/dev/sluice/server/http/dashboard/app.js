// Sluice dashboard: one EventSource, one card per resource, updated in place once a second.
// No framework and no build step: the coordinator serves this file as is.

const POINTS = 900; // 15 minutes at one point a second, as /v1/history keeps
const series = new Map(); // "resource\u0000dimension" -> number[] (oldest first)
const cards = new Map(); // resource -> { root, refs }
const KEY = "sluice.adminKey";

const $ = (sel) => document.querySelector(sel);
const fmt = new Intl.NumberFormat("en", { maximumFractionDigits: 1 });

function per(p) {
  return p === 1 ? "s" : p === 60 ? "min" : p === 3600 ? "h" : p === 86400 ? "day" : `${fmt.format(p)} s`;
}

function rate(r) {
  return `${r.dimension} ${fmt.format(r.amount)}/${per(r.periodSeconds)} (burst ${fmt.format(r.burst)})`;
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

function figure(parent, label, testid, title) {
  const d = el("div", title ? { title } : {});
  d.append(el("span", { class: "label" }, label));
  const v = el("span", { class: "value", "data-testid": testid }, "–");
  d.append(v);
  parent.append(d);
  return v;
}

const TOOLBAR_FROM = 11; // sort and filter once there are more than 10 resources
const AXIS_MINUTES = [15, 10, 5, 0];

function clock(ms) {
  return new Date(ms).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

// A duration as a person writes it (as the coordinator's messages do): 218 ms, 1.5 s, 3m 20s.
function human(s) {
  if (!(s > 0)) return "0 s";
  if (s < 0.0095) return `${fmt.format(s * 1000)} ms`;
  if (s < 0.9995) return `${Math.round(s * 1000)} ms`;
  if (s < 9.95) return `${Number(s.toFixed(1))} s`;
  const whole = Math.round(s);
  if (whole < 60) return `${whole} s`;
  if (whole < 3600) return whole % 60 ? `${Math.floor(whole / 60)}m ${whole % 60}s` : `${whole / 60}m`;
  const m = Math.round(whole / 60);
  return m % 60 ? `${Math.floor(m / 60)}h ${m % 60}m` : `${m / 60}h`;
}

// Who holds the pause and for how long: "paused by an admin until resumed",
// "paused after an upstream 429 · 12 s left".
function pauseText(r) {
  if (!r.paused) return "";
  const p = r.pause || { by: [], adminSeconds: 0, upstreamSeconds: 0 };
  const parts = [];
  if (p.by.includes("admin")) {
    parts.push(p.adminSeconds < 0 ? "by an admin until resumed" : `by an admin · ${human(p.adminSeconds)} left`);
  }
  if (p.by.includes("upstream")) {
    parts.push(`after an upstream 429 · ${human(p.upstreamSeconds)} left`);
  }
  if (parts.length === 0) {
    parts.push(r.pausedForSeconds < 0 ? "until resumed" : `${human(r.pausedForSeconds)} left`);
  }
  return `paused ${parts.join(" and ")}`;
}

function perSecond(v) {
  return v === null || v === undefined ? "–" : `${fmt.format(v)}/s`;
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
  const axis = el("div", { class: "axis", "data-testid": `time-axis-${r.name}` });
  const ticks = AXIS_MINUTES.map((m) => el("span", {}, m === 0 ? "now" : `−${m} min`));
  axis.append(...ticks);
  root.append(axis);
  const figs = el("div", { class: "figures" });
  const refs = {
    badge, limits, dims, dimRows: new Map(), ticks,
    granted: figure(figs, "grants/s", `grants-rate-${r.name}`, "grants a second since the previous sample"),
    refused: figure(figs, "refusals/s", `refusals-rate-${r.name}`,
      "refused at once (waiting room full, invalid, …) plus timed out, a second since the previous sample"),
    inflight: figure(figs, "in flight", `inflight-${r.name}`),
    p50: figure(figs, "wait p50", `p50-${r.name}`),
    p99: figure(figs, "wait p99", `p99-${r.name}`),
    interactive: figure(figs, "waiting: interactive", `waiting-${r.name}-interactive`),
    default: figure(figs, "waiting: default", `waiting-${r.name}-default`),
    batch: figure(figs, "waiting: batch", `waiting-${r.name}-batch`),
  };
  root.append(figs);
  refs.tenants = el("div", { class: "tenants", "data-testid": `tenants-${r.name}` });
  refs.tenants.hidden = true;
  root.append(refs.tenants);
  refs.totals = el("div", { class: "totals", "data-testid": `totals-${r.name}` });
  refs.granted_total = el("span", { "data-testid": `granted-${r.name}` }, "0");
  root.append(refs.totals);
  refs.throttles = el("div", { class: "throttles", "data-testid": `throttles-${r.name}` });
  refs.throttles.hidden = true;
  root.append(refs.throttles);
  const actions = el("div", { class: "actions" });
  const pause = el("button", { class: "pause", "data-testid": `pause-${r.name}`, type: "button" }, "Pause");
  const resume = el("button", { class: "resume", "data-testid": `resume-${r.name}`, type: "button" }, "Resume");
  resume.hidden = true;
  pause.addEventListener("click", () => act(r.name, "pause"));
  resume.addEventListener("click", () => act(r.name, "resume"));
  actions.append(pause, resume);
  root.append(actions);
  refs.pause = pause;
  refs.resume = resume;
  return { root, refs, view: {} };
}

function dimRow(c, name, dim) {
  let row = c.refs.dimRows.get(dim);
  if (row) return row;
  const d = el("div", { class: "dim" });
  d.append(el("span", { class: "name", title: dim }, dim));
  const scale = el("div", { class: "scale", "data-testid": `scale-${name}-${dim}`, "aria-hidden": "true" });
  const top = el("span", {}, "100 %");
  const mid = el("span", {}, "50 %");
  scale.append(top, mid, el("span", {}, "0 %"));
  const canvas = el("canvas", { "data-testid": `chart-${name}-${dim}`, width: 300, height: 48,
    role: "img", "aria-label": `${dim} utilization, last 15 minutes` });
  const side = el("div", { class: "side" });
  const pct = el("span", { class: "pct", "data-testid": `util-${name}-${dim}`, title: "utilization in the last second" },
    "0 %");
  const level = el("span", { class: "level", "data-testid": `level-${name}-${dim}`,
    title: "what the bucket holds now, of its burst (below 0: debt from a settle)" }, "bucket –");
  side.append(pct, level);
  d.append(scale, canvas, side);
  c.refs.dims.append(d);
  row = { canvas, pct, level, top, mid };
  c.refs.dimRows.set(dim, row);
  return row;
}

// The chart's top: 100 %, or above it the next 50 % step when the burst was drawn on.
function chartTop(points) {
  const max = Math.max(1, ...points);
  return max <= 1 ? 1 : Math.ceil(max * 2) / 2;
}

function draw(canvas, points, top) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 300;
  const h = canvas.clientHeight || 48;
  if (canvas.width !== Math.round(w * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
  }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  const y = (v) => h - 2 - (v / top) * (h - 4);
  g.strokeStyle = "#eef1f4"; // time ticks every 5 minutes, and the 50 % line
  g.lineWidth = 1;
  g.beginPath();
  for (const m of AXIS_MINUTES.slice(1, -1)) {
    const x = Math.round(w * (1 - m / 15)) + 0.5;
    g.moveTo(x, 0);
    g.lineTo(x, h);
  }
  g.moveTo(0, y(top / 2));
  g.lineTo(w, y(top / 2));
  g.stroke();
  g.strokeStyle = "#cbd5e1"; // the 100 % line
  g.setLineDash([3, 3]);
  g.beginPath();
  g.moveTo(0, y(1));
  g.lineTo(w, y(1));
  g.stroke();
  g.setLineDash([]);
  canvas.dataset.top = String(top);
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

function throttleText(r) {
  if (!r.throttleReports) return "";
  const times = (r.recentThrottles || []).map(clock);
  const last = r.lastThrottleSecondsAgo === null || r.lastThrottleSecondsAgo === undefined ? ""
    : ` · last ${human(r.lastThrottleSecondsAgo)} ago`;
  return `upstream 429 reports: ${r.throttleReports}${last}${times.length ? ` · at ${times.join(", ")}` : ""}`;
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
    f.badge.textContent = pauseText(r);
    // Only the action that applies.
    f.pause.hidden = r.paused;
    f.resume.hidden = !r.paused;
    const l = r.limit;
    f.limits.textContent = l.rates.map(rate).join(" · ")
      + (l.concurrency > 0 ? ` · at most ${l.concurrency} in flight` : "")
      + ` · waiting room ${fmt.format(l.maxWaiting)}`
      + (l.learn ? ` · ${l.learn.summary.replace(/^\(|\)$/g, "")}` : "");
    f.inflight.textContent = l.concurrency > 0 ? `${r.inFlight} / ${l.concurrency}` : String(r.inFlight);
    const rates = r.rates || {};
    f.granted.textContent = perSecond(rates.grantedPerSecond);
    f.refused.textContent = rates.rejectedPerSecond === null || rates.rejectedPerSecond === undefined ? "–"
      : perSecond(rates.rejectedPerSecond + rates.timedOutPerSecond);
    f.p50.textContent = human(r.waitP50Seconds);
    f.p99.textContent = human(r.waitP99Seconds);
    f.interactive.textContent = String(r.waiting.interactive);
    f.default.textContent = String(r.waiting.default);
    f.batch.textContent = String(r.waiting.batch);
    const rejected = Object.values(r.rejected).reduce((a, b) => a + b, 0);
    f.granted_total.textContent = String(r.granted);
    f.totals.replaceChildren("since start: ", f.granted_total,
      ` granted · ${rejected} refused · ${r.timedOut} timed out`);
    renderTenants(f.tenants, r);
    const throttles = throttleText(r);
    f.throttles.hidden = !throttles;
    f.throttles.textContent = throttles;
    AXIS_MINUTES.forEach((m, i) => {
      const at = sample.time - m * 60_000;
      f.ticks[i].textContent = m === 0 ? "now" : clock(at).slice(0, 5); // HH:MM
      f.ticks[i].title = clock(at);
    });
    let hottest = 0;
    for (const rs of l.rates) {
      const key = `${r.name}\u0000${rs.dimension}`;
      let s = series.get(key);
      if (!s) series.set(key, (s = []));
      const u = r.utilization[rs.dimension] ?? 0;
      hottest = Math.max(hottest, u);
      s.push(u);
      if (s.length > POINTS) s.splice(0, s.length - POINTS);
      const row = dimRow(c, r.name, rs.dimension);
      row.pct.textContent = `${Math.round(u * 100)} %`;
      row.pct.classList.toggle("hot", u >= 0.95);
      const level = r.level ? r.level[rs.dimension] : undefined;
      row.level.textContent = level === undefined ? "bucket –" : `bucket ${Math.round(level * 100)} %`;
      row.level.classList.toggle("debt", level < 0);
      const top = chartTop(s);
      row.top.textContent = `${Math.round(top * 100)} %`;
      row.mid.textContent = `${Math.round(top * 50)} %`;
      draw(row.canvas, s, top);
    }
    c.view = {
      name: r.name, utilization: hottest, granted: rates.grantedPerSecond ?? 0, paused: r.paused,
      waiting: r.waiting.interactive + r.waiting.default + r.waiting.batch,
    };
  }
  for (const [name, c] of cards) {
    if (!seen.has(name)) {
      c.root.remove();
      cards.delete(name);
    }
  }
  arrange();
  renderPools(sample.pools || []);
  loadBuffers();
}

// Pools: one row per member, its pause and its grants (through this pool on this node, and to anyone).
function renderPools(pools) {
  const section = $("#pools");
  section.hidden = pools.length === 0;
  const rows = [];
  for (const p of pools) {
    p.members.forEach((m, i) => {
      const id = `${p.name}-${m.name}`;
      const tr = el("tr", { "data-testid": `pool-member-${id}` });
      tr.classList.toggle("paused", m.paused);
      const state = !m.found ? "no limit (deleted?)" : !m.paused ? "granting"
        : m.pausedForSeconds < 0 ? "paused until resumed" : `paused ${human(m.pausedForSeconds)}`;
      const cells = [
        [i === 0 ? p.name : "", null, i === 0 ? `pool-${p.name}` : null], [m.name],
        [state, null, `pool-state-${id}`], [String(m.inFlight), "n"], [String(m.waiting), "n"],
        [String(m.poolGranted), "n", `pool-granted-${id}`], [String(m.granted), "n"],
      ];
      for (const [text, cls, testid] of cells) {
        const td = el("td", cls ? { class: cls } : {}, text);
        if (testid) td.setAttribute("data-testid", testid);
        tr.append(td);
      }
      rows.push(tr);
    });
  }
  section.querySelector("tbody").replaceChildren(...rows);
}

const pct = (x) => `${fmt.format(x * 100)} %`;

function capText(rates) {
  return rates.map((c) => `${c.dimension} ${fmt.format(c.amount)}/${per(c.periodSeconds)}`).join(", ");
}

// A resource shared between tenants: each tenant's recent share of the binding dimension against
// its fair share (its weight over the active tenants' weights), its floor, cap and waiters.
function renderTenants(box, r) {
  const t = r.tenants;
  box.hidden = !t;
  if (!t) return;
  const window = human(t.windowSeconds);
  const title = el("div", { class: "tenants-title", "data-testid": `tenants-title-${r.name}` },
    t.binding ? `tenants · share of ${t.binding} over the last ${window} (bar: used, mark: fair share)`
      : `tenants · nothing used over the last ${window}`);
  const table = el("table");
  const head = el("tr");
  for (const h of ["tenant", "share", "fair", "weight", "floor", "cap", "waiting"]) head.append(el("th", {}, h));
  table.append(head);
  for (const row of t.rows) {
    const id = `${r.name}-${row.tenant}`;
    const tr = el("tr", { "data-testid": `tenant-${id}` });
    tr.append(el("td", { class: "name" }, row.tenant));
    const share = el("td", { class: "share" });
    const bar = el("div", { class: "bar", "aria-hidden": "true" });
    const used = el("span", { class: "used" });
    used.style.width = `${Math.min(100, row.share * 100)}%`;
    const fair = el("span", { class: "fair" });
    fair.style.left = `${Math.min(100, row.fairShare * 100)}%`;
    bar.append(used, fair);
    share.append(bar, el("span", { "data-testid": `tenant-share-${id}` }, t.binding ? pct(row.share) : "–"));
    share.classList.toggle("over", t.binding && row.share > row.fairShare + 0.05);
    tr.append(share);
    tr.append(el("td", { class: "n", "data-testid": `tenant-fair-${id}` }, t.binding ? pct(row.fairShare) : "–"));
    tr.append(el("td", { class: "n", "data-testid": `tenant-weight-${id}` }, fmt.format(row.weight)));
    tr.append(el("td", { class: "n", "data-testid": `tenant-floor-${id}` }, row.floor > 0 ? pct(row.floor) : "–"));
    tr.append(el("td", { class: "cap", "data-testid": `tenant-cap-${id}` }, row.cap.length ? capText(row.cap) : "–"));
    tr.append(el("td", { class: "n", "data-testid": `tenant-waiting-${id}` }, String(row.waiting)));
    table.append(tr);
  }
  const more = t.more ? [el("div", { class: "tenants-title", "data-testid": `tenants-more-${r.name}` },
    `and ${t.more} more tenant${t.more === 1 ? "" : "s"}, not waiting, with smaller shares: sluice stats ${r.name} --by tenant lists all`)]
    : [];
  box.replaceChildren(title, table, ...more);
}

// Sort and filter, offered once there are more than 10 resources.
const SORTS = {
  name: (a, b) => a.name.localeCompare(b.name),
  utilization: (a, b) => b.utilization - a.utilization || a.name.localeCompare(b.name),
  granted: (a, b) => b.granted - a.granted || a.name.localeCompare(b.name),
  waiting: (a, b) => b.waiting - a.waiting || a.name.localeCompare(b.name),
  paused: (a, b) => Number(b.paused) - Number(a.paused) || a.name.localeCompare(b.name),
};

function arrange() {
  const toolbar = $("#toolbar");
  const many = cards.size >= TOOLBAR_FROM;
  toolbar.hidden = !many;
  const filter = many ? $("#filter").value.trim().toLowerCase() : "";
  const sort = SORTS[many ? $("#sort").value : "name"] || SORTS.name;
  const ordered = [...cards.values()].sort((a, b) => sort(a.view, b.view));
  let visible = 0;
  ordered.forEach((c, i) => {
    c.root.style.order = String(i);
    const show = !filter || c.view.name.toLowerCase().includes(filter);
    c.root.hidden = !show;
    if (show) visible++;
  });
  $('[data-testid="shown"]').textContent = filter ? `${visible} shown` : "";
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
      [fmt.format(s.deliveredPerSecond), "n"], [human(s.oldestPendingAgeSeconds), "n"],
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
  $("#filter").addEventListener("input", arrange);
  $("#sort").addEventListener("change", arrange);
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
