// Annunciation: a new unacknowledged priority 1 or 2 alarm sounds a horn (Web Audio, nothing
// to fetch) and flashes the banner until it is acknowledged or this console silences it.
// Silence is per console and audited (POST /api/console/silence).

const KEY_SOUND = "scada.sound";
const KEY_CONSOLE = "scada.console";

export function consoleId() {
  let id = localStorage.getItem(KEY_CONSOLE);
  if (!id) {
    id = `console-${Math.random().toString(36).slice(2, 8)}`;
    localStorage.setItem(KEY_CONSOLE, id);
  }
  return id;
}

export class Horn {
  constructor() {
    this.pending = new Map(); // "alarm#occurrence" -> alarm name, sounding until ack/silence
    this.known = new Set(); // occurrences already announced (or silenced) on this console
    this.audio = null;
    this.timer = null;
    this.defaultOn = false;
    this.listeners = [];
  }

  // Stored choice of this browser, else the default for who is logged in.
  get soundOn() {
    const stored = localStorage.getItem(KEY_SOUND);
    return stored === null ? this.defaultOn : stored === "on";
  }

  setSound(on) {
    localStorage.setItem(KEY_SOUND, on ? "on" : "off");
    if (on) this.unlock();
    this.update();
  }

  setDefault(on) {
    this.defaultOn = on;
    this.update();
  }

  onChange(f) { this.listeners.push(f); }

  get sounding() { return this.pending.size > 0 && this.soundOn; }

  get flashing() { return this.pending.size > 0; }

  // Called with every alarm record the console holds (after each change).
  observe(alarms) {
    const unacked = new Set();
    for (const a of alarms) {
      if (a.priority > 2 || a.state === "shelved" || a.state === "suppressed") continue;
      if (a.state !== "unacked_active" && a.state !== "unacked_cleared") continue;
      const key = `${a.alarm}#${a.id}`;
      unacked.add(key);
      if (!this.known.has(key)) {
        this.known.add(key);
        this.pending.set(key, a.alarm);
      }
    }
    for (const key of [...this.pending.keys()]) if (!unacked.has(key)) this.pending.delete(key);
    this.update();
  }

  // Occurrence ids of another journal: announce what is unacknowledged now, as on opening.
  forget() {
    this.known.clear();
    this.pending.clear();
  }

  async silence() {
    const alarms = [...new Set(this.pending.values())];
    this.pending.clear();
    this.update();
    try {
      await fetch("/api/console/silence", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ console: consoleId(), alarms }),
      });
    } catch (err) {
      console.warn("silence audit failed", err);
    }
  }

  unlock() {
    if (!this.audio) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return;
      this.audio = new Ctx();
    }
    if (this.audio.state === "suspended") this.audio.resume().catch(() => {});
  }

  update() {
    const on = this.sounding;
    if (on && !this.timer) {
      this.unlock();
      this.beep();
      this.timer = setInterval(() => this.beep(), 1200);
    } else if (!on && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
    for (const f of this.listeners) f(this);
  }

  // Two-tone horn, 0.5 s.
  beep() {
    const ctx = this.audio;
    if (!ctx || ctx.state !== "running") return;
    const t = ctx.currentTime;
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "square";
    osc.frequency.setValueAtTime(660, t);
    osc.frequency.setValueAtTime(880, t + 0.25);
    gain.gain.setValueAtTime(0.0001, t);
    gain.gain.exponentialRampToValueAtTime(0.15, t + 0.02);
    gain.gain.setValueAtTime(0.15, t + 0.45);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.5);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t);
    osc.stop(t + 0.52);
    this.beeps = (this.beeps || 0) + 1;
  }
}
