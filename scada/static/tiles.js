// Overview tiles, ISA-101 style: grey when normal, colour only where something is abnormal
// (alarm priority colour + icon + limit text), quality shown for every value, state unknown
// when the line's data are stale or bad or no live data arrive at all.
import { $, el, fmtNum, heavyFetch, limitState, LIMIT_LABEL, priorityIcon } from "/static/util.js";

const SPARK_SECONDS = 300;
const OTHER_TAGS = [["line_speed", "Speed"], ["motor_current", "Motor"], ["melt_pressure", "Melt"]];

// Per-value quality from a LineSample: `bad_tags` lists tags that are stale or bad; a missing
// value is bad. Without live data every value is stale, whatever the last sample said.
export function tagQuality(sample, tag, value, live) {
  if (!live) return "stale";
  if (!sample) return "bad";
  const flagged = (sample.bad_tags || []).includes(tag);
  if (value === null || value === undefined) return "bad";
  if (flagged) return sample.quality === "bad" ? "stale" : sample.quality;
  if (sample.quality === "uncertain") return "uncertain";
  return "good";
}

// The line's state is unknown without live data, when the line's data are stale, or when the
// state tag itself is bad or stale (a device that stopped answering marks every tag bad).
export function lineKnown(sample, live) {
  return !!(live && sample && sample.quality !== "stale" && sample.state != null &&
    !(sample.bad_tags || []).includes("state"));
}

// A value cell: number, unit, limit text (H/HH/L/LL) and quality text; classes drive the look.
export function valueCell(tag, meta, extraClass = "") {
  const cell = el("span", { class: `val ${extraClass}`, "data-tag": tag });
  cell.append(el("span", { class: "num" }, "—"));
  cell.append(el("span", { class: "unit" }, meta && meta.unit ? meta.unit : ""));
  cell.append(el("span", { class: "lim", "data-role": "limit" }));
  cell.append(el("span", { class: "qual", "data-role": "quality" }));
  return cell;
}

// alarmFor(tag) -> the tag's most important active alarm (or null); it colours the value.
export function setValueCell(cell, value, meta, quality, alarm) {
  if (!cell) return;
  $(".num", cell).textContent = fmtNum(value, meta ? meta.decimals : 2);
  const lim = quality === "good" || quality === "uncertain" ? limitState(value, meta && meta.limits) : null;
  const limEl = $(".lim", cell);
  limEl.textContent = lim ? LIMIT_LABEL[lim] : "";
  limEl.title = lim ? `${lim} limit ${meta.limits[lim]} ${meta.unit || ""}` : "";
  const qEl = $(".qual", cell);
  qEl.textContent = quality === "good" ? "" : quality === "uncertain" ? "?" : quality;
  qEl.title = quality === "good" ? "" : `quality: ${quality}`;
  cell.dataset.quality = quality;
  cell.dataset.limit = lim || "";
  const pri = alarm ? alarm.priority : 0;
  cell.dataset.priority = pri ? String(pri) : "";
  cell.className = cell.className.replace(/\b(q-\w+|lim-\w+|p-\d)\b/g, "").trim();
  cell.classList.add(`q-${quality}`);
  if (lim) cell.classList.add(`lim-${lim}`);
  if (pri) cell.classList.add(`p-${pri}`);
}

export function buildTile(meta, onOpen) {
  const tile = el("article", { class: "tile", "data-line": meta.id, "data-testid": "tile", tabIndex: 0 });
  tile.addEventListener("click", (ev) => { if (!ev.target.closest("a,button")) onOpen(meta.id); });
  tile.addEventListener("keydown", (ev) => { if (ev.key === "Enter") onOpen(meta.id); });
  const head = el("h2");
  head.append(el("a", { href: `#/line/${encodeURIComponent(meta.id)}`, class: "name" }, meta.name));
  head.append(el("span", { class: "alarm-icon", "data-role": "alarm-icon" }));
  head.append(el("span", { class: "state", "data-role": "state" }, "unknown"));
  head.append(el("span", { class: "lq", "data-role": "quality" }, ""));
  tile.append(head);

  const zones = el("div", { class: "zones" });
  const temps = Object.entries(meta.tags).filter(([, t]) => t.group === "body_temperatures");
  temps.forEach(([name], i) => {
    const z = el("div", { class: "zone" }, el("span", { class: "k" }, `Zone ${i + 1}`));
    z.append(valueCell(name, meta.tags[name]));
    zones.append(z);
  });
  if (meta.tags.die_temperature) {
    zones.append(el("div", { class: "zone" }, el("span", { class: "k" }, "Die"), valueCell("die_temperature", meta.tags.die_temperature)));
  }
  tile.append(zones);

  const d = meta.tags.diameter || {};
  const diam = el("div", { class: "diam" });
  diam.append(el("div", { class: "row" }, el("span", { class: "k" }, "Diameter"), valueCell("diameter", d, "big")));
  const band = el("div", { class: "band", title: "limits lolo · lo · tolerance · hi · hihi" });
  band.append(el("div", { class: "zone-lo" }), el("div", { class: "zone-hi" }), el("div", { class: "tol" }), el("div", { class: "sp" }), el("div", { class: "mark" }));
  diam.append(band);
  diam.append(el("div", { class: "k tol-text" }, d.setpoint != null ? `setpoint ${fmtNum(d.setpoint, d.decimals)} ± ${fmtNum(d.tolerance, d.decimals)} ${d.unit || ""}` : ""));
  tile.append(diam);

  const m = el("div", { class: "others" });
  for (const [tag, label] of OTHER_TAGS) {
    if (!meta.tags[tag]) continue;
    m.append(el("div", { class: "other" }, el("span", { class: "k" }, label), valueCell(tag, meta.tags[tag])));
  }
  tile.append(m);
  tile.append(el("canvas", { class: "spark", width: 600, height: 80, title: `diameter, last ${SPARK_SECONDS / 60} min` }));
  return tile;
}

function bandGeometry(meta) {
  const d = meta.tags.diameter || {};
  const sp = d.setpoint ?? 0;
  const tol = d.tolerance ?? 0.1;
  const limits = d.limits || {};
  const lo = (limits.lolo ?? limits.lo ?? sp - 4 * tol) - tol;
  const hi = (limits.hihi ?? limits.hi ?? sp + 4 * tol) + tol;
  const span = hi - lo || 1;
  return { sp, tol, lo, hi, span, limits, pos: (v) => Math.max(0, Math.min(100, ((v - lo) / span) * 100)) };
}

// ctx: {live, alarmFor(lineId, tag) -> alarm|null, lineAlarm(lineId) -> alarm|null}
export function renderTile(entry, ctx) {
  const { meta, sample, tile } = entry;
  const live = ctx.live;
  const known = lineKnown(sample, live);
  const st = $('[data-role="state"]', tile);
  const stateText = known ? sample.state : "unknown";
  st.textContent = stateText;
  st.dataset.state = stateText;
  tile.dataset.state = stateText;
  const q = !live ? "no data" : sample ? sample.quality : "bad";
  const lq = $('[data-role="quality"]', tile);
  lq.textContent = q === "good" ? "" : q;
  lq.className = `lq lq-${q.replace(" ", "-")}`;
  tile.dataset.quality = live ? q : "stale";
  tile.classList.toggle("nolive", !live);

  const s = sample || {};
  const temps = s.body_temperatures || [];
  for (const [name, tm] of Object.entries(meta.tags)) {
    if (tm.group !== "body_temperatures") continue;
    const i = Number(name.split("_").pop()) - 1;
    const v = temps[i] ?? null;
    setValueCell($(`[data-tag="${name}"]`, tile), v, tm, tagQuality(sample, name, v, live), ctx.alarmFor(meta.id, name));
  }
  for (const tag of ["die_temperature", "diameter", ...OTHER_TAGS.map(([t]) => t)]) {
    if (!meta.tags[tag]) continue;
    const v = s[tag] ?? null;
    setValueCell($(`[data-tag="${tag}"]`, tile), v, meta.tags[tag], tagQuality(sample, tag, v, live), ctx.alarmFor(meta.id, tag));
  }
  const top = ctx.lineAlarm(meta.id);
  const icon = $('[data-role="alarm-icon"]', tile);
  icon.replaceChildren(...(top ? [priorityIcon(top.priority)] : []));
  tile.dataset.alarm = top ? (top.unacked ? "alarm" : "alarm-acked") : "";
  tile.dataset.priority = top ? String(top.priority) : "";

  const g = bandGeometry(meta);
  const lim = g.limits;
  $(".band .tol", tile).style.left = `${g.pos(g.sp - g.tol)}%`;
  $(".band .tol", tile).style.width = `${g.pos(g.sp + g.tol) - g.pos(g.sp - g.tol)}%`;
  $(".band .zone-lo", tile).style.width = `${g.pos(lim.lo ?? g.lo)}%`;
  $(".band .zone-hi", tile).style.left = `${g.pos(lim.hi ?? g.hi)}%`;
  $(".band .sp", tile).style.left = `${g.pos(g.sp)}%`;
  const mark = $(".band .mark", tile);
  if (s.diameter == null) mark.style.display = "none";
  else {
    mark.style.display = "";
    mark.style.left = `calc(${g.pos(s.diameter)}% - 2px)`;
  }
}

export function extendSpark(entry, sample) {
  const sp = entry.spark;
  const ts = sample.timestamp ? Date.parse(sample.timestamp) : Date.now();
  const last = sp.t.length ? sp.t[sp.t.length - 1] : 0;
  const value = sample.quality === "good" || sample.quality === "uncertain" ? sample.diameter : null;
  if (ts - last >= 1000) { sp.t.push(ts); sp.v.push(value); }
  const cutoff = Date.now() - SPARK_SECONDS * 1000;
  while (sp.t.length && sp.t[0] < cutoff) { sp.t.shift(); sp.v.shift(); }
}

// One history request for every tile (heavy reads are rate-limited per client).
export async function loadSparks(entries) {
  const byTag = new Map(entries.filter((e) => e.meta.tags.diameter).map((e) => [`line${e.meta.id}.diameter`, e]));
  if (!byTag.size) return;
  const q = new URLSearchParams({ tags: [...byTag.keys()].join(","), from: `-${SPARK_SECONDS / 60}m`, to: "now", points: "300" });
  try {
    const r = await heavyFetch(`/api/history?${q}`);
    if (!r.ok) return;
    const body = await r.json();
    for (const s of body.series || []) {
      const entry = byTag.get(s.tag);
      if (entry) entry.spark = { t: s.t.slice(), v: s.mean.slice() };
    }
  } catch (err) {
    console.warn("spark history failed", err);
  }
}

export function drawSpark(entry, live) {
  const canvas = $("canvas.spark", entry.tile);
  const ctx = canvas.getContext("2d");
  const { t, v } = entry.spark;
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const g = bandGeometry(entry.meta);
  const now = Date.now();
  const x = (ts) => w - ((now - ts) / (SPARK_SECONDS * 1000)) * w;
  const y = (val) => h - ((val - g.lo) / g.span) * h;
  ctx.fillStyle = "rgba(255,255,255,0.06)";
  ctx.fillRect(0, y(g.sp + g.tol), w, y(g.sp - g.tol) - y(g.sp + g.tol));
  ctx.strokeStyle = "rgba(255,255,255,0.25)";
  ctx.setLineDash([4, 4]);
  for (const k of ["hi", "lo"]) {
    if (g.limits[k] == null) continue;
    ctx.beginPath(); ctx.moveTo(0, y(g.limits[k])); ctx.lineTo(w, y(g.limits[k])); ctx.stroke();
  }
  ctx.setLineDash([]);
  ctx.strokeStyle = live ? "#c9d1d9" : "#5c6570";
  ctx.lineWidth = 2;
  ctx.beginPath();
  let pen = false;
  for (let i = 0; i < t.length; i++) {
    if (v[i] === null || (i > 0 && t[i] - t[i - 1] > 5000)) { pen = false; if (v[i] === null) continue; }
    const px = x(t[i]), py = Math.max(0, Math.min(h, y(v[i])));
    if (pen) ctx.lineTo(px, py); else ctx.moveTo(px, py);
    pen = true;
  }
  ctx.stroke();
}
