// Alarm console: banner (highest-priority unacknowledged), summary, active / shelved /
// suppressed tabs with filters and sorting, bulk acknowledge with one comment, and the
// history of occurrences with quick ranges and CSV export.
import {
  $, $$, dotted, el, fmtDateTime, fmtDateMinutes, fmtDuration, fmtNum, fmtTime, isoUtc, parseDateTime,
  priorityIcon, priorityOf, PRIORITY_NAMES, isUnacked, downloadCsv, heavyFetch,
} from "/static/util.js";

const STATE_TEXT = {
  unacked_active: "UNACK", acked_active: "ACKED", unacked_cleared: "CLEARED·UNACK",
  shelved: "SHELVED", suppressed: "SUPPRESSED", normal: "normal",
};

// What the occurrence was raised at: every event carries it (`raised_value`), unlike `value`,
// which is the value at that event (a clear, an ack). A server before `raised_value`: only
// the raise event itself says it.
export function raisedValue(a) {
  if (a.raised_value !== undefined) return a.raised_value;
  return a.event === "raised" ? a.value : null;
}

export class AlarmConsole {
  // ctx: {conn(), canOperate(), live(), lines (Map), liveValue(line, tag) -> {value, quality, unit, decimals},
  //       requireComment() -> severities whose acknowledgement needs a comment}
  constructor(ctx) {
    this.ctx = ctx;
    this.alarms = new Map(); // alarm name -> latest record (not normal)
    this.selected = new Set(); // occurrence ids
    this.sort = { key: "priority", dir: 1 };
    this.tab = "active";
    this.filters = { line: "", priority: "", state: "", text: "" };
    this.flood = null;
    this.history = [];
  }

  // ------------------------------------------------------------ state

  reset(list) {
    this.alarms.clear();
    for (const a of list || []) this.apply(a, false);
  }

  // The server's alarm ids now count in another journal: a selection or an open dialog made
  // under the old ids would act on other occurrences.
  forgetOccurrences() {
    this.selected.clear();
    const dialog = $("#ack-dialog");
    if (dialog.open) dialog.close();
  }

  apply(a) {
    // A late event (recorded by a cluster node cut off from the bus, journaled after events
    // that happened later) is history: it never changes what is active now.
    if (a.late) return;
    const rec = { ...a, priority: priorityOf(a) };
    if (a.state === "normal") this.alarms.delete(a.alarm);
    else this.alarms.set(a.alarm, rec);
  }

  all() { return [...this.alarms.values()]; }

  active() { return this.all().filter((a) => a.state !== "shelved" && a.state !== "suppressed"); }

  // The tag's most important active alarm, for colouring values.
  alarmFor(lineId, tag) {
    let best = null;
    for (const a of this.alarms.values()) {
      if (a.production_line_id !== lineId || a.tag !== tag) continue;
      if (a.state !== "unacked_active" && a.state !== "acked_active") continue;
      if (!best || a.priority < best.priority) best = a;
    }
    return best;
  }

  lineAlarm(lineId) {
    let best = null;
    for (const a of this.active()) {
      if (a.production_line_id !== lineId) continue;
      const u = isUnacked(a);
      if (!best || a.priority < best.priority || (a.priority === best.priority && u && !best.unacked)) {
        best = { priority: a.priority, unacked: u, alarm: a };
      }
    }
    return best;
  }

  // Highest priority first, then newest.
  topUnacked() {
    return this.active().filter(isUnacked).sort((a, b) =>
      (a.priority - b.priority) || String(b.raised_at).localeCompare(String(a.raised_at)))[0] || null;
  }

  // ------------------------------------------------------------ banner & summary

  renderBanner() {
    const top = this.topUnacked();
    const banner = $("#banner");
    banner.dataset.priority = top ? String(top.priority) : "";
    banner.classList.toggle("active", !!top);
    const what = $("#banner-text");
    what.replaceChildren();
    if (top) {
      what.append(priorityIcon(top.priority), " ", el("b", {}, `${PRIORITY_NAMES[top.priority]}`), ` ${fmtTime(top.raised_at)} `, el("span", { class: "msg" }, top.message));
      banner.dataset.alarm = top.alarm;
    } else {
      what.append("No unacknowledged alarms");
      banner.dataset.alarm = "";
    }
    const counts = $("#summary");
    const act = this.active();
    const chips = [];
    for (const p of [1, 2, 3, 4]) {
      const n = act.filter((a) => a.priority === p).length;
      const u = act.filter((a) => a.priority === p && isUnacked(a)).length;
      const chip = el("button", { type: "button", class: `chip p-${p}${n ? "" : " zero"}`, "data-priority": p, title: `priority ${p}: ${n} active, ${u} unacknowledged — click to filter` }, priorityIcon(p), ` ${n}`);
      if (u) chip.append(el("small", {}, ` (${u} new)`));
      chip.addEventListener("click", () => { this.setFilter("priority", String(p)); this.showTab("active"); });
      chips.push(chip);
    }
    const shelved = this.all().filter((a) => a.state === "shelved").length;
    const supp = this.all().filter((a) => a.state === "suppressed").length;
    chips.push(el("span", { class: "chip plain" }, `shelved ${shelved}`), el("span", { class: "chip plain" }, `out of service ${supp}`));
    if (this.flood && this.flood.active) chips.push(el("span", { class: "chip flood", "data-testid": "flood" }, `ALARM FLOOD ${this.flood.count}`));
    counts.replaceChildren(...chips);
    $("#count-active").textContent = act.length;
    $("#count-shelved").textContent = shelved;
    $("#count-suppressed").textContent = supp;
  }

  // ------------------------------------------------------------ filters & sort

  setFilter(name, value) {
    this.filters[name] = value;
    const form = $("#alarm-filters");
    if (form[name] && form[name].value !== value) form[name].value = value;
    this.render();
  }

  matches(a) {
    const f = this.filters;
    if (f.line && a.production_line_id !== f.line) return false;
    if (f.priority && String(a.priority) !== f.priority) return false;
    if (f.state === "unacked" && !isUnacked(a)) return false;
    if (f.state && f.state !== "unacked" && a.state !== f.state) return false;
    if (f.text) {
      const hay = `${a.alarm} ${a.message} ${a.condition} ${a.tag || ""}`.toLowerCase();
      if (!hay.includes(f.text.toLowerCase())) return false;
    }
    return true;
  }

  sortValue(a, key) {
    switch (key) {
      case "priority": return a.priority;
      case "state": return a.state;
      case "line": return Number(a.production_line_id) || a.production_line_id || "";
      case "alarm": return a.alarm;
      case "message": return a.message;
      case "value": return raisedValue(a) ?? -Infinity;
      case "live": { const lv = this.liveOf(a); return lv ? lv.value ?? -Infinity : -Infinity; }
      case "limit": return a.limit ?? -Infinity;
      case "raised": return a.raised_at || "";
      case "acked": return a.acked_by || "";
      case "until": return a.shelved_until || "";
      default: return a.at || "";
    }
  }

  sorted(rows) {
    const { key, dir } = this.sort;
    return rows.sort((a, b) => {
      const x = this.sortValue(a, key), y = this.sortValue(b, key);
      const c = x < y ? -1 : x > y ? 1 : 0;
      return c * dir || String(b.raised_at).localeCompare(String(a.raised_at));
    });
  }

  liveOf(a) {
    return a.tag && a.production_line_id ? this.ctx.liveValue(a.production_line_id, a.tag) : null;
  }

  visible() {
    const st = this.tab === "shelved" ? ["shelved"] : this.tab === "suppressed" ? ["suppressed"] : null;
    const base = st ? this.all().filter((a) => st.includes(a.state)) : this.active();
    return this.sorted(base.filter((a) => this.matches(a)));
  }

  // ------------------------------------------------------------ tables

  render() {
    this.renderBanner();
    if (!["active", "shelved", "suppressed"].includes(this.tab)) return;
    const rows = this.visible();
    const table = $("#alarm-table");
    table.dataset.tab = this.tab;
    for (const th of $$("th[data-sort]", table)) {
      th.dataset.dir = th.dataset.sort === this.sort.key ? (this.sort.dir > 0 ? "asc" : "desc") : "";
      th.classList.toggle("only-active", th.classList.contains("only-active"));
    }
    const ids = new Set(rows.map((a) => a.id));
    for (const id of [...this.selected]) if (!ids.has(id)) this.selected.delete(id);
    $("#alarm-table tbody").replaceChildren(...rows.map((a) => this.row(a)));
    $("#alarm-empty").classList.toggle("hidden", rows.length > 0);
    $("#alarm-empty").textContent = { active: "No active alarms.", shelved: "No shelved alarms.", suppressed: "No suppressed or out-of-service alarms." }[this.tab];
    this.updateBulk(rows);
  }

  row(a) {
    const live = this.ctx.live();
    const can = this.ctx.canOperate() && live;
    const tr = el("tr", { class: `st-${a.state} p-${a.priority}`, "data-alarm": a.alarm, "data-state": a.state, "data-occurrence": a.id, "data-priority": a.priority });
    if (isUnacked(a)) tr.classList.add("unacked");
    const cb = el("input", { type: "checkbox", "aria-label": `select ${a.alarm}`, checked: this.selected.has(a.id), disabled: !isUnacked(a) });
    cb.addEventListener("change", () => { if (cb.checked) this.selected.add(a.id); else this.selected.delete(a.id); this.updateBulk(this.visible()); });
    const td = (label, ...content) => el("td", { "data-label": label }, ...content);
    tr.append(el("td", { class: "sel" }, cb));
    tr.append(td("Priority", priorityIcon(a.priority, true)));
    tr.append(td("State", el("span", { class: "stt" }, STATE_TEXT[a.state] || a.state)));
    tr.append(td("Line", a.production_line_id ?? "—"));
    tr.append(td("Alarm", dotted(a.alarm),
      a.first_out ? el("span", { class: "first-out", title: "first out: this alarm opened a burst on its line" }, "FIRST OUT") : null));
    tr.append(td("Message", a.message));
    const dec = this.decimals(a);
    const unit = this.unit(a);
    if (this.tab === "shelved") {
      tr.append(td("Shelved by", a.shelved_by || "—"));
      tr.append(td("Why", a.shelve_comment || "—"));
      const left = a.shelved_until ? Date.parse(a.shelved_until) - Date.now() : null;
      tr.append(td("Until", `${fmtDateTime(a.shelved_until)} (${left === null ? "—" : fmtDuration(left)} left)`));
      tr.append(td("Underneath", STATE_TEXT[a.alarm_state] || a.alarm_state || "—"));
    } else if (this.tab === "suppressed") {
      tr.append(td("Suppressed by", a.suppressed_by || "out of service (config)"));
      tr.append(td("Underneath", STATE_TEXT[a.alarm_state] || a.alarm_state || "—"));
      tr.append(td("Since", fmtDateTime(a.at)));
      tr.append(td("Value", `${fmtNum(a.value, dec)} ${unit}`));
    } else {
      const atRaise = raisedValue(a);
      tr.append(td("At raise", atRaise == null ? "—" : `${fmtNum(atRaise, dec)} ${unit}`.trim()));
      const lv = this.liveOf(a);
      const liveCell = td("Live", lv ? `${fmtNum(lv.value, dec)} ${unit}`.trim() : "—");
      liveCell.classList.add("live-value");
      if (!live || (lv && lv.quality !== "good")) liveCell.classList.add("q-stale");
      tr.append(liveCell);
      tr.append(td("Limit", a.limit == null ? "—" : `${a.condition} ${fmtNum(a.limit, dec)} ${unit}`));
      tr.append(td("Raised", fmtDateTime(a.raised_at)));
      tr.append(td("Acked", a.acked_by ? `${a.acked_by} ${fmtTime(a.acked_at)}` : "—"));
    }
    const actions = el("td", { class: "actions" });
    if (isUnacked(a) && this.tab === "active") {
      const b = el("button", { type: "button", class: "ack", "data-action": "ack", disabled: !can }, "Ack");
      b.addEventListener("click", () => this.openDialog("ack", [a]));
      actions.append(b);
    }
    if (a.state === "shelved") {
      const b = el("button", { type: "button", "data-action": "unshelve", disabled: !can }, "Unshelve");
      b.addEventListener("click", () => this.openDialog("unshelve", [a]));
      actions.append(b);
    } else if (a.state !== "suppressed") {
      const b = el("button", { type: "button", "data-action": "shelve", disabled: !can }, "Shelve");
      b.addEventListener("click", () => this.openDialog("shelve", [a]));
      actions.append(b);
    }
    if (!can) actions.title = live ? "log in as an operator to acknowledge or shelve" : "no live data: actions wait until data flow again";
    tr.append(actions);
    return tr;
  }

  decimals(a) {
    const line = this.ctx.lines.get(a.production_line_id);
    const m = line && a.tag ? line.meta.tags[a.tag] : null;
    return m ? m.decimals : 3;
  }

  unit(a) {
    const line = this.ctx.lines.get(a.production_line_id);
    const m = line && a.tag ? line.meta.tags[a.tag] : null;
    return m && m.unit ? m.unit : "";
  }

  updateBulk(rows) {
    const can = this.ctx.canOperate() && this.ctx.live() && this.tab === "active";
    const unacked = rows.filter(isUnacked);
    const sel = unacked.filter((a) => this.selected.has(a.id));
    $("#ack-selected").disabled = !can || sel.length === 0;
    $("#ack-selected").textContent = `Ack selected (${sel.length})`;
    $("#ack-visible").disabled = !can || unacked.length === 0;
    $("#ack-visible").textContent = `Ack all visible (${unacked.length})`;
    $("#select-all").checked = unacked.length > 0 && sel.length === unacked.length;
    $(".bulk").classList.toggle("hidden", this.tab !== "active");
  }

  // ------------------------------------------------------------ operator actions

  openDialog(kind, alarms) {
    const dialog = $("#ack-dialog");
    const form = $("#ack-form");
    form.reset();
    $("#ack-error").textContent = "";
    $("#ack-refusals").replaceChildren();
    const n = alarms.length;
    const title = { ack: n > 1 ? `Acknowledge ${n} alarms` : "Acknowledge alarm", shelve: "Shelve alarm", unshelve: "Unshelve alarm" }[kind];
    $("#ack-title").textContent = title;
    $("#ack-ok").textContent = { ack: n > 1 ? `Acknowledge ${n}` : "Acknowledge", shelve: "Shelve", unshelve: "Unshelve" }[kind];
    // What the server would refuse for want of a comment is refused here, before submitting:
    // a shelve always, an ack where alarms.require_comment lists a severity among them.
    const needy = kind === "ack" ? alarms.filter((a) => this.ctx.requireComment().includes(a.severity)) : [];
    const commentNeeded = kind === "shelve" || needy.length > 0;
    const check = () => {
      const missing = commentNeeded && !form.comment.value.trim();
      $("#ack-ok").disabled = missing;
      let why = "";
      if (missing && kind === "shelve") why = "A comment (the reason) is required to shelve.";
      else if (missing) {
        const sev = [...new Set(needy.map((a) => a.severity))].join(" or ");
        why = n > 1 ? `A comment is required: ${needy.length} of these alarms are ${sev}.` : `A comment is required to acknowledge a ${sev} alarm.`;
      }
      $("#ack-hint").textContent = why;
      return !missing;
    };
    form.comment.oninput = check;
    check();
    $("#ack-detail").textContent = n > 1 ? alarms.slice(0, 5).map((a) => a.alarm).join(", ") + (n > 5 ? `, … (${n - 5} more)` : "") : `${alarms[0].alarm} — ${alarms[0].message}`;
    form.querySelector(".shelve-only").classList.toggle("hidden", kind !== "shelve");
    dialog.dataset.kind = kind;
    form.onsubmit = async (ev) => {
      if (ev.submitter && ev.submitter.value === "cancel") return;
      ev.preventDefault();
      if (!check()) return;
      const comment = form.comment.value.trim();
      $("#ack-ok").disabled = true;
      try {
        if (kind === "ack") {
          const results = await this.ack(alarms.map((a) => a.id), comment);
          const refused = results.filter((r) => !r.ok);
          if (refused.length === 0) { dialog.close(); return; }
          const names = new Map(alarms.map((a) => [a.id, a.alarm]));
          $("#ack-error").textContent = `${results.length - refused.length} acknowledged, ${refused.length} refused:`;
          $("#ack-refusals").replaceChildren(...refused.map((r) => el("li", {}, `${names.get(r.alarm_id) || r.alarm_id}: ${r.error}${r.message ? ` (${r.message})` : ""}`)));
          $("#ack-ok").disabled = false;
          return;
        }
        const data = kind === "shelve"
          ? { alarm: alarms[0].alarm, minutes: Number(form.minutes.value), comment }
          : { alarm: alarms[0].alarm, comment };
        const reply = await this.ctx.conn().request(kind, data);
        if (reply.ok) dialog.close();
        else { $("#ack-error").textContent = `${reply.error}: ${reply.message || ""}`; $("#ack-ok").disabled = false; }
      } catch (err) {
        $("#ack-error").textContent = String(err.message || err);
        $("#ack-ok").disabled = false;
      }
    };
    dialog.showModal();
  }

  // Bulk acknowledge (contract 3: POST /api/alarms/ack, each alarm journaled and audited on its
  // own); where the server predates it, one WebSocket ack per alarm.
  async ack(ids, comment) {
    if (ids.length > 1 || this.bulkSupported !== false) {
      const r = await fetch("/api/alarms/ack", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ alarm_ids: ids, comment }),
      });
      if (r.ok) {
        const body = await r.json();
        const res = body.results || (body.result && body.result.results);
        if (Array.isArray(res)) { this.bulkSupported = true; return res; }
      } else if (r.status !== 404 && r.status !== 405) {
        const body = await r.json().catch(() => ({}));
        if (Array.isArray(body.results)) return body.results;
        return ids.map((id) => ({ alarm_id: id, ok: false, error: body.error || `HTTP ${r.status}`, message: body.message }));
      } else {
        this.bulkSupported = false;
      }
    }
    const results = [];
    for (const id of ids) {
      try {
        const reply = await this.ctx.conn().request("ack", { alarm_id: id, comment });
        results.push(reply.ok ? { alarm_id: id, ok: true } : { alarm_id: id, ok: false, error: reply.error, message: reply.message });
      } catch (err) {
        results.push({ alarm_id: id, ok: false, error: String(err.message || err) });
      }
    }
    return results;
  }

  // ------------------------------------------------------------ tabs & wiring

  showTab(name) {
    this.tab = name;
    for (const t of $$(".tab")) t.classList.toggle("active", t.dataset.tab === name);
    const tablePanel = ["active", "shelved", "suppressed"].includes(name);
    $("#tab-alarms").classList.toggle("hidden", !tablePanel);
    for (const p of $$(".panel.extra")) p.classList.toggle("hidden", p.id !== `tab-${name}`);
    if (tablePanel) this.render();
    if (name === "history") this.loadHistory();
  }

  wire() {
    for (const tab of $$(".tab")) tab.addEventListener("click", () => this.showTab(tab.dataset.tab));
    const form = $("#alarm-filters");
    form.addEventListener("input", () => {
      for (const k of Object.keys(this.filters)) this.filters[k] = form[k].value;
      this.render();
    });
    form.addEventListener("submit", (ev) => ev.preventDefault());
    for (const th of $$("#alarm-table th[data-sort]")) {
      th.tabIndex = 0;
      const go = () => {
        const key = th.dataset.sort;
        this.sort = { key, dir: this.sort.key === key ? -this.sort.dir : 1 };
        this.render();
      };
      th.addEventListener("click", go);
      th.addEventListener("keydown", (ev) => { if (ev.key === "Enter") go(); });
    }
    $("#select-all").addEventListener("change", (ev) => {
      for (const a of this.visible().filter(isUnacked)) {
        if (ev.target.checked) this.selected.add(a.id); else this.selected.delete(a.id);
      }
      this.render();
    });
    $("#ack-selected").addEventListener("click", () => {
      const list = this.visible().filter((a) => isUnacked(a) && this.selected.has(a.id));
      if (list.length) this.openDialog("ack", list);
    });
    $("#ack-visible").addEventListener("click", () => {
      const list = this.visible().filter(isUnacked);
      if (list.length) this.openDialog("ack", list);
    });
    const hf = $("#history-form");
    hf.addEventListener("submit", (ev) => { ev.preventDefault(); this.loadHistory(); });
    for (const b of $$("[data-range]", hf)) b.addEventListener("click", () => { this.quickRange(b.dataset.range); this.loadHistory(); });
    $("#history-csv").addEventListener("click", () => this.exportHistory());
    this.quickRange("24h");
  }

  // ------------------------------------------------------------ history: one row per occurrence

  quickRange(name) {
    const now = new Date();
    let since;
    if (name === "shift") {
      // Shifts start at 06:00, 14:00 and 22:00 local time.
      since = new Date(now);
      since.setMinutes(0, 0, 0);
      const h = now.getHours();
      const start = h >= 22 ? 22 : h >= 14 ? 14 : h >= 6 ? 6 : -2;
      since.setHours(start);
    } else if (name === "7d") since = new Date(now - 7 * 86400e3);
    else since = new Date(now - 86400e3);
    const f = $("#history-form");
    f.since.value = fmtDateMinutes(since);
    f.until.value = "";
    for (const b of $$("[data-range]", f)) b.classList.toggle("on", b.dataset.range === name);
  }

  async loadHistory() {
    const f = $("#history-form");
    const params = new URLSearchParams({ limit: "1000" });
    if (f.line.value) params.set("line", f.line.value);
    // The console's one date format (not the browser locale's): YYYY-MM-DD HH:MM, local time.
    for (const name of ["since", "until"]) {
      const text = f[name].value.trim();
      if (!text) continue;
      const d = parseDateTime(text);
      f[name].setAttribute("aria-invalid", d ? "false" : "true");
      if (!d) { $("#history-status").textContent = `${name === "since" ? "Since" : "Until"}: "${text}" is not a time; write YYYY-MM-DD HH:MM`; return; }
      params.set(name, d.toISOString());
    }
    const events = [];
    let before = null;
    for (let page = 0; page < 20; page++) {
      if (before) params.set("before", before);
      const r = await heavyFetch(`/api/alarms/history?${params}`);
      if (!r.ok) { $("#history-status").textContent = `history failed (HTTP ${r.status})`; return; }
      const body = await r.json();
      events.push(...(body.events || []));
      before = body.next_before;
      if (!before) break;
    }
    const byOcc = new Map();
    for (const e of events.slice().reverse()) { // oldest first
      if (!e.id) continue;
      const key = `${e.alarm}#${e.id}`;
      let o = byOcc.get(key);
      if (!o) {
        o = { key, id: e.id, alarm: e.alarm, line: e.production_line_id, message: e.message, priority: priorityOf(e), condition: e.condition,
          raised: e.raised_at, value: raisedValue(e), acked_at: null, acked_by: null, cleared: null, comments: [], tag: e.tag };
        byOcc.set(key, o);
      }
      o.raised = o.raised || e.raised_at;
      if (o.value == null) o.value = raisedValue(e);
      if (e.acked_at) { o.acked_at = e.acked_at; o.acked_by = e.acked_by; }
      if (e.cleared_at) o.cleared = e.cleared_at;
      if (e.late) o.late = true;
      const note = e.event === "acknowledged" ? e.comment || e.note : e.note;
      if (note) o.comments.push(`${e.event}${e.user ? ` by ${e.user}` : ""}: ${note}`);
      o.priority = priorityOf(e);
    }
    const text = f.text.value.trim().toLowerCase();
    const pri = f.priority.value;
    let rows = [...byOcc.values()].filter((o) => (!text || `${o.alarm} ${o.message}`.toLowerCase().includes(text)) && (!pri || String(o.priority) === pri));
    rows.sort((a, b) => String(b.raised).localeCompare(String(a.raised)));
    this.history = rows;
    $("#history-status").textContent = `${rows.length} occurrence(s) from ${events.length} event(s)${before ? " (more exist: narrow the range)" : ""}`;
    $("#history-table tbody").replaceChildren(...rows.map((o) => {
      const dur = o.raised ? (o.cleared ? Date.parse(o.cleared) : Date.now()) - Date.parse(o.raised) : null;
      const td = (label, ...c) => el("td", { "data-label": label }, ...c);
      return el("tr", { class: `p-${o.priority}`, "data-occurrence": o.id, "data-alarm": o.alarm },
        td("Priority", priorityIcon(o.priority, true)), td("Alarm", dotted(o.alarm),
          ...(o.late ? [" ", el("span", { class: "pill late", title: "reached the record late (recorded by a node cut off from the bus)" }, "late")] : [])), td("Message", o.message),
        td("Raised", fmtDateTime(o.raised)), td("Value at raise", o.value == null ? "—" : `${this.fmtValue(o)} ${this.unit(this.ref(o))}`.trim()),
        td("Acked", o.acked_by ? `${o.acked_by} ${fmtDateTime(o.acked_at)}` : "—"),
        td("Cleared", o.cleared ? fmtDateTime(o.cleared) : "active"), td("Duration", fmtDuration(dur)),
        td("Comments", o.comments.join(" · ")));
    }));
  }

  // A history row as an alarm record (line and tag), for decimals() and unit().
  ref(o) { return { production_line_id: o.line, tag: o.tag }; }

  // The value at raise at the tag's display precision.
  fmtValue(o) { return o.value == null ? "" : fmtNum(o.value, this.decimals(this.ref(o))); }

  // Times in UTC with their zone (ISO 8601, "Z"): a file read elsewhere must not depend on
  // this browser's zone. Values at the tag's display precision, the unit in its own column.
  exportHistory() {
    const head = ["occurrence", "priority", "alarm", "line", "message", "raised", "value_at_raise", "unit", "acked_by", "acked_at", "cleared", "duration_s", "comments"];
    const rows = this.history.map((o) => [o.id, o.priority, o.alarm, o.line, o.message, isoUtc(o.raised), this.fmtValue(o), this.unit(this.ref(o)), o.acked_by, isoUtc(o.acked_at), isoUtc(o.cleared),
      o.raised ? Math.round(((o.cleared ? Date.parse(o.cleared) : Date.now()) - Date.parse(o.raised)) / 1000) : "", o.comments.join(" | ")]);
    downloadCsv(`alarm-history-${fmtDateTime(new Date()).replace(/[ :]/g, "-")}.csv`, [head, ...rows]);
  }
}
