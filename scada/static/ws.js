// Dashboard side of the wire protocol (docs/protocol.md): one connection, automatic
// reconnect with exponential backoff and jitter (1 s growing x1.3 to 10 s), requests with
// replies, seq-gap detection and alarm resume after a reconnect. The resume carries the epoch
// of the alarm ids it counts in (a cluster gateway answers a different epoch with a fresh
// snapshot, `recovered: false`), and the connection keeps what the server says about the
// plant data behind it (`data_status`, `snapshot.data_live`): a socket can be alive while the
// data behind it are not.

export const BACKOFF = { initialMs: 1000, factor: 1.3, maxMs: 10000, jitter: 0.2 };

export function backoffDelay(attempt) {
  const base = Math.min(BACKOFF.initialMs * Math.pow(BACKOFF.factor, attempt), BACKOFF.maxMs);
  const spread = base * BACKOFF.jitter;
  return Math.round(base - spread + Math.random() * 2 * spread);
}

export class PlantConnection {
  constructor(url) {
    this.url = url;
    this.ws = null;
    this.state = "disconnected"; // connecting | connected | reconnecting | disconnected
    this.attempt = 0;
    this.lastSeq = 0;
    this.alarmCursor = null;
    this.epoch = null; // the epoch alarmCursor counts in; servers before the cluster send none
    this.dataStatus = null; // {live: false, reason, since} while the server says data are not live
    this.firstSnapshot = true; // the next snapshot is this connection's first
    this.handlers = new Map();
    this.statusListeners = [];
    this.pending = new Map();
    this.nextId = 1;
    this.stopped = false;
    this.timer = null;
    this.framesReceived = 0;
    this.gaps = 0;
  }

  on(type, handler) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(handler);
  }

  onStatus(listener) {
    this.statusListeners.push(listener);
  }

  setState(state, detail = {}) {
    this.state = state;
    for (const l of this.statusListeners) l(state, { attempt: this.attempt, ...detail });
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "bye");
    this.setState("disconnected");
  }

  open() {
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.scheduleReconnect(1006);
      return;
    }
    this.ws = ws;
    this.lastSeq = 0;
    ws.onmessage = (ev) => this.receive(ev.data);
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      for (const [, p] of this.pending) p.reject(new Error("connection closed"));
      this.pending.clear();
      this.emit("closed", { code: ev.code, reason: ev.reason });
      if (this.stopped) return;
      if (ev.code === 1008) {
        // Policy: credentials expired or refused. Reconnecting would only repeat it.
        this.setState("disconnected", { code: ev.code, reason: ev.reason || "policy" });
        return;
      }
      this.scheduleReconnect(ev.code);
    };
  }

  scheduleReconnect(code) {
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.setState("reconnecting", { code, delayMs: delay });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.open(), delay);
  }

  receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch (err) {
      console.error("unparseable frame", err);
      return;
    }
    this.framesReceived += 1;
    if (typeof frame.seq === "number") {
      if (this.lastSeq && frame.seq !== this.lastSeq + 1) this.gaps += 1;
      this.lastSeq = frame.seq;
    }
    if (frame.type === "connected") {
      const wasReconnect = this.attempt > 0;
      this.attempt = 0;
      this.setState("connected");
      this.firstSnapshot = true;
      if (wasReconnect && this.alarmCursor !== null) {
        // Sent before this connection's snapshot is read: cursor and epoch are the old ones.
        const data = { alarm_cursor: this.alarmCursor };
        if (this.epoch !== null) data.epoch = this.epoch; // an old server refuses unknown keys
        this.send("resume", data);
      }
    } else if (frame.type === "snapshot") {
      const d = frame.data || {};
      if (typeof d.alarm_cursor === "number") {
        // The server's cursor as given: after a journal reset it may be lower than ours.
        this.alarmCursor = d.alarm_cursor;
      }
      if (typeof d.epoch === "string") {
        // Alarm ids of another journal mean other occurrences (the part before "/" of a
        // gateway's bus epoch is the journal's; only the bus changed when that part stays).
        frame.idsChanged = this.epoch !== null && journalEpoch(this.epoch) !== journalEpoch(d.epoch);
        this.epoch = d.epoch;
      } else {
        this.epoch = null; // a server without epochs: its resume takes the cursor alone
      }
      // A connection's first snapshot speaks for its server (without data_live: an older
      // server, live by its frames alone); later ones change it only by saying so.
      const first = this.firstSnapshot;
      this.firstSnapshot = false;
      if (d.data_live === true || (first && d.data_live === undefined)) this.dataStatus = null;
      else if (d.data_live === false && !this.dataStatus) this.dataStatus = { live: false, reason: "", since: null };
    } else if (frame.type === "data_status") {
      const d = frame.data || {};
      this.dataStatus = d.live === false ? { live: false, reason: String(d.reason || ""), since: d.since || null } : null;
    } else if (frame.type === "alarm") {
      if (frame.data && typeof frame.data.event_id === "number") {
        this.alarmCursor = Math.max(this.alarmCursor ?? 0, frame.data.event_id);
      }
    } else if (frame.type === "reply") {
      const p = this.pending.get(frame.data.id);
      if (p) {
        this.pending.delete(frame.data.id);
        p.resolve(frame.data);
      }
    }
    this.emit(frame.type, frame);
    this.emit("*", frame);
  }

  // false while the server says the plant data behind this socket are not live.
  dataLive() {
    return !this.dataStatus;
  }

  emit(type, frame) {
    for (const h of this.handlers.get(type) || []) {
      try {
        h(frame);
      } catch (err) {
        console.error("handler for", type, "failed", err);
      }
    }
  }

  send(type, data, id) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    const msg = { type, timestamp: new Date().toISOString(), data };
    if (id !== undefined) msg.id = id;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  sendRaw(text) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(text);
    return true;
  }

  request(type, data, timeoutMs = 5000) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (!this.send(type, data, id)) {
        reject(new Error("not connected"));
        return;
      }
      this.pending.set(id, { resolve, reject });
      setTimeout(() => {
        if (this.pending.delete(id)) reject(new Error("no reply"));
      }, timeoutMs);
    });
  }
}

export function journalEpoch(epoch) {
  return String(epoch).split("/")[0];
}

export function defaultUrl() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}/ws`;
}
