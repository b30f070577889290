// The admin page in Chromium: two nodes on Redis, the page on one with the API key typed in;
// both nodes appear, and the numbers move when load is applied to the other.
import assert from "node:assert/strict";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";

import { launch } from "../support/browser.js";
import { Pair } from "../support/pair.js";
import { Server } from "../support/server.js";

const KEY = "admin-test-key";
let pair;

before(async () => {
  pair = await Pair.start(["--api-key", KEY]);
});

after(() => pair?.stop());

/** Publishes one event to everyone through `server`'s API, with the key. */
async function publish(server) {
  const response = await fetch(`${server.url}/api/publish/all`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ event: "load", args: [] }),
  });
  assert.equal(response.status, 200);
}

test("the admin page shows every node, and its numbers move under load", { timeout: 60_000 }, async () => {
  const { a, b, browser } = pair;
  const page = await browser.newPage({ viewport: { width: 1200, height: 700 } });
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await page.goto(`${a.url}/admin`);
  await page.locator("#state", { hasText: "connected" }).waitFor();
  await page.fill("#key", "wrong");
  await page.click("#watch button");
  await page.locator("#state", { hasText: "refused: 401" }).waitFor();
  await page.fill("#key", KEY);
  await page.click("#watch button");
  await page.locator("#state", { hasText: "watching" }).waitFor();
  await page.waitForFunction(() => document.querySelectorAll("#nodes tr").length === 2);
  // The page's own socket is on a: its node counts one.
  await page.waitForFunction(() => document.getElementById("total-sockets").textContent === "1");

  let loading = true;
  const load = (async () => {
    while (loading) await publish(b);
  })();
  await page.waitForFunction(() => Number(document.getElementById("total-publishes").textContent) > 1);
  await page.waitForFunction(() => Number(document.getElementById("total-deliveries").textContent) > 1);
  loading = false;
  await load;
  const shot = path.join(process.env.SCREENSHOT_DIR ?? tmpdir(), "admin.png");
  await page.screenshot({ path: shot });
});

test("without an API key the admin page watches by itself", { timeout: 60_000 }, async () => {
  const server = await Server.start([]);
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(`${server.url}/admin`);
    await page.locator("#state", { hasText: "watching" }).waitFor();
    await page.waitForFunction(() => document.querySelectorAll("#nodes tr").length === 1);
  } finally {
    await browser.close();
    await server.kill();
  }
});
