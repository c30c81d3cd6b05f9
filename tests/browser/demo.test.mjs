// Clicks through every flow of the demo page in a real headless Chromium and checks what the page
// shows. Usage: node demo.test.mjs <trustgate binary> <screenshot dir>
// Uses Debian's /usr/bin/chromium (playwright-core never downloads a browser).
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

test("the demo page shows all four patterns, spoofing and bad tokens", async () => {
  const { child, url } = await startDemo();
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage();
    await page.goto(`${url}/`);
    await page.waitForSelector("#user option", { state: "attached" });
    assert.equal(await page.locator("#user option").count(), 3);

    async function click(testid) {
      const before = await page.evaluate(() => document.body.dataset.done || "");
      await page.getByTestId(testid).click();
      await page.waitForFunction((b) => (document.body.dataset.done || "") !== b, before);
      return {
        status: await page.getByTestId("result-status").textContent(),
        challenge: await page.getByTestId("result-challenge").textContent(),
        verdict: await page.getByTestId("result-verdict").textContent(),
        body: await page.getByTestId("result-body").textContent(),
      };
    }

    const modes = { "pattern-1": "external-jwt", "pattern-2": "external-jwt", "pattern-3": "identity-headers", "pattern-4": "internal-token" };
    await page.selectOption("#user", "alice");
    for (const [button, mode] of Object.entries(modes)) {
      const r = await click(button);
      assert.match(r.status, /^200/, `${button}: ${r.body}`);
      const body = JSON.parse(r.body);
      assert.equal(body.received.subject, "alice", button);
      assert.equal(body.received.mode, mode, button);
      assert.match(r.verdict, /^allowed/);
    }
    await page.screenshot({ path: `${artifacts}/demo-pattern4.png`, fullPage: true });

    // Spoofing: the service still sees alice, never "admin".
    await page.getByTestId("spoof").check();
    const spoofed = await click("pattern-3");
    assert.match(spoofed.status, /^200/);
    assert.equal(JSON.parse(spoofed.body).received.headers.identity["x-user-id"], "alice");
    await page.screenshot({ path: `${artifacts}/demo-spoof.png`, fullPage: true });
    await page.getByTestId("spoof").uncheck();

    for (const kind of ["expired", "forged"]) {
      const r = await click(kind);
      assert.match(r.status, /^401/, kind);
      assert.equal(r.challenge, 'Bearer error="invalid_token"', kind);
    }
    await page.screenshot({ path: `${artifacts}/demo-expired.png`, fullPage: true });
  } finally {
    await browser.close();
    child.kill();
  }
});
