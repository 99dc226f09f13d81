// The operator console: overview tiles, device status, alarm console, annunciation, line
// detail with trend. Truth first: without live data the whole page says so (docs/console.md).
import { PlantConnection, defaultUrl } from "/static/ws.js";
import { $, $$, el, fmtDateTime, fmtNum, fmtTime, heavyFetch, tzName, priorityIcon, PRIORITY_NAMES } from "/static/util.js";
import { buildTile, renderTile, drawSpark, extendSpark, loadSparks, tagQuality } from "/static/tiles.js";
import { AlarmConsole } from "/static/alarmconsole.js";
import { Horn } from "/static/horn.js";
import { LineDetail } from "/static/detail.js";
import { Session } from "/static/session.js";
import { KpiPanel } from "/static/kpi.js";

const state = {
  lines: new Map(), // id -> {meta, sample, tile, spark}
  conn: null,
  lastFrameAt: null, // ms, wall clock of the last frame of any kind
  lastDataAt: null, // ms, wall clock of the last plant data (snapshot or production_data)
  startedAt: Date.now(),
  noDataAfterMs: 1000,
  live: false,
  detail: null,
  settings: { anonymous_sound: false, no_data_after: 1, require_comment: [] },
};

const session = new Session();
const horn = new Horn();
const kpi = new KpiPanel();

export function liveValue(lineId, tag) {
  const entry = state.lines.get(lineId);
  if (!entry) return null;
  const m = entry.meta.tags[tag];
  const s = entry.sample || {};
  let value;
  if (m && m.group === "body_temperatures") value = (s.body_temperatures || [])[Number(tag.split("_").pop()) - 1] ?? null;
  else value = s[tag] ?? null;
  return { value, quality: tagQuality(entry.sample, tag, value, state.live), unit: m ? m.unit : "", decimals: m ? m.decimals : 2 };
}

const alarms = new AlarmConsole({
  conn: () => state.conn,
  canOperate: () => session.canOperate(),
  live: () => state.live,
  lines: state.lines,
  liveValue,
  requireComment: () => state.settings.require_comment || [],
});

const tileCtx = {
  get live() { return state.live; },
  alarmFor: (line, tag) => alarms.alarmFor(line, tag),
  lineAlarm: (line) => alarms.lineAlarm(line),
};

function renderAll() {
  for (const e of state.lines.values()) renderTile(e, tileCtx);
  alarms.render();
  horn.observe(alarms.all());
  if (state.detail) state.detail.render();
}

// ---------------------------------------------------------------- truth: is the data live?

// Live needs all three: a connected socket, a frame within no_data_after, and a server that
// does not say its plant data stopped (a cluster gateway whose bus went quiet keeps sending
// heartbeats: `data_status` live:false holds the page at NO LIVE DATA until live:true or a
// snapshot with data_live true).
function checkLive() {
  const now = Date.now();
  const fresh = state.lastFrameAt !== null && now - state.lastFrameAt <= state.noDataAfterMs;
  const c = state.conn;
  const connected = !!c && c.state === "connected";
  const serverSaysLive = !c || c.dataLive();
  const live = connected && fresh && serverSaysLive;
  if (live !== state.live) {
    state.live = live;
    document.body.classList.toggle("nolive", !live);
    document.body.dataset.live = live ? "yes" : "no";
    renderAll();
  }
  const banner = $("#nodata");
  // The pill never says "connected" over frozen values.
  const pill = $("#conn .label");
  if (state.conn && state.conn.state === "connected") pill.textContent = live ? "connected" : "connected — no data";
  if (live) { banner.classList.add("hidden"); return; }
  let sinceAt = state.lastFrameAt;
  let what;
  if (!c || c.state === "connecting") what = "connecting";
  else if (c.state === "reconnecting") what = `reconnecting (attempt ${c.attempt})`;
  else if (connected && !serverSaysLive) {
    const r = c.dataStatus.reason;
    what = `plant data not reaching the server${r ? ` (${r})` : ""}`;
    // The older of the server's word and the last data this page got: a gateway notices a
    // quiet bus only after its read deadline.
    const said = Date.parse(c.dataStatus.since || "");
    sinceAt = Number.isNaN(said) ? state.lastDataAt : Math.min(said, state.lastDataAt ?? said);
  } else if (connected) what = "connected, but no data arriving";
  else what = session.ended ? `disconnected: ${session.ended}` : "disconnected";
  const since = sinceAt ? `since ${fmtTime(sinceAt)}` : "yet";
  // Give the first connection its timeout before crying wolf (the server's word is news now).
  if (serverSaysLive && !state.lastFrameAt && now - state.startedAt <= state.noDataAfterMs) return;
  banner.textContent = `no live data ${since} — ${what}`;
  banner.classList.remove("hidden");
}

// ---------------------------------------------------------------- header: clock, user, sound

function tickClock() {
  $("#clock").textContent = `${fmtDateTime(new Date())} ${tzName()}`;
}

function renderUser() {
  $("#user").textContent = session.label();
  $("#user").dataset.kind = session.kind || "";
  $("#switch-user").textContent = session.kind === "session" ? "Switch user" : "Log in";
  $("#logout").classList.toggle("hidden", session.kind !== "session");
  $("#audit-tab").classList.toggle("hidden", session.role !== "admin");
  horn.setDefault(session.kind === "anonymous" ? !!state.settings.anonymous_sound : true);
}

function renderSound() {
  const b = $("#sound");
  b.textContent = horn.soundOn ? "Sound on" : "Sound off";
  b.setAttribute("aria-pressed", horn.soundOn ? "true" : "false");
  b.dataset.on = horn.soundOn ? "yes" : "no";
  // Nothing to silence on a console whose sound is off (the banner still flashes until ack).
  $("#silence").classList.toggle("hidden", !horn.sounding);
  $("#banner").classList.toggle("flashing", horn.flashing);
  document.body.dataset.horn = horn.sounding ? "sounding" : horn.flashing ? "flashing" : "quiet";
}

function showNotice(text) {
  $("#notice-text").textContent = text;
  $("#notice").classList.toggle("hidden", !text);
}

// ---------------------------------------------------------------- devices & legend

async function loadDevices() {
  try {
    const r = await fetch("/api/devices");
    if (!r.ok) return;
    const { devices } = await r.json();
    $("#device-table tbody").replaceChildren(...devices.map((d) => {
      const up = d.state === "connected";
      return el("tr", { "data-device": d.name, "data-state": d.state, class: up ? "" : "abnormal" },
        el("td", { "data-label": "Device" }, d.name), el("td", { "data-label": "Driver" }, d.driver),
        el("td", { "data-label": "Connection" }, el("span", { class: `dev dev-${d.state}` }, up ? "connected" : d.state)),
        el("td", { "data-label": "Since" }, d.state_since ? fmtDateTime(d.state_since * 1000) : "—"),
        el("td", { "data-label": "Last good read" }, d.last_ok ? fmtDateTime(d.last_ok * 1000) : "never"),
        el("td", { "data-label": "Last error" }, d.last_error || "—"),
        el("td", { "data-label": "Errors" }, String(d.errors)));
    }));
    $("#device-table").dataset.stale = "no";
  } catch {
    $("#device-table").dataset.stale = "yes"; // server unreachable: the rows are old news
  }
}

function buildLegend() {
  const body = $("#legend-body");
  const pri = el("div", { class: "lg" }, el("b", {}, "Alarm priority"));
  for (const p of [1, 2, 3, 4]) pri.append(el("span", { class: "lg-item" }, priorityIcon(p), ` ${p} ${PRIORITY_NAMES[p]}`));
  const lim = el("div", { class: "lg" }, el("b", {}, "Limits"),
    el("span", { class: "lg-item" }, el("span", { class: "lim" }, "HH"), " high-high"), el("span", { class: "lg-item" }, el("span", { class: "lim" }, "H"), " high"),
    el("span", { class: "lg-item" }, el("span", { class: "lim" }, "L"), " low"), el("span", { class: "lg-item" }, el("span", { class: "lim" }, "LL"), " low-low"));
  const q = el("div", { class: "lg" }, el("b", {}, "Quality"),
    el("span", { class: "lg-item" }, el("span", { class: "val q-good" }, el("span", { class: "num" }, "12.0")), " good"),
    el("span", { class: "lg-item" }, el("span", { class: "val q-uncertain" }, el("span", { class: "num" }, "12.0"), el("span", { class: "qual" }, "?")), " uncertain"),
    el("span", { class: "lg-item" }, el("span", { class: "val q-stale" }, el("span", { class: "num" }, "12.0"), el("span", { class: "qual" }, "stale")), " stale / no live data"),
    el("span", { class: "lg-item" }, el("span", { class: "val q-bad" }, el("span", { class: "num" }, "—"), el("span", { class: "qual" }, "bad")), " bad"));
  body.replaceChildren(pri, lim, q);
}

// ---------------------------------------------------------------- routing

function route() {
  const hash = location.hash || "#/";
  const m = /^#\/line\/([^?]+)(?:\?(.*))?$/.exec(hash);
  const lineId = m ? decodeURIComponent(m[1]) : null;
  if (state.detail && (!lineId || state.detail.lineId !== lineId)) { state.detail.destroy(); state.detail = null; }
  // The line already shown, with other pens or another range in the URL: the URL wins.
  if (state.detail && lineId) state.detail.applyQuery(new URLSearchParams(m[2] || ""));
  $("#view-overview").classList.toggle("hidden", !!lineId);
  $("#view-line").classList.toggle("hidden", !lineId);
  if (lineId && !state.detail) {
    state.detail = new LineDetail($("#view-line"), {
      lines: state.lines, alarms, alarmsLoaded: () => state.alarmsLoaded, live: () => state.live, liveValue,
      setHash: (q) => history.replaceState(null, "", `#/line/${encodeURIComponent(lineId)}?${q}`),
    }, lineId, new URLSearchParams(m[2] || ""));
    window.scrollTo(0, 0);
  }
  const name = lineId && state.lines.get(lineId) ? state.lines.get(lineId).meta.name : "";
  $("#view-title").textContent = name ? `› ${name}` : "";
  document.title = `${name || "Plant overview"} · SCADA`;
}

// ---------------------------------------------------------------- audit tab (KPIs: kpi.js)

async function loadAudit(more = false) {
  const form = $("#audit-form");
  const params = new URLSearchParams({ limit: "100" });
  if (form.user.value) params.set("user", form.user.value.trim());
  if (form.action.value) params.set("action", form.action.value.trim());
  if (more && state.auditBefore) params.set("before", state.auditBefore);
  const r = await heavyFetch(`/api/audit?${params}`);
  if (!r.ok) return;
  const body = await r.json();
  const rows = body.records.map((a) => el("tr", {}, ...[a.id, fmtDateTime(a.at), a.user, a.role, a.address, a.action, a.target, a.result, a.detail].map((c) => el("td", {}, String(c ?? "")))));
  if (more) $("#audit-table tbody").append(...rows); else $("#audit-table tbody").replaceChildren(...rows);
  state.auditBefore = body.next_before ?? null;
  $("#audit-more").disabled = !state.auditBefore;
}

// ---------------------------------------------------------------- connection

function connect() {
  if (state.conn) state.conn.stop();
  const conn = new PlantConnection(defaultUrl());
  state.conn = conn;
  window.plant = conn; // for the diagnostics console and tests
  conn.onStatus((s, detail) => {
    const node = $("#conn");
    node.className = `conn conn-${s}`;
    node.dataset.state = s;
    let label = s;
    if (s === "reconnecting") label = `reconnecting (attempt ${detail.attempt})`;
    if (s === "disconnected" && detail.reason) label = `disconnected: ${detail.reason}`;
    $(".label", node).textContent = label;
    if (s === "disconnected" && detail.code === 1008) sessionEnded(detail.reason);
    // A refused handshake looks like any failed connection: ask who we are now.
    if (s === "reconnecting" && detail.attempt >= 1 && session.kind === "session") session.check().then((ok) => { if (!ok) sessionEnded("session no longer valid"); });
    checkLive();
  });
  conn.on("*", () => { state.lastFrameAt = Date.now(); if (!state.live) checkLive(); });
  conn.on("connected", (f) => { session.fromConnected(f.data); renderUser(); });
  conn.on("snapshot", (f) => {
    if (f.data.data_live !== false) state.lastDataAt = Date.now();
    for (const s of f.data.lines) {
      const entry = state.lines.get(s.production_line_id);
      if (entry) entry.sample = s;
    }
    // The snapshot is the truth: the alarm list is replaced whole (also after a resume the
    // server could not serve, recovered: false). Ids of another journal name other
    // occurrences: what was selected or open in a dialog under the old ids goes.
    if (f.idsChanged) {
      alarms.forgetOccurrences();
      horn.forget();
      showNotice("The server's alarm journal changed (new epoch): the alarm list was reloaded from the server.");
    }
    alarms.reset(f.data.alarms);
    state.alarmsLoaded = true;
    if (f.data.flood) alarms.flood = f.data.flood;
    renderAll();
    if (state.detail) state.detail.alarmsKnown();
    checkLive(); // a snapshot may say the data are (not) live
  });
  conn.on("data_status", () => checkLive());
  conn.on("production_data", (f) => {
    state.lastDataAt = Date.now();
    for (const s of f.data) {
      const entry = state.lines.get(s.production_line_id);
      if (!entry) continue;
      entry.sample = s;
      renderTile(entry, tileCtx);
      extendSpark(entry, s);
    }
    if (state.detail) state.detail.render();
    updateLiveCells();
  });
  conn.on("alarm", (f) => {
    alarms.apply(f.data);
    renderAll();
  });
  conn.on("alarm_flood", (f) => { alarms.flood = f.data; alarms.renderBanner(); });
  // The resume after a reconnect was not served (ws.js asks again while the server is busy,
  // within a bound): the list shows the current state, but events missed meanwhile are not in
  // it; the alarm history has them.
  conn.on("resume_failed", (f) => {
    showNotice(`Alarm events missed while disconnected could not be replayed: ${f.data.reason}. The alarm list shows the current state; the History tab has what happened meanwhile.`);
  });
  conn.start();
}

// Live values in the alarm table change every tick; update the cells, not the whole table.
function updateLiveCells() {
  for (const tr of $$("#alarm-table tbody tr")) {
    const a = alarms.alarms.get(tr.dataset.alarm);
    const cell = tr.querySelector(".live-value");
    if (!a || !cell) continue;
    const lv = alarms.liveOf(a);
    cell.textContent = lv ? `${fmtNum(lv.value, alarms.decimals(a))} ${alarms.unit(a)}`.trim() : "—";
    cell.classList.toggle("q-stale", !state.live || (lv && lv.quality !== "good"));
  }
}

async function sessionEnded(reason) {
  const next = await session.recover(reason);
  renderUser();
  if (next === "login") {
    location.href = `/login?reason=${encodeURIComponent(`Your session ended: ${reason || "logged out"}`)}`;
    return;
  }
  showNotice(`Your session ended (${reason || "logged out"}). You are now viewing as not logged in — view only.`);
  connect();
}

// ---------------------------------------------------------------- start

async function main() {
  const ok = await session.start();
  if (!ok) return; // redirected to the login page
  const [linesResponse, settings] = await Promise.all([
    fetch("/api/lines"),
    fetch("/api/console").then((r) => (r.ok ? r.json() : null)).catch(() => null),
  ]);
  if (linesResponse.status === 401) { location.href = "/login?reason=login%20required"; return; }
  if (settings) state.settings = settings;
  const meta = await linesResponse.json();
  state.noDataAfterMs = 1000 * (settings ? settings.no_data_after : Math.max(1, ...meta.lines.map((l) => l.stale_after || 1)));
  for (const line of meta.lines) {
    const tile = buildTile(line, (id) => { location.hash = `#/line/${encodeURIComponent(id)}`; });
    $("#tiles").append(tile);
    state.lines.set(line.id, { meta: line, sample: line.latest, tile, spark: { t: [], v: [] } });
    for (const sel of [$("#alarm-filters").line, $("#history-form").line]) sel.append(el("option", { value: line.id }, line.name));
  }
  buildLegend();
  renderUser();
  renderAll();
  loadSparks([...state.lines.values()]);

  horn.onChange(renderSound);
  alarms.wire();
  $("#sound").addEventListener("click", () => horn.setSound(!horn.soundOn));
  // Browsers start audio only after a gesture on the page: any click unlocks the horn.
  document.addEventListener("pointerdown", () => horn.unlock());
  $("#silence").addEventListener("click", () => horn.silence());
  $("#notice-close").addEventListener("click", () => showNotice(""));
  $("#logout").addEventListener("click", async () => { state.conn.stop(); await session.logout(); location.reload(); });
  $("#switch-user").addEventListener("click", () => {
    $("#switch-form").reset();
    $("#switch-error").textContent = "";
    $("#login-dialog").showModal();
  });
  $("#switch-form").addEventListener("submit", async (ev) => {
    if (ev.submitter && ev.submitter.value === "cancel") return;
    ev.preventDefault();
    const f = ev.target;
    state.conn.stop(); // the old session's socket ends here, not as a surprise 1008
    const err = await session.switchUser(f.username.value, f.password.value);
    renderUser();
    connect();
    if (err) { $("#switch-error").textContent = err; return; }
    $("#login-dialog").close();
    showNotice("");
  });
  for (const t of $$(".tab")) t.addEventListener("click", () => {
    if (t.dataset.tab === "kpi") kpi.load();
    if (t.dataset.tab === "audit") loadAudit();
  });
  kpi.wire();
  $("#audit-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadAudit(); });
  $("#audit-more").addEventListener("click", () => loadAudit(true));
  // The banners stick right under the header, whatever height it wraps to.
  const header = $("header.top");
  new ResizeObserver(() => document.documentElement.style.setProperty("--header-h", `${header.offsetHeight}px`)).observe(header);
  window.addEventListener("hashchange", route);
  route();
  renderSound();
  connect();
  tickClock();
  setInterval(tickClock, 1000);
  setInterval(checkLive, 250);
  setInterval(() => { for (const e of state.lines.values()) drawSpark(e, state.live); }, 1000);
  setInterval(() => { if (alarms.tab === "shelved") alarms.render(); }, 5000);
  loadDevices();
  setInterval(loadDevices, 3000);
  if (session.notice) showNotice(session.notice);
  window.consoleState = { state, alarms, horn, session, kpi };
}

main().catch((err) => {
  console.error(err);
  document.body.prepend(el("p", { class: "error" }, `Console failed to start: ${err}`));
});
