// Who is at this console. A dead session (logged out elsewhere, expired, user disabled)
// never traps the page: its cookie is cleared and the page continues as an anonymous
// viewer where the plant allows it, or goes to the login page with the reason.

const OPERATE = new Set(["operator", "engineer", "admin"]);

async function getMe() {
  const r = await fetch("/api/me", { cache: "no-store" });
  const body = await r.json().catch(() => ({}));
  return { status: r.status, body };
}

export async function clearCookie() {
  // /api/logout deletes the session cookie even when the session behind it is gone.
  await fetch("/api/logout", { method: "POST" }).catch(() => {});
}

export class Session {
  constructor() {
    this.name = null;
    this.role = "viewer";
    this.kind = null; // session | token | anonymous
    this.ended = null;
    this.notice = null;
  }

  set(body) {
    this.name = body.name;
    this.role = body.role;
    this.kind = body.kind;
  }

  label() {
    if (!this.kind) return "…";
    if (this.kind === "anonymous") return `not logged in (${this.role})`;
    return `${this.name} (${this.role}${this.kind === "token" ? ", token" : ""})`;
  }

  canOperate() { return OPERATE.has(this.role); }

  // false: the page is leaving for the login page.
  async start() {
    let me = await getMe();
    if (me.status === 401) {
      const reason = me.body.message || "session ended";
      await clearCookie();
      me = await getMe();
      if (me.status !== 200) {
        location.href = `/login?reason=${encodeURIComponent(reason)}`;
        return false;
      }
      this.notice = `Your session ended (${reason}). You are now viewing as not logged in — view only.`;
    }
    if (me.status === 200) this.set(me.body);
    return true;
  }

  fromConnected(data) {
    this.role = data.role;
    if (this.kind !== "anonymous" && data.user && data.user !== "anonymous") this.name = data.user;
  }

  // Is our identity still accepted? (A network error is not a session problem.)
  async check() {
    try {
      return (await getMe()).status !== 401;
    } catch {
      return true;
    }
  }

  // After the server ended our session: "viewer" (continued anonymously) or "login".
  async recover(reason) {
    this.ended = reason || "session ended";
    await clearCookie();
    try {
      const me = await getMe();
      if (me.status === 200) { this.set(me.body); return "viewer"; }
    } catch { /* server gone: the login page will say so */ }
    return "login";
  }

  async logout() {
    await clearCookie();
  }

  // Shift change in one step: end the current session, log the next user in. The caller
  // stops its WebSocket first, so the server closing the old session is not news.
  async switchUser(username, password) {
    if (this.kind === "session") await clearCookie();
    const r = await fetch("/api/login", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }),
    });
    const me = await getMe().catch(() => null);
    if (me && me.status === 200) this.set(me.body);
    if (!r.ok) {
      const err = await r.json().catch(() => ({}));
      return err.message || `login failed (${r.status})`;
    }
    this.ended = null;
    return null;
  }
}
