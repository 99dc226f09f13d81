// Line detail (#/line/ID): every tag with unit, setpoint, limits, quality and alarm state,
// the line's alarms, and a multi-pen trend.
import { $, el, fmtDateTime, fmtNum, priorityIcon, PRIORITY_NAMES } from "/static/util.js";
import { setValueCell, tagQuality, valueCell, lineKnown } from "/static/tiles.js";
import { RANGES, Trend, parsePens } from "/static/trend.js";

const ACTIVE_FIRST = { unacked_active: 0, acked_active: 0, unacked_cleared: 1 };

function parseRange(text) {
  if (!text) return null;
  if (/^\d+(\.\d+)?-\d+(\.\d+)?$/.test(text)) return { from: Number(text.split("-")[0]), to: Number(text.split("-")[1]) };
  return RANGES.some(([n]) => n === text) ? { name: text } : null;
}

export class LineDetail {
  // ctx: {lines, alarms (AlarmConsole), alarmsLoaded(), live(), liveValue(), setHash(query)}
  constructor(root, ctx, lineId, query) {
    this.root = root;
    this.ctx = ctx;
    this.lineId = lineId;
    const entry = ctx.lines.get(lineId);
    this.entry = entry;
    if (!entry) {
      root.replaceChildren(el("p", { class: "error" }, `No line ${lineId}.`), el("a", { href: "#/" }, "back to the overview"));
      return;
    }
    const meta = entry.meta;
    const head = el("div", { class: "detail-head" },
      el("a", { href: "#/", class: "back" }, "← overview"),
      el("h2", {}, meta.name),
      el("span", { class: "state", "data-role": "state" }, "unknown"),
      el("span", { class: "lq", "data-role": "quality" }));
    const rows = Object.entries(meta.tags).map(([tag, m]) => {
      const lim = m.limits || {};
      // A value with its unit never splits over two lines ("160.0" / "°C").
      const f = (v) => el("span", { class: "nw" }, v == null ? "—" : `${fmtNum(v, m.decimals)} ${m.unit || ""}`.trim());
      const numeric = !(m.states && m.states.length);
      const tr = el("tr", { "data-tag-row": tag, class: numeric ? "pickable" : "", title: numeric ? `click: add ${tag} to the trend` : "" },
        el("td", { "data-label": "Tag" }, el("span", { class: "mono tagname" }, tag), el("div", { class: "muted" }, m.description || "")),
        el("td", { "data-label": "Value" }, m.states && m.states.length ? el("span", { class: "val", "data-tag": tag }, el("span", { class: "num" }, "—"), el("span", { class: "qual" })) : valueCell(tag, m)),
        el("td", { "data-label": "Setpoint" }, m.setpoint == null ? "—" : f(m.setpoint), m.tolerance ? el("span", { class: "nw" }, ` ± ${fmtNum(m.tolerance, m.decimals)}`) : null),
        el("td", { "data-label": "LL / L" }, f(lim.lolo), " / ", f(lim.lo)),
        el("td", { "data-label": "H / HH" }, f(lim.hi), " / ", f(lim.hihi)),
        el("td", { "data-label": "Quality", "data-role": "q" }, "—"),
        el("td", { "data-label": "Alarm", "data-role": "alarm" }, "—"));
      if (numeric) tr.addEventListener("click", (ev) => { if (!ev.target.closest("a, button")) this.trend.addPen(`line${lineId}.${tag}`); });
      return tr;
    });
    const table = el("table", { class: "grid tags", "data-testid": "tag-table" },
      el("thead", {}, el("tr", {}, ...["Tag", "Value", "Setpoint", "LL / L", "H / HH", "Quality", "Alarm"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows));
    this.alarmList = el("ul", { class: "line-alarms", "data-testid": "line-alarms" });
    const trendBox = el("section", { class: "trend", "data-testid": "trend-box" });
    const cols = el("div", { class: "detail-cols" },
      el("section", { class: "card" }, el("h3", {}, "Tags"), table),
      el("section", { class: "card" }, el("h3", {}, "Alarms of this line"), this.alarmList));
    root.replaceChildren(head, el("section", { class: "card" }, el("h3", {}, "Trend"), trendBox), cols);
    // Without pens in the URL the trend opens on the tag in alarm (the line's most important
    // alarm), else the diameter; chosen again once the alarm list arrives, until the operator
    // changes the trend.
    this.autoPens = !query.get("pens") && !ctx.alarmsLoaded();
    const pens = parsePens(query.get("pens"), this.defaultPens());
    const range = parseRange(query.get("range")) || { name: "1h" };
    this.trend = new Trend(trendBox, {
      lines: ctx.lines,
      liveValue: ctx.liveValue,
      onChange: (p, rg) => {
        this.autoPens = false;
        ctx.setHash(`pens=${p.join(",")}&range=${rg.name || `${Math.round(rg.from)}-${Math.round(rg.to)}`}`);
      },
    }, pens, range);
    this.trend.load();
    this.render();
  }

  destroy() {
    if (this.trend) this.trend.destroy();
  }

  // The tag of the line's most important shown alarm (active before cleared, then priority,
  // then newest) that can be trended; the diameter when none.
  defaultPens() {
    const tags = this.entry.meta.tags;
    const trendable = (t) => t && tags[t] && !(tags[t].states && tags[t].states.length);
    const mine = this.ctx.alarms.active().filter((a) => a.production_line_id === this.lineId && trendable(a.tag))
      .sort((a, b) => ((ACTIVE_FIRST[a.alarm_state] ?? 2) - (ACTIVE_FIRST[b.alarm_state] ?? 2)) || (a.priority - b.priority)
        || String(b.raised_at).localeCompare(String(a.raised_at)));
    return [`line${this.lineId}.${mine.length ? mine[0].tag : "diameter"}`];
  }

  // The first alarm list arrived: open on the tag in alarm if the URL named no pens.
  alarmsKnown() {
    if (!this.trend || !this.autoPens) return;
    this.autoPens = false;
    this.trend.setView(this.defaultPens(), this.trend.range);
  }

  // A changed URL for this line (typed, pasted, back/forward): pens and range as it says.
  applyQuery(query) {
    if (!this.trend) return;
    if (query.get("pens")) this.autoPens = false;
    const pens = parsePens(query.get("pens"), this.defaultPens());
    this.trend.setView(pens, parseRange(query.get("range")) || { name: "1h" });
  }

  render() {
    if (!this.entry) return;
    const { meta, sample } = this.entry;
    const live = this.ctx.live();
    const known = lineKnown(sample, live);
    const st = $('[data-role="state"]', this.root);
    st.textContent = known ? sample.state : "unknown";
    st.dataset.state = st.textContent;
    const lq = $('.detail-head [data-role="quality"]', this.root);
    const q = !live ? "no data" : sample ? sample.quality : "bad";
    lq.textContent = q === "good" ? "" : q;
    for (const [tag, m] of Object.entries(meta.tags)) {
      const row = this.root.querySelector(`[data-tag-row="${tag}"]`);
      const lv = this.ctx.liveValue(meta.id, tag);
      const q = tagQuality(sample, tag, lv ? lv.value : null, live);
      const alarm = this.ctx.alarms.alarmFor(meta.id, tag);
      const cell = row.querySelector(`[data-tag="${tag}"]`);
      if (m.states && m.states.length) {
        cell.querySelector(".num").textContent = known ? sample.state : "unknown";
        cell.dataset.quality = q;
        cell.className = `val q-${q}`;
      } else setValueCell(cell, lv ? lv.value : null, m, q, alarm);
      const qc = row.querySelector('[data-role="q"]');
      qc.textContent = q;
      qc.dataset.quality = q;
      const ac = row.querySelector('[data-role="alarm"]');
      const any = this.ctx.alarms.all().filter((a) => a.production_line_id === meta.id && a.tag === tag).sort((a, b) => a.priority - b.priority)[0];
      ac.replaceChildren(...(any ? [priorityIcon(any.priority), ` ${any.condition} ${any.state.replace("_", " ")}`] : ["normal"]));
    }
    const mine = this.ctx.alarms.all().filter((a) => a.production_line_id === meta.id).sort((a, b) => a.priority - b.priority);
    this.alarmList.replaceChildren(...(mine.length ? mine.map((a) => el("li", { "data-alarm": a.alarm, class: `st-${a.state}` },
      priorityIcon(a.priority), ` ${PRIORITY_NAMES[a.priority]} · ${a.state.replace("_", " ")} · ${a.message} · raised ${fmtDateTime(a.raised_at)}`)) : [el("li", { class: "muted" }, "No alarms on this line.")]));
  }
}
