// Log in with user name and password; the server sets an HttpOnly session cookie.
// "Continue as viewer" first clears any dead session cookie, so it never loops back here.
const form = document.getElementById("login-form");
const error = document.getElementById("login-error");
const reason = new URLSearchParams(location.search).get("reason");
if (reason) {
  const p = document.getElementById("login-reason");
  p.textContent = reason;
  p.classList.remove("hidden");
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = { username: form.username.value, password: form.password.value };
  const r = await fetch("/api/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (r.ok) {
    location.href = "/";
    return;
  }
  const err = await r.json().catch(() => ({}));
  error.textContent = err.message || `login failed (${r.status})`;
});

document.getElementById("as-viewer").addEventListener("click", async () => {
  await fetch("/api/logout", { method: "POST" }).catch(() => {});
  const me = await fetch("/api/me", { cache: "no-store" }).catch(() => null);
  if (me && me.ok) {
    location.href = "/";
    return;
  }
  error.textContent = "This plant does not allow viewing without logging in.";
});
