// Log in with user name and password; the server sets an HttpOnly session cookie.
const form = document.getElementById("login-form");
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
  document.getElementById("login-error").textContent = err.message || `login failed (${r.status})`;
});
