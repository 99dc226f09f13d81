// Dashboard side of the wire protocol (docs/protocol.md): one connection, automatic
// reconnect with exponential backoff and jitter (1 s growing x1.3 to 10 s), requests with
// replies, seq-gap detection and alarm resume after a reconnect. The resume carries the epoch
// of the alarm ids it counts in (a cluster gateway answers a different epoch with a fresh
// snapshot, `recovered: false`), and the connection keeps what the server says about the
// plant data behind it (`data_status`, `snapshot.data_live`): a socket can be alive while the
// data behind it are not.
//
// A resume is a heavy read: a busy server refuses it `too_many_requests` (docs/protocol.md).
// The connection then asks again after a growing wait (RESUME_RETRY: 1 s doubling to 8 s, 6
// asks in about 23 s), from the same cursor and epoch; a connection that closes before its
// resume was served leaves that cursor to the next one. Past the bound, or refused for any
// other reason, it gives up and emits `resume_failed` (the console shows a notice): the
// connection's snapshot still shows the current alarm state, only the events missed while
// away were not replayed.

export const BACKOFF = { initialMs: 1000, factor: 1.3, maxMs: 10000, jitter: 0.2 };
export const RESUME_RETRY = { tries: 6, initialMs: 1000, factor: 2, maxMs: 8000, jitter: 0.2 };

export function backoffDelay(attempt, policy = BACKOFF) {
  const base = Math.min(policy.initialMs * Math.pow(policy.factor, attempt), policy.maxMs);
  const spread = base * policy.jitter;
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
    this.resumeRetry = { ...RESUME_RETRY };
    this.unreplayed = null; // {alarm_cursor, epoch?}: a resume not served yet
    this.resumeTimer = null;
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
    clearTimeout(this.resumeTimer);
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
      if (wasReconnect && this.alarmCursor !== null && !this.unreplayed) {
        // Taken before this connection's snapshot is read: cursor and epoch are the old ones.
        const data = { alarm_cursor: this.alarmCursor };
        if (this.epoch !== null) data.epoch = this.epoch; // an old server refuses unknown keys
        this.unreplayed = data;
      }
      // A previous connection's resume that was never served is asked for here instead.
      if (this.unreplayed) this.resume(this.ws, this.unreplayed);
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

  // Ask for the alarm events missed while away; ask again while the server is too busy.
  async resume(ws, data) {
    const policy = this.resumeRetry;
    for (let tries = 1; ; tries++) {
      let reply;
      try {
        reply = await this.request("resume", data, null);
      } catch (err) {
        return; // the connection closed: the next one asks with the same cursor
      }
      if (this.ws !== ws || this.unreplayed !== data) return;
      const busy = !reply.ok && reply.error === "too_many_requests";
      if (reply.ok || !busy || tries >= policy.tries) {
        this.unreplayed = null;
        if (!reply.ok) {
          const why = busy ? `the server stayed busy (asked ${tries} times)` : `${reply.error}: ${reply.message || ""}`;
          this.emit("resume_failed", { type: "resume_failed", data: { ...data, tries, error: reply.error, reason: why } });
        }
        return;
      }
      await new Promise((wake) => {
        clearTimeout(this.resumeTimer);
        this.resumeTimer = setTimeout(wake, backoffDelay(tries - 1, policy));
      });
      if (this.ws !== ws || this.stopped) return;
    }
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

  // timeoutMs null: wait for the reply for as long as the connection lasts.
  request(type, data, timeoutMs = 5000) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (!this.send(type, data, id)) {
        reject(new Error("not connected"));
        return;
      }
      this.pending.set(id, { resolve, reject });
      if (timeoutMs === null) return;
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
