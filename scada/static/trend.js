// Multi-pen trend on uPlot (vendored, static/vendor/): history from GET /api/history (docs/
// protocol contract 1), min/max band per bucket, limits drawn, gaps left as gaps, zoom by
// dragging, pan and range buttons, a cursor read-out, and live points at the right edge.
import { $, el, fmtDateTime, fmtNum, heavyFetch } from "/static/util.js";

// The time axis's labels: uPlot's default axis font, named so the tick spacing can measure them.
const AXIS_FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", sans-serif';
export const RANGES = [["15m", 15 * 60], ["1h", 3600], ["8h", 8 * 3600], ["24h", 86400], ["7d", 7 * 86400], ["30d", 30 * 86400]];
const COLOURS = ["#6cb6ff", "#56d4dd", "#d2a8ff", "#e6edf3", "#a5d6a7", "#ff9bce"];
const LIMIT_STYLE = { hihi: [2, []], hi: [1, [6, 4]], lo: [1, [6, 4]], lolo: [2, []] };

function splitTag(path) {
  const m = /^line(.+?)\.(.+)$/.exec(path);
  return m ? { line: m[1], tag: m[2] } : { line: null, tag: path };
}

export class Trend {
  // ctx: {lines: Map(id -> {meta, sample}), liveValue(line, tag) -> {value, quality}, onChange(pens, range)}
  constructor(root, ctx, pens, range) {
    this.root = root;
    this.ctx = ctx;
    this.pens = pens.slice(0, COLOURS.length);
    this.range = range; // {name} relative to now, or {from, to} epoch seconds
    this.plot = null;
    this.series = [];
    this.source = null;
    this.loaded = 0;
    this.build();
  }

  get duration() {
    if (this.range.name) return RANGES.find(([n]) => n === this.range.name)[1];
    return this.range.to - this.range.from;
  }

  get followsNow() { return !!this.range.name; }

  window() {
    if (this.range.name) { const to = Date.now() / 1000; return { from: to - this.duration, to }; }
    return { from: this.range.from, to: this.range.to };
  }

  build() {
    const bar = el("div", { class: "trend-bar" });
    const ranges = el("span", { class: "quick", "data-role": "ranges" });
    for (const [name] of RANGES) {
      const b = el("button", { type: "button", "data-range": name }, name);
      b.addEventListener("click", () => { this.range = { name }; this.changed(); });
      ranges.append(b);
    }
    const pan = (dir) => { const w = this.window(); const d = (w.to - w.from) / 2 * dir; this.range = { from: w.from + d, to: Math.min(w.to + d, Date.now() / 1000) }; this.changed(); };
    const back = el("button", { type: "button", title: "pan back", "data-action": "pan-back" }, "◀");
    back.addEventListener("click", () => pan(-1));
    const fwd = el("button", { type: "button", title: "pan forward", "data-action": "pan-forward" }, "▶");
    fwd.addEventListener("click", () => pan(1));
    const zoomOut = el("button", { type: "button", title: "zoom out ×2", "data-action": "zoom-out" }, "−");
    zoomOut.addEventListener("click", () => { const w = this.window(); const d = (w.to - w.from) / 2; this.range = { from: w.from - d, to: Math.min(w.to + d, Date.now() / 1000) }; this.changed(); });
    const now = el("button", { type: "button", title: "back to live", "data-action": "live" }, "Live");
    now.addEventListener("click", () => { this.range = { name: this.lastName || "1h" }; this.changed(); });
    bar.append(ranges, el("span", { class: "quick" }, back, zoomOut, fwd, now));

    const picker = el("select", { "aria-label": "add a pen", "data-role": "pen-picker" });
    picker.append(el("option", { value: "" }, "add pen…"));
    for (const [id, line] of this.ctx.lines) {
      const group = el("optgroup", { label: line.meta.name });
      for (const [tag, m] of Object.entries(line.meta.tags)) {
        if (m.states && m.states.length) continue;
        group.append(el("option", { value: `line${id}.${tag}` }, `${line.meta.name} · ${tag}${m.unit ? ` (${m.unit})` : ""}`));
      }
      picker.append(group);
    }
    picker.addEventListener("change", () => {
      if (picker.value && !this.pens.includes(picker.value) && this.pens.length < COLOURS.length) {
        this.pens.push(picker.value);
        this.changed();
      }
      picker.value = "";
    });
    bar.append(picker);
    this.penList = el("span", { class: "pens", "data-role": "pens" });
    bar.append(this.penList);
    this.status = el("span", { class: "muted", "data-role": "trend-status" });
    this.readout = el("div", { class: "readout", "data-testid": "trend-readout" }, "move the cursor over the trend");
    this.chart = el("div", { class: "chart", "data-testid": "trend" });
    this.root.replaceChildren(bar, this.chart, this.readout, this.status);
    this.ro = new ResizeObserver(() => { if (this.plot) this.plot.setSize(this.size()); });
    this.ro.observe(this.chart);
  }

  changed() {
    if (this.range.name) this.lastName = this.range.name;
    this.ctx.onChange(this.pens, this.range);
    this.load();
  }

  // Pens and range from outside (the URL, the tag in alarm); nothing to do if they are these.
  setView(pens, range) {
    const same = (a, b) => (a.name || null) === (b.name || null) && a.from === b.from && a.to === b.to;
    pens = pens.slice(0, COLOURS.length);
    if (pens.join(",") === this.pens.join(",") && same(range, this.range)) return;
    this.pens = pens;
    this.range = range;
    if (range.name) this.lastName = range.name;
    this.load();
  }

  // A tag row clicked: its pen is added (and selected, so its limits are the ones drawn).
  addPen(pen) {
    this.selectedPen = pen;
    if (this.pens.includes(pen)) { this.renderPens(); if (this.plot) this.plot.redraw(false, false); return; }
    if (this.pens.length >= COLOURS.length) { this.status.textContent = `at most ${COLOURS.length} pens: remove one first`; return; }
    this.pens.push(pen);
    this.changed();
  }

  size() {
    const w = Math.max(280, this.chart.clientWidth);
    return { width: w, height: Math.max(220, Math.min(460, Math.round(w * 0.4))) };
  }

  destroy() {
    clearInterval(this.timer);
    this.ro.disconnect();
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }

  renderPens() {
    const drawn = new Set(this.limitPens().map((s) => s.tag));
    this.penList.replaceChildren(...this.pens.map((p, i) => {
      const chip = el("span", { class: `pen${drawn.has(p) ? " limits" : ""}`, "data-pen": p });
      // Clicking a pen's name draws its limits (one pen's per unit, or they pile up).
      const name = el("button", { type: "button", class: "pen-name", "aria-pressed": drawn.has(p) ? "true" : "false", title: "show this pen's limits" },
        el("span", { class: "swatch", "data-colour": i }), p);
      name.addEventListener("click", () => { this.selectedPen = p; this.renderPens(); if (this.plot) this.plot.redraw(false, false); });
      chip.append(name);
      chip.querySelector(".swatch").style.background = COLOURS[i];
      const x = el("button", { type: "button", "aria-label": `remove ${p}`, class: "x" }, "×");
      x.addEventListener("click", () => { this.pens = this.pens.filter((q) => q !== p); this.changed(); });
      chip.append(x);
      return chip;
    }));
    for (const b of this.root.querySelectorAll("[data-range]")) b.classList.toggle("on", b.dataset.range === this.range.name);
  }

  async fetchHistory(from, to, points) {
    const q = new URLSearchParams({
      tags: this.pens.join(","),
      from: this.range.name ? `-${this.range.name}` : new Date(from * 1000).toISOString(),
      to: this.range.name ? "now" : new Date(to * 1000).toISOString(),
      points: String(points),
    });
    const r = await heavyFetch(`/api/history?${q}`);
    if (r.ok) { this.source = "history"; return r.json(); }
    if (r.status !== 404) {
      const body = await r.json().catch(() => ({}));
      throw new Error(body.error || `HTTP ${r.status}`);
    }
    return this.fetchFallback(from, to, points);
  }

  // Before /api/history exists: the in-memory per-line history (15 min), same shape.
  async fetchFallback(from, to, points) {
    this.source = "memory";
    const byLine = new Map();
    for (const p of this.pens) {
      const { line } = splitTag(p);
      if (!byLine.has(line)) byLine.set(line, null);
    }
    const seconds = Math.max(1, Math.min(900, Math.round(Date.now() / 1000 - from)));
    await Promise.all([...byLine.keys()].map(async (line) => {
      const r = await heavyFetch(`/api/lines/${encodeURIComponent(line)}/history?seconds=${seconds}&points=${Math.min(points, 5000)}`);
      byLine.set(line, r.ok ? await r.json() : null);
    }));
    const series = this.pens.map((p) => {
      const { line, tag } = splitTag(p);
      const h = byLine.get(line);
      const meta = this.ctx.lines.get(line)?.meta.tags[tag] || {};
      const s = h && h.series[tag];
      const t = h ? h.t : [];
      return {
        tag: p, unit: meta.unit || "", setpoint: meta.setpoint ?? null, limits: meta.limits || {},
        t, min: s ? s.min : [], max: s ? s.max : [], mean: s ? s.mean : [],
        quality: s ? s.mean.map((v) => (v === null ? "missing" : "good")) : [],
      };
    });
    return { from: new Date(from * 1000).toISOString(), to: new Date(to * 1000).toISOString(), tier: "memory", bucket_ms: null, series };
  }

  async load() {
    this.renderPens();
    const { from, to } = this.window();
    const points = Math.min(2000, this.size().width);
    const started = performance.now();
    let body;
    try {
      body = await this.fetchHistory(from, to, points);
    } catch (err) {
      this.status.textContent = `history failed: ${err.message || err}`;
      return;
    }
    this.series = body.series;
    this.tier = body.tier;
    this.loadMs = Math.round(performance.now() - started);
    this.draw(from, to);
    this.renderPens(); // which pens' limits are drawn is known once the series are
    this.loaded += 1;
    const n = this.series.reduce((k, s) => k + s.t.length, 0);
    this.status.textContent = `${fmtDateTime(from * 1000)} – ${fmtDateTime(to * 1000)} · ${this.source === "memory" ? "in-memory history (last 15 min only)" : `tier ${body.tier}`} · ${n} points · ${this.loadMs} ms`;
    this.root.dataset.loaded = String(this.loaded);
    clearInterval(this.timer);
    if (this.followsNow) this.timer = setInterval(() => this.tick(), 1000);
  }

  // One x array for all pens (the union of their times); each pen's values aligned to it.
  align() {
    const times = new Set();
    for (const s of this.series) for (const t of s.t) times.add(t);
    const xs = [...times].sort((a, b) => a - b);
    const index = new Map(xs.map((t, i) => [t, i]));
    const cols = [];
    for (const s of this.series) {
      const mean = new Array(xs.length).fill(undefined);
      const lo = new Array(xs.length).fill(undefined);
      const hi = new Array(xs.length).fill(undefined);
      s.t.forEach((t, i) => {
        const j = index.get(t);
        mean[j] = s.mean[i]; lo[j] = s.min[i]; hi[j] = s.max[i];
      });
      cols.push(mean, lo, hi);
    }
    return [xs.map((t) => t / 1000), ...cols];
  }

  draw(from, to) {
    if (this.plot) { this.plot.destroy(); this.plot = null; }
    this.chart.replaceChildren();
    if (!this.series.length) { this.chart.append(el("p", { class: "empty" }, "Add a pen to draw a trend.")); return; }
    const data = this.align();
    const units = [...new Set(this.series.map((s) => s.unit || ""))];
    const series = [{}];
    const bands = [];
    this.series.forEach((s, i) => {
      const c = COLOURS[i];
      const base = 1 + i * 3;
      series.push({ label: s.tag, scale: s.unit || "", stroke: c, width: 1.5, spanGaps: false, points: { show: false } });
      series.push({ label: `${s.tag} min`, scale: s.unit || "", stroke: "transparent", width: 0, spanGaps: false, points: { show: false } });
      series.push({ label: `${s.tag} max`, scale: s.unit || "", stroke: "transparent", width: 0, spanGaps: false, points: { show: false } });
      bands.push({ series: [base + 2, base + 1], fill: `${c}33` });
    });
    const scales = { x: { time: true, min: from, max: to } };
    for (const u of units) {
      scales[u] = {
        range: (self, min, max) => {
          // Data plus the hi/lo limits of the pens on this scale, so the limits stay in view.
          for (const s of this.series) {
            if ((s.unit || "") !== u) continue;
            for (const k of ["hi", "lo"]) if (s.limits && s.limits[k] != null) { min = Math.min(min ?? s.limits[k], s.limits[k]); max = Math.max(max ?? s.limits[k], s.limits[k]); }
          }
          if (min == null || max == null) return [0, 1];
          const pad = (max - min) * 0.08 || Math.abs(max) * 0.01 || 1;
          return [min - pad, max + pad];
        },
      };
    }
    const axisStyle = { stroke: "#9aa4af", grid: { stroke: "#2c333b", width: 1 }, ticks: { stroke: "#2c333b" } };
    // Time axis in the console's one format (24 h clock, ISO dates), not the browser's.
    const pad = (n) => String(n).padStart(2, "0");
    const span = to - from;
    const tick = (sec) => {
      const d = new Date(sec * 1000);
      const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
      const md = `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
      if (span <= 3600) return `${hm}:${pad(d.getSeconds())}`;
      if (span <= 86400 * 1.5) return hm;
      return span <= 86400 * 8 ? `${md} ${hm}` : md;
    };
    // uPlot spaces time ticks at least 50 px apart, narrower than "MM-DD HH:MM": at 7 days
    // the labels ran into each other. Space them by the widest label, measured in the axis font.
    const measure = document.createElement("canvas").getContext("2d");
    measure.font = AXIS_FONT;
    const space = Math.ceil(measure.measureText(tick(to)).width) + 16;
    const axes = [{
      ...axisStyle, font: AXIS_FONT, space,
      values: (u, splits) => { this.xTicks = splits; return splits.map(tick); },
    }];
    units.slice(0, 2).forEach((u, i) => axes.push({ ...axisStyle, scale: u, side: i === 0 ? 3 : 1, label: u, size: 56, grid: i === 0 ? axisStyle.grid : { show: false } }));
    const opts = {
      ...this.size(),
      series, bands, scales, axes,
      legend: { show: false },
      cursor: { drag: { x: true, y: false, setScale: false } },
      hooks: {
        draw: [(u) => this.drawLimits(u)],
        setCursor: [(u) => this.readCursor(u)],
        setSelect: [(u) => {
          if (u.select.width < 5) return;
          const a = u.posToVal(u.select.left, "x"), b = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
          this.range = { from: a, to: b };
          this.changed();
        }],
      },
    };
    // uPlot is a classic script (vendor/uPlot.iife.min.js) that defines window.uPlot.
    this.plot = new window.uPlot(opts, data, this.chart);
  }

  // The pens whose limits are drawn: one per unit (the selected pen for its unit, else the
  // first pen of that unit). Several pens of one unit have limits at nearly the same heights:
  // drawing all of them piles up lines and labels.
  limitPens() {
    const chosen = new Map();
    for (const p of this.pens) {
      const s = this.series.find((x) => x.tag === p);
      if (!s) continue;
      const u = s.unit || "";
      if (!chosen.has(u) || p === this.selectedPen) chosen.set(u, s);
    }
    return [...chosen.values()];
  }

  drawLimits(u) {
    const ctx = u.ctx;
    const dpr = devicePixelRatio;
    let drawn = 0;
    ctx.save();
    const { left, top, width, height } = u.bbox;
    const units = [...new Set(this.series.map((s) => s.unit || ""))];
    const labels = [];
    for (const s of this.limitPens()) {
      const scale = s.unit || "";
      const { line, tag } = splitTag(s.tag);
      const meta = this.ctx.lines.get(line)?.meta.tags[tag];
      const dec = meta ? meta.decimals : 3;
      const entries = Object.entries(s.limits || {});
      if (s.setpoint != null) entries.push(["sp", s.setpoint]);
      for (const [k, v] of entries) {
        if (v == null || !LIMIT_STYLE[k] && k !== "sp") continue;
        const y = u.valToPos(v, scale, true);
        if (y < top || y > top + height) continue;
        const [w, dash] = LIMIT_STYLE[k] || [1, [2, 4]];
        ctx.strokeStyle = k === "sp" ? "#6e7681" : "#b0b8c1";
        ctx.lineWidth = w * dpr;
        ctx.setLineDash(dash.map((d) => d * dpr));
        ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + width, y); ctx.stroke();
        // The first unit's labels on the left (its axis), the others' on the right.
        labels.push({ side: units.indexOf(scale) === 0 ? "left" : "right", y, text: `${k} ${fmtNum(v, dec)}${s.unit ? ` ${s.unit}` : ""}` });
        drawn += 1;
      }
    }
    // Labels sit just above their line, pushed down where they would overlap the one above.
    const lineH = 13 * dpr;
    const placed = [];
    ctx.fillStyle = "#b0b8c1";
    ctx.font = `${11 * dpr}px system-ui`;
    ctx.textBaseline = "alphabetic";
    for (const side of ["left", "right"]) {
      let prev = -Infinity;
      for (const l of labels.filter((x) => x.side === side).sort((a, b) => a.y - b.y)) {
        const base = Math.max(l.y - 3 * dpr, prev + lineH);
        prev = base;
        // uPlot leaves the y axis's right alignment on the context: set it every time.
        ctx.textAlign = side;
        const x = side === "left" ? left + 4 * dpr : left + width - 4 * dpr;
        // A dark backing so a label stays legible over a trace.
        const w = ctx.measureText(l.text).width;
        ctx.fillStyle = "rgba(42, 46, 51, .75)";
        ctx.fillRect(side === "left" ? x - 2 * dpr : x - w - 2 * dpr, base - 10 * dpr, w + 4 * dpr, 12 * dpr);
        ctx.fillStyle = "#b0b8c1";
        ctx.fillText(l.text, x, base);
        placed.push({ side, text: l.text, top: (base - 10 * dpr) / dpr, bottom: (base + 2 * dpr) / dpr });
      }
    }
    ctx.restore();
    this.limitLabels = placed;
    this.root.dataset.limitsDrawn = String(drawn);
    this.root.dataset.limitPens = this.limitPens().map((s) => s.tag).join(",");
  }

  readCursor(u) {
    const i = u.cursor.idx;
    if (i == null) return;
    const t = u.data[0][i];
    const parts = [el("b", {}, fmtDateTime(t * 1000))];
    this.series.forEach((s, k) => {
      const { line, tag } = splitTag(s.tag);
      const meta = this.ctx.lines.get(line)?.meta.tags[tag];
      const d = meta ? meta.decimals : 3;
      const mean = u.data[1 + k * 3][i], lo = u.data[2 + k * 3][i], hi = u.data[3 + k * 3][i];
      const sw = el("span", { class: "swatch" });
      sw.style.background = COLOURS[k];
      const text = mean == null ? "no data (gap)" : `${fmtNum(mean, d)} ${s.unit}${lo != null && hi != null && lo !== hi ? ` (min ${fmtNum(lo, d)}, max ${fmtNum(hi, d)})` : ""}`;
      parts.push(el("span", { class: "ro" }, sw, ` ${s.tag}: ${text}`));
    });
    this.readout.replaceChildren(...parts);
  }

  // Live points at the right edge while the range ends at now.
  tick() {
    if (!this.plot || !this.followsNow) return;
    const now = Date.now() / 1000;
    const data = this.plot.data.map((c) => Array.from(c));
    data[0].push(now);
    this.series.forEach((s, k) => {
      const { line, tag } = splitTag(s.tag);
      const lv = this.ctx.liveValue(line, tag);
      const v = lv && lv.quality === "good" ? lv.value : null;
      data[1 + k * 3].push(v); data[2 + k * 3].push(v); data[3 + k * 3].push(v);
    });
    const from = now - this.duration;
    while (data[0].length > 1 && data[0][0] < from) for (const c of data) c.shift();
    this.plot.batch(() => {
      this.plot.setData(data, false);
      this.plot.setScale("x", { min: from, max: now });
    });
    this.root.dataset.liveTicks = String(Number(this.root.dataset.liveTicks || 0) + 1);
  }
}

export function parsePens(text, fallback) {
  const pens = (text || "").split(",").map((s) => s.trim()).filter(Boolean);
  return pens.length ? pens : fallback;
}

export { splitTag, $ };
