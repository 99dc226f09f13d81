// The alarm-system KPI panel: every figure of GET /api/alarms/kpi (ISA-18.2 / EEMUA 191,
// docs/alarms.md). Grey when a figure meets its target; a figure off target gets a coloured
// edge AND the words "off target", so it reads without colour vision too.
import { $, el, fmtDateTime, fmtDuration, heavyFetch, priorityIcon, PRIORITY_NAMES } from "/static/util.js";

const SEVERITIES = ["critical", "high", "medium", "low"];

// When a figure is off its ISA-18.2 / EEMUA 191 target (docs/alarms.md, "KPIs").
export const OFF_TARGET = {
  average: (v) => v > 2, // ~1 acceptable, 2 manageable per 10 min
  peak: (v) => v > 10, // a 10-minute bin over 10 alarms is a flood
  floodShare: (v) => v >= 0.01, // < 1 % of the time in flood
  episodes: (n) => n > 0,
  // The top 10 under 5 % of the load: reachable only from 200 alarms on (10 / 200).
  topShare: (v, raised) => raised >= 200 && v > 0.05,
  chattering: (n) => n > 0,
  stale: (n) => n >= 5, // < 5 stale alarms present
  // Priorities 1–3 above twice their target share, priority 4 under three quarters of it.
  priority: (sev, share, target) => (sev === "low" ? share < target * 0.75 : share > target * 2),
};

const pct = (v, d = 1) => (v == null ? "—" : `${(Number(v) * 100).toFixed(d)} %`);
const num = (v, d = 0) => (v == null ? "—" : Number(v).toFixed(d));

function offMark(off) {
  return off ? el("span", { class: "off-mark" }, "off target") : null;
}

function figure(key, title, value, target, off) {
  return el("div", { class: `card fig${off ? " off" : ""}`, "data-kpi": key, "data-off": off ? "yes" : "no" },
    el("h3", {}, title),
    el("div", { class: "big" }, el("span", { class: "v" }, value), offMark(off)),
    el("div", { class: "target" }, target));
}

function section(key, title, note, off, ...body) {
  return el("section", { class: `card sect${off ? " off" : ""}`, "data-kpi": key, "data-off": off ? "yes" : "no" },
    el("h3", {}, title, offMark(off)), note ? el("p", { class: "muted" }, note) : null, ...body);
}

function bar(share, target, cls = "") {
  const b = el("span", { class: `bar ${cls}` }, el("span", { class: "fill" }));
  b.firstChild.style.width = `${Math.min(100, Math.max(0, share * 100))}%`;
  if (target != null) {
    const t = el("span", { class: "tgt", title: `target ${pct(target, 0)}` });
    t.style.left = `${Math.min(100, target * 100)}%`;
    b.append(t);
  }
  return b;
}

function table(cls, head, rows, empty) {
  if (!rows.length) return el("p", { class: "empty" }, empty);
  return el("table", { class: `grid ${cls}` },
    el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows));
}

const td = (label, ...content) => el("td", label ? { "data-label": label } : { class: "barcell" }, ...content);

function priorities(k) {
  const dist = k.priority || {};
  let anyOff = false;
  const rows = SEVERITIES.map((sev) => {
    const p = dist[sev] || { priority: SEVERITIES.indexOf(sev) + 1, count: 0, share: 0, target_share: 0 };
    const off = k.raised > 0 && OFF_TARGET.priority(sev, p.share, p.target_share);
    anyOff ||= off;
    return el("tr", { "data-severity": sev, class: off ? `off p-${p.priority}` : "" },
      td("Priority", priorityIcon(p.priority), ` ${p.priority} ${PRIORITY_NAMES[p.priority]}`),
      td("Alarms", el("span", { class: "count" }, String(p.count))),
      td("Share", el("span", { class: "share" }, pct(p.share)), offMark(off)),
      td("Target", el("span", { class: "tshare" }, `${sev === "critical" ? "< " : "≈ "}${pct(p.target_share, 0)}`)),
      td("", bar(p.share, p.target_share)));
  });
  return section("priority", "Priority distribution",
    "Share of annunciated alarms per priority against the ISA-18.2 / EEMUA 191 target (about 80 % low, 15 % medium, 5 % high, under 1 % critical); | marks the target.",
    anyOff, table("kpi-prio", ["Priority", "Alarms", "Share", "Target", ""], rows, ""));
}

function top(k) {
  const rows = (k.top || []).map((t, i) => el("tr", { "data-alarm": t.alarm },
    td("#", String(i + 1)),
    td("Alarm", el("span", { class: "name" }, t.alarm)),
    td("Alarms", el("span", { class: "count" }, String(t.count))),
    td("Share", el("span", { class: "share" }, pct(t.share))),
    td("", bar(t.share, null))));
  const off = OFF_TARGET.topShare(k.top_share ?? 0, k.raised ?? 0);
  return section("top", "Top 10 contributors",
    el("span", {}, "Together ", el("b", { "data-kpi": "top_share" }, pct(k.top_share)), ` of all annunciated alarms (target ≤ 5 %${(k.raised ?? 0) < 200 ? ", judged from 200 alarms on" : ""}): rationalise from the top.`),
    off, table("kpi-top", ["#", "Alarm", "Alarms", "Share", ""], rows, "No alarms in this window."));
}

function floods(k) {
  const f = k.floods || { count: 0, episodes: [] };
  const rows = [...(f.episodes || [])].reverse().map((e) => {
    const end = e.ended_at ? Date.parse(e.ended_at) : Date.now();
    return el("tr", { class: e.ended_at ? "" : "ongoing" },
      td("Started", fmtDateTime(e.started_at)),
      td("Ended", e.ended_at ? fmtDateTime(e.ended_at) : el("b", {}, "still in flood")),
      td("Duration", fmtDuration(end - Date.parse(e.started_at))),
      td("Alarms", el("span", { class: "count" }, String(e.count))),
      td("Top contributors", el("span", { class: "contrib" }, (e.top || []).map((t) => `${t.alarm} (${t.count})`).join(", "))));
  });
  const shown = (f.episodes || []).length;
  return section("floods", `Flood episodes (${f.count})`,
    `More than 10 alarms in 10 minutes starts an episode, fewer than 5 ends it. Newest first${f.count > shown ? `, the ${shown} newest of ${f.count}` : ""}.`,
    OFF_TARGET.episodes(f.count), table("kpi-floods", ["Started", "Ended", "Duration", "Alarms", "Top contributors"], rows, "No flood in this window."));
}

function chattering(k) {
  const list = k.chattering || [];
  const rows = list.map((c) => el("tr", { "data-alarm": c.alarm },
    td("Alarm", el("span", { class: "name" }, c.alarm)),
    td("Most in 60 s", String(c.max_per_minute)),
    td("Activations", String(c.activations)),
    td("Suggested off-delay", `${num(c.suggested_off_delay_s)} s`),
    td("Suggested deadband", c.suggested_deadband_percent == null ? "—"
      : `${c.suggested_deadband_percent} % of span${c.suggested_deadband == null ? "" : ` = ${c.suggested_deadband}`}`)));
  return section("chattering", `Chattering alarms (${list.length})`,
    "Raised 3 or more times within 60 s. The suggested off-delay would have held one occurrence; deadbands are starting values (ISA-TR18.2.2).",
    OFF_TARGET.chattering(list.length), table("kpi-chatter", ["Alarm", "Most in 60 s", "Activations", "Suggested off-delay", "Suggested deadband"], rows, "None."));
}

function stale(k) {
  const list = k.stale || k.standing || [];
  const rows = list.map((s) => el("tr", { "data-alarm": s.alarm },
    td("Alarm", el("span", { class: "name" }, s.alarm)),
    td("Occurrence", String(s.id)),
    td("Active for", `${num(s.hours, 1)} h`)));
  return section("stale", `Stale alarms (${list.length})`, "Active for more than 24 h at the end of the window (target: fewer than 5).",
    OFF_TARGET.stale(list.length), table("kpi-stale", ["Alarm", "Occurrence", "Active for"], rows, "None."));
}

export function renderKpi(root, k) {
  const rate = k.rate || {};
  const ack = k.ack_time || {};
  const f = k.floods || { count: 0 };
  const figures = el("div", { class: "kpi-figs" },
    figure("raised", "Alarms annunciated", String(k.raised ?? 0), `${k.suppressed_raised ?? 0} more suppressed or shelved (not counted)`, false),
    figure("average_per_10min", "Average per 10 min", num(rate.average_per_10min, 3), "target ≈ 1, at most 2", OFF_TARGET.average(rate.average_per_10min ?? 0)),
    figure("max_per_10min", "Peak per 10 min", String(rate.max_per_10min ?? 0), "target ≤ 10", OFF_TARGET.peak(rate.max_per_10min ?? 0)),
    figure("flood_share", "Time in flood", pct(rate.flood_share, 2), `${rate.flood_bins ?? 0} of ${rate.bins ?? 0} 10-min windows; target < 1 %`, OFF_TARGET.floodShare(rate.flood_share ?? 0)),
    figure("flood_count", "Flood episodes", String(f.count ?? 0), "target: none", OFF_TARGET.episodes(f.count ?? 0)),
    figure("chattering_count", "Chattering alarms", String((k.chattering || []).length), "target: none", OFF_TARGET.chattering((k.chattering || []).length)),
    figure("stale_count", "Stale alarms (> 24 h)", String((k.stale || []).length), "target < 5", OFF_TARGET.stale((k.stale || []).length)),
    figure("ack_time", "Time to acknowledge p50 / p90", ack.count ? `${num(ack.p50_seconds)} s / ${num(ack.p90_seconds)} s` : "—", `${ack.count ?? 0} acknowledgements`, false));
  root.replaceChildren(figures,
    el("div", { class: "kpi-sects" }, priorities(k), top(k), floods(k), chattering(k), stale(k)));
}

// The tab: window selector, one heavy read at a time (util.heavyFetch queues and retries 429).
export class KpiPanel {
  constructor() {
    this.hours = 720;
    this.seq = 0;
    this.data = null;
  }

  wire() {
    for (const b of document.querySelectorAll("#kpi-window button[data-hours]")) {
      b.addEventListener("click", () => { this.hours = Number(b.dataset.hours); this.load(); });
    }
    $("#kpi-refresh").addEventListener("click", () => this.load());
  }

  async load() {
    const seq = ++this.seq;
    const root = $("#kpi");
    for (const b of document.querySelectorAll("#kpi-window button[data-hours]")) {
      b.setAttribute("aria-pressed", Number(b.dataset.hours) === this.hours ? "true" : "false");
    }
    const status = $("#kpi-status");
    status.textContent = "Loading…";
    root.dataset.loaded = "no";
    root.setAttribute("aria-busy", "true");
    let r;
    try {
      r = await heavyFetch(`/api/alarms/kpi?hours=${this.hours}`);
    } catch (err) {
      if (seq === this.seq) status.textContent = `Could not reach the server (${err.message}).`;
      return;
    }
    if (seq !== this.seq) return; // a newer window was chosen meanwhile
    root.removeAttribute("aria-busy");
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      status.textContent = r.status === 429 ? "The server is busy with other long reads; try again in a moment."
        : `KPIs unavailable: ${body.error || r.status}`;
      return;
    }
    const k = await r.json();
    this.data = k;
    const w = k.window || {};
    status.textContent = `${fmtDateTime(w.start)} – ${fmtDateTime(w.end)} (${w.hours} h), computed ${fmtDateTime(new Date())}`;
    renderKpi(root, k);
    root.dataset.loaded = "yes";
    root.dataset.hours = String(this.hours);
  }
}
