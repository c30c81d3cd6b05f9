// Clicks through the demo page in a real headless Chromium and checks what the page shows: who
// decided (the gateway, or the service), what the client sent next to what the service
// received, every pattern's negative controls, and the layout at desktop and phone widths.
// Usage: node demo.test.mjs <trustgate binary> <screenshot dir>. Screenshots are kept as
// artifacts. Uses Debian's /usr/bin/chromium (playwright-core never downloads a browser).
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const binary = process.argv[2] ?? "target/debug/trustgate";
const artifacts = process.argv[3] ?? "artifacts";
mkdirSync(artifacts, { recursive: true });

function startDemo() {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, ["demo", "--port", "0", "--admin-port", "0"], { stdio: ["ignore", "pipe", "inherit"] });
    let buffer = "";
    const timer = setTimeout(() => reject(new Error("demo did not start")), 60000);
    child.stdout.on("data", (chunk) => {
      buffer += chunk;
      const match = buffer.match(/Open (http:\/\/127\.0\.0\.1:\d+)\//);
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: match[1] });
      }
    });
    child.on("exit", (code) => reject(new Error(`demo exited with ${code}`)));
  });
}

test("the demo page shows who decided, both sides of every pattern, and fits a phone", async () => {
  const { child, url } = await startDemo();
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    // Every console error and failed load counts (a missing favicon included).
    const problems = [];
    // Chromium logs every 4xx a fetch gets; the refusals the page asks for on purpose are the
    // demo's subject, not errors. Anything else (a page resource, a script error) counts.
    const deliberate = (u) => /\/p[1-4]\//.test(u);
    page.on("console", (m) => {
      if (m.type() === "error" && !deliberate(m.location().url)) problems.push(`console: ${m.text()} (${m.location().url})`);
    });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("response", (r) => {
      // Refusals the page asks for on purpose are API answers, not broken page resources.
      if (r.status() >= 400 && !deliberate(r.url())) problems.push(`${r.status()} ${r.url()}`);
    });
    await page.goto(`${url}/`);
    await page.waitForSelector("#user option", { state: "attached" });
    assert.equal(await page.locator("#user option").count(), 3);
    // The user list explains a 403: each user's roles and scopes are on the page.
    const bob = await page.locator('#users li[data-user="bob"]').textContent();
    assert.match(bob, /roles student; scopes courses:read; tenant globex/);

    async function click(testid) {
      const before = await page.evaluate(() => document.body.dataset.done || "");
      await page.getByTestId(testid).click();
      await page.waitForFunction((b) => (document.body.dataset.done || "") !== b, before);
      return {
        status: await page.getByTestId("result-status").textContent(),
        challenge: await page.getByTestId("result-challenge").textContent(),
        who: await page.getByTestId("who-decided").textContent(),
        decider: await page.getByTestId("who-decided").getAttribute("data-decider"),
        sent: await page.getByTestId("sent").textContent(),
        received: await page.getByTestId("received").textContent(),
        body: await page.getByTestId("result-body").textContent(),
      };
    }

    const modes = { 1: "external-jwt", 2: "external-jwt", 3: "identity-headers", 4: "internal-token" };
    await page.selectOption("#user", "alice");
    for (const [p, mode] of Object.entries(modes)) {
      const r = await click(`pattern-${p}`);
      assert.match(r.status, /^200/, `pattern ${p}: ${r.body}`);
      assert.equal(r.decider, "service", `pattern ${p}`);
      const body = JSON.parse(r.body);
      assert.equal(body.received.subject, "alice");
      assert.equal(body.received.mode, mode);
    }

    // Pattern 2: the same token on both sides.
    await click("pattern-2");
    assert.match(await page.getByTestId("same-token").textContent(), /^The same token arrived/);

    // Pattern 4: the internal token decoded next to the external one; the external never arrived.
    const p4 = await click("pattern-4");
    assert.match(p4.sent, /Authorization: Bearer \(external token, decoded\)/);
    const internal = await page.getByTestId("internal-token").textContent();
    assert.match(internal, /typinternal\+jwt/);
    assert.match(internal, /audusers/);
    assert.match(await page.getByTestId("external-never-arrived").textContent(), /^The external token never arrived/);
    await page.screenshot({ path: `${artifacts}/demo-pattern4.png`, fullPage: true });

    // Pattern 3 with spoofed headers: what the client typed, struck out, next to what arrived.
    await page.getByTestId("spoof").check();
    const spoofed = await click("pattern-3");
    assert.match(spoofed.status, /^200/);
    assert.equal(JSON.parse(spoofed.body).received.headers.identity["x-user-id"], "alice");
    const row = page.locator('[data-testid="received-headers"] tr[data-header="x-user-id"]');
    assert.equal(await row.locator("del").textContent(), "admin");
    assert.equal(await row.locator("td").nth(2).textContent(), "alice");
    await page.screenshot({ path: `${artifacts}/demo-spoof.png`, fullPage: true });
    await page.getByTestId("spoof").uncheck();

    // A gateway refusal: who decided says the gateway and the step; the service received nothing.
    for (const [testid, status, step] of [
      ["p2-expired", /^401/, /token validation/],
      ["p3-forged", /^401/, /token validation/],
      ["p4-audience", /^401/, /token validation/],
      ["p2-none", /^401/, /token required/],
      ["p3-spoof-only", /^401/, /token required/],
    ]) {
      const r = await click(testid);
      assert.match(r.status, status, testid);
      assert.equal(r.decider, "gateway", testid);
      assert.match(r.who, /^The trustgate gateway, at /, testid);
      assert.match(r.who, step, testid);
      assert.equal(await page.getByTestId("received-nothing").count(), 1, testid);
    }
    assert.equal(
      await page.getByTestId("result-title").textContent(),
      "Pattern 3 with spoofed identity headers and no token",
    );
    await click("p2-expired");
    assert.equal(await page.getByTestId("result-title").textContent(), "Pattern 2 with an expired token");
    await page.screenshot({ path: `${artifacts}/demo-gateway-refusal.png`, fullPage: true });

    // Service refusals: pattern 1's service validates itself; bob lacks payments:read (403).
    for (const [testid, status] of [["p1-expired", /^401/], ["p1-none", /^401/], ["p1-forged", /^401/]]) {
      const r = await click(testid);
      assert.match(r.status, status, testid);
      assert.equal(r.decider, "service", testid);
      assert.match(r.who, /^The users service \(trustgate-service\), which refused it/, testid);
    }
    await page.selectOption("#user", "bob");
    const forbidden = await click("pattern-3");
    assert.match(forbidden.status, /^403/);
    assert.equal(forbidden.challenge, 'Bearer error="insufficient_scope"');
    assert.equal(forbidden.decider, "service");
    assert.match(forbidden.who, /^The payments service/);
    await page.screenshot({ path: `${artifacts}/demo-service-refusal.png`, fullPage: true });

    // A 420 px phone: nothing wider than the screen.
    await page.setViewportSize({ width: 420, height: 900 });
    await page.selectOption("#user", "alice");
    await click("pattern-4");
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than a 420px screen`);
    await page.screenshot({ path: `${artifacts}/demo-phone.png`, fullPage: true });

    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
    child.kill();
  }
});
