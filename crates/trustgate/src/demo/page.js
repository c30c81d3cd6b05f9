// The demo page: every button sends a real request through the gateway, then shows who decided
// (the gateway, at which step, or the service), what the client sent and what the service
// received, side by side. Plain JS, no build step; tokens are shown decoded, never raw.
"use strict";

const PATTERNS = [
  {
    id: "1", method: "GET", path: "/p1/users/me", service: "users",
    title: "1 · The service validates",
    gateway: "passes the token untouched; the users service validates it itself",
    tradeoff: "Pick it when every service must hold its own proof (regulated data, zero trust, independent audit). Cost: every service fetches keys and validates; the gateway adds only sanitization.",
  },
  {
    id: "2", method: "GET", path: "/p2/courses", service: "courses",
    title: "2 · The gateway validates and forwards the JWT",
    gateway: "validates the token, then forwards the same token",
    tradeoff: "Pick it to stop bad tokens at the edge while services keep the original JWT (to check again, or to call others on the user's behalf). Cost: the external token travels into the mesh.",
  },
  {
    id: "3", method: "GET", path: "/p3/payments", service: "payments",
    title: "3 · Identity headers from verified claims",
    gateway: "validates once, strips client identity headers, injects its own and signs them (assertion)",
    tradeoff: "Pick it for simple services that should only read headers. Cost: services must trust the gateway, so the assertion (or mTLS) must prove the headers came from it.",
  },
  {
    id: "4", method: "GET", path: "/p4/users/me", service: "users",
    title: "4 · An internal token replaces the external one",
    gateway: "validates, then mints a short-lived internal token with its own keys",
    tradeoff: "Pick it when external identity must never cross into the mesh (many IdPs, partners). Cost: another issuer to run and rotate, and one more hop to diagnose.",
  },
];

const CONTROLS = [
  { kind: "valid", label: "Valid token", testid: (p) => `pattern-${p}` },
  { kind: "none", label: "No token", testid: (p) => `p${p}-none`, bad: true },
  { kind: "expired", label: "Expired", testid: (p) => `p${p}-expired`, bad: true },
  { kind: "forged", label: "Forged signature", testid: (p) => `p${p}-forged`, bad: true },
  { kind: "audience", label: "Wrong audience", testid: (p) => `p${p}-audience`, bad: true },
  { kind: "spoof-only", label: "Spoofed headers, no token", testid: (p) => `p${p}-spoof-only`, bad: true },
];

const KIND_TEXT = {
  valid: "a valid token",
  none: "no token",
  expired: "an expired token",
  forged: "a token with a forged signature",
  audience: "a token for another audience",
  "spoof-only": "spoofed identity headers and no token",
};

const SPOOF = { "X-User-Id": "admin", "X-User-Roles": "admin", "X-Tenant-Id": "evil-corp" };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) node.append(child);
  return node;
}

// The claims of a JWT, decoded for display (base64url, no validation: the page only shows them).
function decode(token) {
  const part = (i) => JSON.parse(atob(token.split(".")[i].replace(/-/g, "+").replace(/_/g, "/")));
  try {
    return { header: part(0), claims: part(1) };
  } catch (_) {
    return { header: {}, claims: {} };
  }
}

function rows(pairs, testid) {
  const dl = el("dl", { class: "pairs", ...(testid ? { "data-testid": testid } : {}) });
  for (const [k, v] of pairs) dl.append(el("dt", {}, k), el("dd", {}, v));
  return dl;
}

function short(text) {
  return text && text.length > 14 ? `${text.slice(0, 12)}…` : String(text ?? "–");
}

function lifetime(claims) {
  return claims.exp && claims.iat ? `${claims.exp - claims.iat} s` : "–";
}

async function loadUsers() {
  const users = await (await fetch("/demo/users")).json();
  for (const u of users) {
    $("user").append(el("option", { value: u.name, textContent: u.name }));
    $("users").append(el("li", { "data-user": u.name },
      el("strong", { textContent: u.name }),
      ` roles ${u.roles.join(", ")}; scopes ${u.scope}; tenant ${u.tenant}`));
  }
}

function buildPatterns() {
  for (const p of PATTERNS) {
    const buttons = el("div", { class: "buttons" });
    for (const c of CONTROLS) {
      buttons.append(el("button", {
        class: c.bad ? "bad" : "", textContent: c.label,
        "data-testid": c.testid(p.id), "data-pattern": p.id, "data-kind": c.kind,
      }));
    }
    $("patterns").append(el("article", { class: "pattern", "data-pattern": p.id },
      el("h2", { textContent: p.title }),
      el("p", { class: "gw", textContent: `Gateway: ${p.gateway}.` }),
      el("p", { class: "tradeoff", textContent: p.tradeoff }),
      buttons));
  }
}

async function tokenFor(kind) {
  const issued = kind === "none" || kind === "spoof-only" ? "valid" : kind;
  const r = await fetch(`/demo/token?user=${encodeURIComponent($("user").value)}&kind=${issued}`);
  return (await r.json()).access_token;
}

function highlight(pattern) {
  for (const lane of document.querySelectorAll(".lane")) {
    lane.classList.toggle("active", lane.dataset.pattern === pattern);
  }
}

// Where the gateway stopped a request, from its RFC 6750 answer.
function gatewayStep(status, challenge) {
  if (status === 400) return "request checks (a malformed or ambiguous request)";
  if (status === 401 && /invalid_token/.test(challenge)) return "token validation (signature, expiry, audience)";
  if (status === 401) return "token required (none was sent)";
  if (status === 403) return "route requirements";
  if (status === 502 || status === 504) return "upstream";
  return `status ${status}`;
}

function showSent(p, kind, token, spoofed) {
  const box = $("sent");
  box.replaceChildren();
  box.append(rows([["Request", `${p.method} ${p.path}`]]));
  if (token) {
    const { header, claims } = decode(token);
    box.append(el("h4", { textContent: "Authorization: Bearer (external token, decoded)" }),
      rows([["iss", claims.iss], ["aud", claims.aud], ["sub", claims.sub], ["lifetime", lifetime(claims)],
        ["kid", short(header.kid)], ["jti", short(claims.jti)]], "sent-token"));
  } else {
    box.append(el("p", { class: "none", textContent: "No Authorization header." }));
  }
  if (Object.keys(spoofed).length) {
    box.append(el("h4", { textContent: "Identity headers typed by the client" }),
      rows(Object.entries(spoofed), "sent-headers"));
  }
}

function showReceived(p, answer, sentToken, spoofed) {
  const box = $("received");
  box.replaceChildren();
  if (!answer) {
    box.append(el("p", {
      class: "nothing", "data-testid": "received-nothing",
      textContent: "Nothing: the gateway refused the request, so the service never saw it.",
    }));
    return;
  }
  const r = answer.received;
  if (!r) {
    box.append(el("p", { textContent: "The service refused before its handler ran; its answer is below." }));
    return;
  }
  const claims = r.claims || {};
  box.append(rows([["mode", r.mode], ["subject", r.subject], ["roles", (r.roles || []).join(", ")],
    ["tenant", r.tenant ?? "–"], ["Authorization", r.headers.authorization ?? "none"]]));
  const ext = sentToken ? decode(sentToken).claims : {};
  if (p.id === "2" || p.id === "1") {
    const same = ext.jti && claims.jti === ext.jti;
    box.append(el("p", {
      class: same ? "proof ok" : "proof", "data-testid": "same-token",
      textContent: same ? `The same token arrived (jti ${short(claims.jti)} on both sides).` : "A different token arrived.",
    }));
  }
  if (p.id === "3") {
    const table = el("table", { "data-testid": "received-headers" },
      el("tr", {}, el("th", { textContent: "header" }), el("th", { textContent: "client sent" }), el("th", { textContent: "service received" })));
    const names = new Set([...Object.keys(spoofed).map((n) => n.toLowerCase()), ...Object.keys(r.headers.identity)]);
    for (const name of names) {
      const sent = Object.entries(spoofed).find(([k]) => k.toLowerCase() === name)?.[1];
      const got = r.headers.identity[name];
      const sentCell = el("td", {});
      if (sent !== undefined) sentCell.append(got === sent ? sent : el("del", { textContent: sent }));
      else sentCell.append("–");
      table.append(el("tr", { "data-header": name }, el("td", { textContent: name }), sentCell,
        el("td", { textContent: got ?? "removed" })));
    }
    box.append(el("h4", { textContent: "Identity headers: forged ones struck out, replaced from the verified token" }), table,
      el("p", { class: r.headers["x-trustgate-assertion"] ? "proof ok" : "proof", textContent:
        r.headers["x-trustgate-assertion"] ? "A gateway assertion signed these headers; the service checked it." : "No assertion." }));
  }
  if (p.id === "4") {
    box.append(el("h4", { textContent: "The internal token, decoded by the service" }),
      rows([["typ", "internal+jwt (required by the service)"], ["iss", claims.iss], ["aud", claims.aud],
        ["lifetime", lifetime(claims)], ["kid", short(r.key?.kid)], ["ext_iss", claims.ext_iss], ["jti", short(claims.jti)]], "internal-token"));
    const never = ext.jti && claims.jti !== ext.jti && claims.iss !== ext.iss;
    box.append(el("p", {
      class: never ? "proof ok" : "proof", "data-testid": "external-never-arrived",
      textContent: never ? `The external token never arrived: another issuer (${claims.iss}), another jti.` : "Check the tokens above.",
    }));
  }
}

async function send(p, kind) {
  highlight(p.id);
  const headers = {};
  const token = kind === "none" || kind === "spoof-only" ? null : await tokenFor(kind);
  if (token) headers.Authorization = `Bearer ${token}`;
  const spoofed = $("spoof").checked || kind === "spoof-only" ? { ...SPOOF } : {};
  Object.assign(headers, spoofed);
  const response = await fetch(p.path, { method: p.method, headers });
  const text = await response.text();
  let answer = null;
  try { answer = JSON.parse(text); } catch (_) { /* not JSON */ }
  const challenge = response.headers.get("www-authenticate") || "";
  const service = response.headers.get("x-demo-answered-by");

  $("result-title").textContent = kind === "valid"
    ? `Pattern ${p.title}`
    : `Pattern ${p.id} with ${KIND_TEXT[kind]}`;
  $("result-request").textContent = `${p.method} ${p.path}` + (Object.keys(spoofed).length ? " + spoofed identity headers" : "");
  $("result-status").textContent = `${response.status} ${response.statusText}`;
  $("result-challenge").textContent = challenge || "–";
  const who = $("who-decided");
  who.dataset.decider = service ? "service" : "gateway";
  who.textContent = service
    ? `The ${service} service (trustgate-service), ${response.ok ? "which allowed it" : "which refused it"}`
    : `The trustgate gateway, at ${gatewayStep(response.status, challenge)}: the service never saw the request`;
  const v = $("result-verdict");
  v.textContent = (answer && (answer.verdict || answer.error)) || (response.ok ? "allowed" : "refused");
  v.className = response.ok ? "ok" : "denied";
  showSent(p, kind, token, spoofed);
  showReceived(p, service && response.ok ? answer : (service ? {} : null), token, spoofed);
  $("result-body").textContent = answer ? JSON.stringify(answer, null, 2) : text;
  document.body.dataset.done = String(Date.now());
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-pattern]");
  if (!button) return;
  const p = PATTERNS.find((x) => x.id === button.dataset.pattern);
  send(p, button.dataset.kind);
});

buildPatterns();
loadUsers();
