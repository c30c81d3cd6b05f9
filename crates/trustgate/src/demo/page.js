// The demo page: every button sends a real request through the gateway and shows what the
// service received. Plain JS, no build step.
const ROUTES = {
  "1": { method: "GET", path: "/p1/users/me", title: "Pattern 1: the users service validated the JWT itself" },
  "2": { method: "GET", path: "/p2/courses", title: "Pattern 2: the gateway validated and forwarded the JWT" },
  "3": { method: "GET", path: "/p3/payments", title: "Pattern 3: identity headers from verified claims, with a signed assertion" },
  "4": { method: "GET", path: "/p4/users/me", title: "Pattern 4: the service saw only an internal token" },
};
const SPOOF = { "X-User-Id": "admin", "X-User-Roles": "admin", "X-Tenant-Id": "evil-corp" };
const $ = (id) => document.getElementById(id);

async function loadUsers() {
  const users = await (await fetch("/demo/users")).json();
  for (const u of users) {
    const opt = document.createElement("option");
    opt.value = u.name;
    opt.textContent = `${u.name} — roles ${u.roles.join(", ")}; tenant ${u.tenant}`;
    $("user").appendChild(opt);
  }
}

async function token(kind) {
  const r = await fetch(`/demo/token?user=${encodeURIComponent($("user").value)}&kind=${kind}`);
  return (await r.json()).access_token;
}

function highlight(pattern) {
  for (const lane of document.querySelectorAll(".lane")) {
    lane.classList.toggle("active", lane.dataset.pattern === pattern);
  }
}

async function send(pattern, kind) {
  const route = ROUTES[pattern];
  highlight(pattern);
  const headers = { Authorization: `Bearer ${await token(kind)}` };
  const spoofing = $("spoof").checked;
  if (spoofing) Object.assign(headers, SPOOF);
  const response = await fetch(route.path, { method: route.method, headers });
  const text = await response.text();
  let body = text;
  let verdict = "";
  try {
    const json = JSON.parse(text);
    body = JSON.stringify(json, null, 2);
    verdict = json.verdict || json.error || "";
  } catch (_) { /* not JSON */ }
  $("result-title").textContent = kind === "valid" ? route.title : `A ${kind} token, sent to pattern ${pattern}`;
  $("result-request").textContent = `${route.method} ${route.path}` + (spoofing ? " + spoofed identity headers" : "");
  $("result-status").textContent = `${response.status} ${response.statusText}`;
  $("result-challenge").textContent = response.headers.get("www-authenticate") || "–";
  const v = $("result-verdict");
  v.textContent = verdict || (response.ok ? "allowed" : "refused");
  v.className = response.ok ? "ok" : "denied";
  $("result-body").textContent = body;
  document.body.dataset.done = String(Date.now());
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button");
  if (!button) return;
  if (button.dataset.pattern) send(button.dataset.pattern, "valid");
  if (button.dataset.kind) send("2", button.dataset.kind);
});

loadUsers();
