// Plant overview: 8 line tiles, alarm banner and table, history and KPI views.
import { PlantConnection, defaultUrl } from "/static/ws.js";

const SEVERITY_RANK = { low: 1, medium: 2, high: 3, critical: 4 };
const SPARK_SECONDS = 300;
const SPARK_POINTS = 300;

const state = {
  lines: new Map(), // id -> {meta, sample, tile, spark: {t:[], v:[]}}
  alarms: new Map(), // alarm name -> latest alarm record (non-normal)
  role: "viewer",
  user: "",
  conn: null,
  historyBefore: null,
};

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, text) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  if (text !== undefined) node.textContent = text;
  return node;
};

function fmt(value, decimals) {
  if (value === null || value === undefined) return "—";
  return Number(value).toFixed(decimals ?? 2);
}

function timeOf(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

// ---------------------------------------------------------------- tiles

function buildTile(meta) {
  const tile = el("article", { class: "tile", "data-line": meta.id, "data-testid": "tile" });
  const title = el("h2");
  title.append(el("span", {}, meta.name));
  const badges = el("span");
  badges.append(el("span", { class: "badge q-good", "data-role": "quality" }, ""));
  badges.append(" ");
  badges.append(el("span", { class: "badge state-stopped", "data-role": "state" }, "—"));
  title.append(badges);
  tile.append(title);

  const zones = el("div", { class: "zones" });
  const temps = Object.entries(meta.tags).filter(([, t]) => t.group === "body_temperatures");
  temps.forEach(([name], i) => {
    const z = el("div", { class: "zone" });
    z.append(el("span", { class: "k" }, `Zone ${i + 1}`));
    z.append(el("span", { class: "v", "data-tag": name }, "—"));
    zones.append(z);
  });
  const die = el("div", { class: "zone" });
  die.append(el("span", { class: "k" }, "Die"));
  die.append(el("span", { class: "v", "data-tag": "die_temperature" }, "—"));
  zones.append(die);
  tile.append(zones);

  const d = meta.tags.diameter || {};
  const diam = el("div", { class: "diam" });
  const row = el("div", { class: "row" });
  row.append(el("span", {}, `Diameter (${d.unit || "mm"})`));
  row.append(el("span", { class: "value", "data-tag": "diameter" }, "—"));
  diam.append(row);
  const band = el("div", { class: "band", title: "tolerance band" });
  band.append(el("div", { class: "tol" }));
  band.append(el("div", { class: "sp" }));
  band.append(el("div", { class: "mark" }));
  diam.append(band);
  diam.append(el("div", { class: "meta", "data-role": "tol-text" },
    d.setpoint != null ? `setpoint ${fmt(d.setpoint, 3)} ± ${fmt(d.tolerance, 3)}` : ""));
  tile.append(diam);

  const m = el("div", { class: "meta" });
  for (const [tag, label] of [["line_speed", "Speed"], ["motor_current", "Motor"], ["melt_pressure", "Melt"]]) {
    const unit = meta.tags[tag] ? meta.tags[tag].unit : "";
    const cell = el("span", {}, `${label} `);
    cell.append(el("b", { "data-tag": tag }, "—"));
    cell.append(` ${unit}`);
    m.append(cell);
  }
  tile.append(m);
  const canvas = el("canvas", { class: "spark", width: 600, height: 96 });
  tile.append(canvas);
  return tile;
}

function bandGeometry(meta) {
  const d = meta.tags.diameter || {};
  const sp = d.setpoint ?? 0;
  const tol = d.tolerance ?? 0.1;
  const limits = d.limits || {};
  const lo = limits.lolo ?? limits.lo ?? sp - 4 * tol;
  const hi = limits.hihi ?? limits.hi ?? sp + 4 * tol;
  const span = hi - lo || 1;
  return { sp, tol, lo, hi, span, pos: (v) => Math.max(0, Math.min(100, ((v - lo) / span) * 100)) };
}

function renderTile(entry) {
  const { meta, sample, tile } = entry;
  if (!sample) return;
  const bad = new Set(sample.bad_tags || []);
  const q = sample.quality;
  const qBadge = $('[data-role="quality"]', tile);
  qBadge.className = `badge q-${q}`;
  qBadge.textContent = q;
  const st = $('[data-role="state"]', tile);
  st.className = `badge state-${sample.state || "stopped"}`;
  st.textContent = sample.state || "no state";
  tile.dataset.quality = q;

  const temps = sample.body_temperatures || [];
  temps.forEach((v, i) => {
    const name = `body_temperature_${i + 1}`;
    setValue($(`[data-tag="${name}"]`, tile), v, meta.tags[name], bad.has(name) ? q : "good");
  });
  for (const tag of ["die_temperature", "diameter", "line_speed", "motor_current", "melt_pressure"]) {
    setValue($(`[data-tag="${tag}"]`, tile), sample[tag], meta.tags[tag], bad.has(tag) ? q : "good");
  }
  const g = bandGeometry(meta);
  const tolEl = $(".band .tol", tile);
  tolEl.style.left = `${g.pos(g.sp - g.tol)}%`;
  tolEl.style.width = `${g.pos(g.sp + g.tol) - g.pos(g.sp - g.tol)}%`;
  $(".band .sp", tile).style.left = `${g.pos(g.sp)}%`;
  const mark = $(".band .mark", tile);
  if (sample.diameter == null) mark.style.display = "none";
  else {
    mark.style.display = "";
    mark.style.left = `calc(${g.pos(sample.diameter)}% - 1px)`;
  }
}

function setValue(node, value, meta, quality) {
  if (!node) return;
  node.textContent = fmt(value, meta ? meta.decimals : 2);
  node.classList.remove("bad", "stale", "warn");
  if (value === null || value === undefined || quality === "bad") node.classList.add("bad");
  else if (quality === "stale") node.classList.add("stale");
  else if (meta && meta.limits && ((meta.limits.hi != null && value > meta.limits.hi) || (meta.limits.lo != null && value < meta.limits.lo))) node.classList.add("warn");
  node.dataset.quality = quality;
}

function drawSpark(entry) {
  const canvas = $("canvas.spark", entry.tile);
  const ctx = canvas.getContext("2d");
  const { t, v } = entry.spark;
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const g = bandGeometry(entry.meta);
  const now = Date.now();
  const x = (ts) => w - ((now - ts) / (SPARK_SECONDS * 1000)) * w;
  const y = (val) => h - ((val - g.lo) / g.span) * h;
  ctx.fillStyle = "rgba(63,185,80,0.15)";
  ctx.fillRect(0, y(g.sp + g.tol), w, y(g.sp - g.tol) - y(g.sp + g.tol));
  ctx.strokeStyle = "#58a6ff";
  ctx.lineWidth = 2.5;
  ctx.beginPath();
  let pen = false;
  for (let i = 0; i < t.length; i++) {
    if (v[i] === null) { pen = false; continue; }
    const px = x(t[i]), py = Math.max(0, Math.min(h, y(v[i])));
    if (pen) ctx.lineTo(px, py); else ctx.moveTo(px, py);
    pen = true;
  }
  ctx.stroke();
}

function extendSpark(entry, sample) {
  const s = entry.spark;
  const ts = sample.timestamp ? Date.parse(sample.timestamp) : Date.now();
  const bucket = (SPARK_SECONDS * 1000) / SPARK_POINTS;
  const last = s.t.length ? s.t[s.t.length - 1] : 0;
  const value = sample.quality === "good" || sample.quality === "uncertain" ? sample.diameter : null;
  if (ts - last >= bucket) {
    s.t.push(ts);
    s.v.push(value);
  }
  const cutoff = Date.now() - SPARK_SECONDS * 1000;
  while (s.t.length && s.t[0] < cutoff) { s.t.shift(); s.v.shift(); }
}

async function loadSparks() {
  await Promise.all([...state.lines.values()].map(async (entry) => {
    try {
      const r = await fetch(`/api/lines/${encodeURIComponent(entry.meta.id)}/history?seconds=${SPARK_SECONDS}&points=${SPARK_POINTS}`);
      if (!r.ok) return;
      const h = await r.json();
      const series = h.series.diameter;
      if (!series) return;
      entry.spark = { t: h.t.slice(), v: series.mean.slice() };
    } catch (err) {
      console.warn("history failed", err);
    }
  }));
}

// ---------------------------------------------------------------- alarms

function applyAlarm(a) {
  if (a.state === "normal") state.alarms.delete(a.alarm);
  else state.alarms.set(a.alarm, a);
}

function renderAlarms() {
  const rows = [...state.alarms.values()].sort((a, b) =>
    (SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity]) || String(b.raised_at).localeCompare(String(a.raised_at)));
  const tbody = $("#alarm-table tbody");
  tbody.replaceChildren(...rows.map(alarmRow));
  $("#alarm-empty").classList.toggle("hidden", rows.length > 0);
  $("#alarm-total").textContent = rows.length;

  const counts = {};
  let newest = null;
  for (const a of rows) {
    if (a.state === "shelved" || a.state === "suppressed") continue;
    counts[a.severity] = (counts[a.severity] || 0) + 1;
    if ((a.state === "unacked_active" || a.state === "unacked_cleared") && (!newest || a.raised_at > newest.raised_at)) newest = a;
  }
  const countEl = $("#alarm-counts");
  countEl.replaceChildren(...Object.keys(SEVERITY_RANK).reverse().filter((s) => counts[s])
    .map((s) => el("span", { class: `sev sev-${s}`, title: s }, `${counts[s]} ${s}`)));
  $("#alarm-newest").textContent = newest ? `${timeOf(newest.raised_at)} ${newest.message}` : "No unacknowledged alarms";
  $("#banner").classList.toggle("active", !!newest);

  const lineState = new Map();
  for (const a of rows) {
    if (!a.production_line_id) continue;
    if (a.state === "unacked_active") lineState.set(a.production_line_id, "alarm");
    else if (a.state === "acked_active" && lineState.get(a.production_line_id) !== "alarm") lineState.set(a.production_line_id, "alarm-acked");
  }
  for (const [id, entry] of state.lines) {
    entry.tile.classList.toggle("alarm", lineState.get(id) === "alarm");
    entry.tile.classList.toggle("alarm-acked", lineState.get(id) === "alarm-acked");
    entry.tile.dataset.alarm = lineState.get(id) || "";
  }
}

function alarmRow(a) {
  const tr = el("tr", { class: `st-${a.state}`, "data-alarm": a.alarm, "data-state": a.state, "data-occurrence": a.id });
  const stateLabel = a.state.replace("_", " ");
  const decimals = tagDecimals(a.production_line_id, a.tag);
  const cells = [stateLabel, a.severity, a.production_line_id ?? "—", a.alarm, a.message,
    fmtAlarmValue(a.value, decimals), fmtAlarmValue(a.limit, decimals),
    timeOf(a.raised_at), a.acked_by ? `${a.acked_by} ${timeOf(a.acked_at)}` : ""];
  cells.forEach((c, i) => {
    if (i === 1) {
      const td = el("td");
      td.append(el("span", { class: `sev sev-${a.severity}` }, c));
      tr.append(td);
    } else tr.append(el("td", {}, c));
  });
  const actions = el("td");
  const canOperate = ["operator", "engineer", "admin"].includes(state.role);
  if (a.state === "unacked_active" || a.state === "unacked_cleared") {
    const b = el("button", { class: "ack", "data-action": "ack", disabled: !canOperate }, "Ack");
    b.addEventListener("click", () => openDialog("ack", a));
    actions.append(b);
  }
  if (a.state === "shelved") {
    const b = el("button", { "data-action": "unshelve", disabled: !canOperate }, "Unshelve");
    b.addEventListener("click", () => openDialog("unshelve", a));
    actions.append(b);
  } else if (a.state !== "suppressed") {
    const b = el("button", { "data-action": "shelve", disabled: !canOperate }, "Shelve");
    b.addEventListener("click", () => openDialog("shelve", a));
    actions.append(" ", b);
  }
  if (!canOperate) actions.title = "log in as an operator to acknowledge";
  tr.append(actions);
  return tr;
}

function tagDecimals(lineId, tag) {
  const entry = lineId != null ? state.lines.get(lineId) : null;
  const meta = entry && tag ? entry.meta.tags[tag] : null;
  return meta ? meta.decimals : 3;
}

function fmtAlarmValue(v, decimals) {
  if (v === null || v === undefined) return "—";
  return typeof v === "number" ? v.toFixed(decimals) : String(v);
}

function openDialog(kind, alarm) {
  const dialog = $("#ack-dialog");
  const form = $("#ack-form");
  form.reset();
  $("#ack-error").textContent = "";
  $("#ack-title").textContent = { ack: "Acknowledge alarm", shelve: "Shelve alarm", unshelve: "Unshelve alarm" }[kind];
  $("#ack-ok").textContent = { ack: "Acknowledge", shelve: "Shelve", unshelve: "Unshelve" }[kind];
  $("#ack-detail").textContent = `${alarm.alarm} — ${alarm.message}`;
  form.querySelector(".shelve-only").classList.toggle("hidden", kind !== "shelve");
  dialog.dataset.kind = kind;
  form.onsubmit = async (ev) => {
    if (ev.submitter && ev.submitter.value === "cancel") return;
    ev.preventDefault();
    const comment = form.comment.value.trim();
    let data;
    if (kind === "ack") data = { alarm_id: alarm.id, comment };
    else if (kind === "shelve") data = { alarm: alarm.alarm, minutes: Number(form.minutes.value), comment };
    else data = { alarm: alarm.alarm, comment };
    try {
      const reply = await state.conn.request(kind, data);
      if (reply.ok) dialog.close();
      else $("#ack-error").textContent = `${reply.error}: ${reply.message || ""}`;
    } catch (err) {
      $("#ack-error").textContent = String(err.message || err);
    }
  };
  dialog.showModal();
}

// ---------------------------------------------------------------- history & KPI

async function loadHistory(more = false) {
  const form = $("#history-form");
  const params = new URLSearchParams({ limit: "100" });
  if (form.line.value) params.set("line", form.line.value);
  if (form.alarm.value) params.set("alarm", form.alarm.value.trim());
  if (form.since.value) params.set("since", new Date(form.since.value).toISOString());
  if (form.until.value) params.set("until", new Date(form.until.value).toISOString());
  if (more && state.historyBefore) params.set("before", state.historyBefore);
  const r = await fetch(`/api/alarms/history?${params}`);
  const body = await r.json();
  const tbody = $("#history-table tbody");
  const rows = (body.events || []).map((e) => {
    const tr = el("tr", { class: `st-${e.state}` });
    for (const c of [e.event_id, `${new Date(e.at || e.raised_at).toLocaleString()}`, e.event, e.alarm, e.severity, e.state,
      e.value == null ? "—" : String(e.value), e.user || e.acked_by || "", e.comment || ""]) tr.append(el("td", {}, String(c ?? "")));
    return tr;
  });
  if (more) tbody.append(...rows); else tbody.replaceChildren(...rows);
  state.historyBefore = body.next_before ?? null;
  $("#history-more").disabled = !state.historyBefore;
}

async function loadKpi() {
  const hours = $("#kpi-form").hours.value;
  const r = await fetch(`/api/alarms/kpi?hours=${hours}`);
  const k = await r.json();
  const box = $("#kpi");
  const card = (title, big, extra) => {
    const c = el("div", { class: "card" });
    c.append(el("h3", {}, title));
    c.append(el("div", { class: "big" }, big));
    if (extra) c.append(extra);
    return c;
  };
  const list = (items, f) => {
    const ol = el("ol");
    for (const it of items || []) ol.append(el("li", {}, f(it)));
    return ol;
  };
  const num = (v, d = 1) => (v == null ? "—" : Number(v).toFixed(d));
  const rate = k.rate || {};
  const ack = k.ack_time || {};
  box.replaceChildren(
    card(`Alarms raised (${k.window ? k.window.hours : "?"} h)`, String(k.raised ?? 0)),
    card("Alarms per 10 min (avg / max)", `${num(rate.average_per_10min)} / ${num(rate.max_per_10min, 0)}`),
    card("Time in flood (>10 per 10 min)", `${num((rate.flood_share ?? 0) * 100)} %`),
    card("Acknowledge time p50 / p90", `${num(ack.p50_seconds, 0)} s / ${num(ack.p90_seconds, 0)} s`),
    card("Top alarms", "", list(k.top || [], (it) => `${it.alarm} — ${it.count}`)),
    card("Chattering (≥3 per minute)", String((k.chattering || []).length), list(k.chattering || [], (it) => `${it.alarm} — ${it.max_per_minute}/min`)),
    card("Standing (> 24 h)", String((k.standing || []).length), list(k.standing || [], (it) => it.alarm || String(it))),
  );
}

// ---------------------------------------------------------------- wiring

function setConnState(s, detail) {
  const node = $("#conn");
  node.className = `conn conn-${s}`;
  node.dataset.state = s;
  let label = s;
  if (s === "reconnecting") label = `reconnecting (attempt ${detail.attempt})`;
  if (s === "disconnected" && detail.reason) label = `disconnected: ${detail.reason}`;
  $(".label", node).textContent = label;
}

async function loadAudit(more = false) {
  const form = $("#audit-form");
  const params = new URLSearchParams({ limit: "100" });
  if (form.user.value) params.set("user", form.user.value.trim());
  if (form.action.value) params.set("action", form.action.value.trim());
  if (more && state.auditBefore) params.set("before", state.auditBefore);
  const r = await fetch(`/api/audit?${params}`);
  if (!r.ok) return;
  const body = await r.json();
  const rows = body.records.map((a) => {
    const tr = el("tr");
    for (const c of [a.id, a.at, a.user, a.role, a.address, a.action, a.target, a.result, a.detail]) tr.append(el("td", {}, String(c ?? "")));
    return tr;
  });
  const tbody = $("#audit-table tbody");
  if (more) tbody.append(...rows); else tbody.replaceChildren(...rows);
  state.auditBefore = body.next_before ?? null;
  $("#audit-more").disabled = !state.auditBefore;
}

async function main() {
  const linesResponse = await fetch("/api/lines");
  if (linesResponse.status === 401) {
    location.href = "/login";
    return;
  }
  const meta = await linesResponse.json();
  const tiles = $("#tiles");
  const lineSelect = $("#history-form").line;
  for (const line of meta.lines) {
    const tile = buildTile(line);
    tiles.append(tile);
    const entry = { meta: line, sample: line.latest, tile, spark: { t: [], v: [] } };
    state.lines.set(line.id, entry);
    renderTile(entry);
    lineSelect.append(el("option", { value: line.id }, line.name));
  }
  await loadSparks();

  const conn = new PlantConnection(defaultUrl());
  state.conn = conn;
  window.plant = conn; // for the diagnostics console and tests
  conn.onStatus(setConnState);
  conn.on("connected", (f) => {
    state.role = f.data.role;
    state.user = f.data.user;
    $("#user").textContent = `${f.data.user} (${f.data.role})`;
    const isAdmin = f.data.role === "admin";
    $("#audit-tab").classList.toggle("hidden", !isAdmin);
    renderAlarms();
  });
  conn.on("snapshot", (f) => {
    for (const s of f.data.lines) {
      const entry = state.lines.get(s.production_line_id);
      if (entry) { entry.sample = s; renderTile(entry); }
    }
    state.alarms.clear();
    for (const a of f.data.alarms || []) applyAlarm(a);
    renderAlarms();
  });
  conn.on("production_data", (f) => {
    for (const s of f.data) {
      const entry = state.lines.get(s.production_line_id);
      if (!entry) continue;
      entry.sample = s;
      renderTile(entry);
      extendSpark(entry, s);
    }
  });
  conn.on("alarm", (f) => {
    applyAlarm(f.data);
    renderAlarms();
  });
  conn.start();
  setInterval(() => { for (const e of state.lines.values()) drawSpark(e); }, 1000);
  for (const e of state.lines.values()) drawSpark(e);

  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => {
      for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
      for (const p of document.querySelectorAll(".panel")) p.classList.toggle("hidden", p.id !== `tab-${tab.dataset.tab}`);
      if (tab.dataset.tab === "history") loadHistory();
      if (tab.dataset.tab === "kpi") loadKpi();
      if (tab.dataset.tab === "audit") loadAudit();
    });
  }
  $("#history-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadHistory(); });
  $("#history-more").addEventListener("click", () => loadHistory(true));
  $("#kpi-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadKpi(); });
  $("#audit-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadAudit(); });
  $("#audit-more").addEventListener("click", () => loadAudit(true));
  const me = await fetch("/api/me").then((r) => (r.ok ? r.json() : null)).catch(() => null);
  const loggedIn = me && me.kind === "session";
  $("#login-link").classList.toggle("hidden", !!loggedIn);
  $("#logout").classList.toggle("hidden", !loggedIn);
  $("#logout").addEventListener("click", async () => {
    await fetch("/api/logout", { method: "POST" });
    location.reload();
  });
}

main().catch((err) => {
  console.error(err);
  document.body.prepend(el("p", { class: "error" }, `Dashboard failed to start: ${err}`));
});
