// Connection diagnostics: state, frame rate, the last frames, and a raw message box.
import { PlantConnection, defaultUrl } from "/static/ws.js";

const MAX_LOG = 50;
const conn = new PlantConnection(defaultUrl());
window.plant = conn;
const log = [];
const arrivals = [];
const $ = (id) => document.getElementById(id);

conn.onStatus((s, d) => {
  const node = $("conn");
  node.className = `conn conn-${s}`;
  node.dataset.state = s;
  node.querySelector(".label").textContent = s === "reconnecting" ? `reconnecting (attempt ${d.attempt})` : s;
  $("d-state").textContent = s;
});
conn.on("*", (f) => {
  const now = performance.now();
  arrivals.push(now);
  const text = JSON.stringify(f);
  log.unshift(`${new Date().toISOString()} ${text.length > 400 ? text.slice(0, 400) + "…" : text}`);
  if (log.length > MAX_LOG) log.length = MAX_LOG;
});
setInterval(() => {
  const now = performance.now();
  while (arrivals.length && arrivals[0] < now - 5000) arrivals.shift();
  $("d-rate").textContent = (arrivals.length / 5).toFixed(1);
  $("d-frames").textContent = conn.framesReceived;
  $("d-gaps").textContent = conn.gaps;
  $("d-seq").textContent = conn.lastSeq;
  $("d-cursor").textContent = conn.alarmCursor ?? "—";
  $("d-epoch").textContent = conn.epoch ?? "—";
  const ds = conn.dataStatus;
  $("d-data").textContent = conn.state !== "connected" ? "—"
    : ds ? `not live: ${ds.reason || "the server says so"}${ds.since ? ` since ${ds.since}` : ""}` : "live";
  $("d-log").textContent = log.join("\n");
}, 500);
setInterval(async () => {
  try {
    const r = await fetch("/health/websocket");
    $("d-server").textContent = JSON.stringify(await r.json(), null, 2);
  } catch (err) {
    $("d-server").textContent = `unreachable: ${err}`;
  }
}, 2000);
$("raw-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (!conn.sendRaw(ev.target.raw.value)) alert("not connected");
});
conn.start();
