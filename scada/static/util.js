// Shared helpers: DOM building, the one date/time format, priorities, limit states.

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role" || k === "for") node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) if (c !== undefined && c !== null) node.append(c);
  return node;
}

// ---------------------------------------------------------------- time: one format everywhere
// Local time of the browser, "YYYY-MM-DD HH:MM:SS"; the header clock names the time zone.

const pad = (n, w = 2) => String(n).padStart(w, "0");

export function toDate(x) {
  if (x === null || x === undefined || x === "") return null;
  const d = x instanceof Date ? x : new Date(typeof x === "number" ? x : String(x));
  return Number.isNaN(d.getTime()) ? null : d;
}

export function fmtTime(x) {
  const d = toDate(x);
  return d ? `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}` : "—";
}

export function fmtDateTime(x) {
  const d = toDate(x);
  return d ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${fmtTime(d)}` : "—";
}

// Names of UTC itself: the clock then says "UTC" once, not "UTC+00:00 UTC".
const UTC_ZONES = /^(Etc\/)?(UTC|UCT|GMT|GMT0|Universal|Zulu|Greenwich)$/;

export function tzName(date = new Date()) {
  const offset = -date.getTimezoneOffset();
  let zone = "";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch { zone = ""; }
  if (offset === 0 && (!zone || UTC_ZONES.test(zone))) return "UTC";
  const sign = offset >= 0 ? "+" : "−";
  const hh = pad(Math.floor(Math.abs(offset) / 60));
  const mm = pad(Math.abs(offset) % 60);
  return `UTC${sign}${hh}:${mm}${zone ? ` ${zone}` : ""}`;
}

// A date field in the console's one format, "YYYY-MM-DD HH:MM" (seconds optional, a "T" for
// the space accepted), in the browser's time zone; null when it is not one.
export function parseDateTime(text) {
  const m = /^\s*(\d{4})-(\d\d)-(\d\d)(?:[ T](\d\d):(\d\d)(?::(\d\d))?)?\s*$/.exec(text || "");
  if (!m) return null;
  const [y, mo, d, h, mi, s] = m.slice(1).map((v) => Number(v || 0));
  const date = new Date(y, mo - 1, d, h, mi, s);
  // Reject what Date would roll over (2026-02-30, 25:00).
  if (date.getFullYear() !== y || date.getMonth() !== mo - 1 || date.getDate() !== d || date.getHours() !== h || date.getMinutes() !== mi) return null;
  return date;
}

// "YYYY-MM-DD HH:MM" of a date, for the date fields.
export function fmtDateMinutes(x) {
  const d = toDate(x);
  return d ? fmtDateTime(d).slice(0, 16) : "";
}

// ISO 8601 in UTC with its zone ("2026-12-06T05:52:49.123Z"): for files that leave the console.
export function isoUtc(x) {
  const d = toDate(x);
  return d ? d.toISOString() : "";
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  let s = Math.max(0, Math.round(ms / 1000));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${pad(m)} min`;
  if (m) return `${m} min ${pad(s)} s`;
  return `${s} s`;
}

// A dotted name ("line6.motor_current.hi") that may wrap after its dots, not inside a word.
export function dotted(name) {
  const span = el("span", { class: "mono" });
  String(name ?? "").split(".").forEach((part, i) => {
    if (i) span.append(".", document.createElement("wbr"));
    span.append(part);
  });
  return span;
}

// ---------------------------------------------------------------- numbers

export function fmtNum(value, decimals = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return typeof value === "number" ? value.toFixed(decimals) : String(value);
}

// ---------------------------------------------------------------- priorities (ISA-18.2 / ISA-101)
// 1 critical, 2 high, 3 medium, 4 low; each has its own colour AND its own shape and number.

export const PRIORITY_NAMES = { 1: "critical", 2: "high", 3: "medium", 4: "low" };
const BY_SEVERITY = { critical: 1, high: 2, medium: 3, low: 4 };

export function priorityOf(alarm) {
  if (alarm && [1, 2, 3, 4].includes(alarm.priority)) return alarm.priority;
  return BY_SEVERITY[alarm && alarm.severity] || 4;
}

const SVG = "http://www.w3.org/2000/svg";
const SHAPES = {
  1: "M8 1 L15 8 L8 15 L1 8 Z", // diamond
  2: "M8 1 L15 14 L1 14 Z", // triangle
  3: "M2 2 H14 V14 H2 Z", // square
  4: "M8 1.5 A6.5 6.5 0 1 1 7.99 1.5 Z", // circle
};

export function priorityIcon(p, withLabel = false) {
  const wrap = el("span", { class: `pri pri-${p}`, "data-priority": p, title: `priority ${p} (${PRIORITY_NAMES[p]})` });
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", SHAPES[p]);
  svg.append(path);
  const num = document.createElementNS(SVG, "text");
  num.setAttribute("x", "8");
  num.setAttribute("y", p === 2 ? "13" : "12");
  num.setAttribute("text-anchor", "middle");
  num.textContent = String(p);
  svg.append(num);
  wrap.append(svg);
  if (withLabel) wrap.append(el("span", { class: "pri-label" }, PRIORITY_NAMES[p]));
  return wrap;
}

// ---------------------------------------------------------------- limit state of a value

export const LIMIT_LABEL = { hihi: "HH", hi: "H", lo: "L", lolo: "LL" };

export function limitState(value, limits) {
  if (value === null || value === undefined || !limits) return null;
  if (limits.hihi != null && value >= limits.hihi) return "hihi";
  if (limits.hi != null && value >= limits.hi) return "hi";
  if (limits.lolo != null && value <= limits.lolo) return "lolo";
  if (limits.lo != null && value <= limits.lo) return "lo";
  return null;
}

export const ACTIVE = new Set(["unacked_active", "acked_active"]);
export const UNACKED = new Set(["unacked_active", "unacked_cleared"]);

export function isUnacked(a) {
  return UNACKED.has(a.state) || (UNACKED.has(a.alarm_state) && a.state !== "shelved" && a.state !== "suppressed");
}

export function csvCell(v) {
  const s = v === null || v === undefined ? "" : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export function downloadCsv(name, rows) {
  const text = rows.map((r) => r.map(csvCell).join(",")).join("\r\n") + "\r\n";
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// Heavy reads (history, alarm history, KPIs, audit) run one at a time per client on the
// server, which answers 429 + Retry-After beyond that: queue them here, retry a 429 a few times.
let heavyChain = Promise.resolve();

export function heavyFetch(url, tries = 8) {
  const run = async () => {
    for (let i = 0; ; i++) {
      const r = await fetch(url);
      if (r.status !== 429 || i >= tries) return r;
      const wait = Number(r.headers.get("Retry-After")) || 1;
      await new Promise((res) => setTimeout(res, wait * 1000 * (0.5 + Math.random())));
    }
  };
  const p = heavyChain.then(run, run);
  heavyChain = p.catch(() => {});
  return p;
}
