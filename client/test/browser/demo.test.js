// The demo chat in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core)
// against a real `tidings serve --demo` on Redis, behind a TCP proxy that can silence a link.
// The tests run in order, on the same pages: each asserts on what the pages show.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";

import { Proxy } from "../support/proxy.js";
import { launch } from "../support/browser.js";
import { Server } from "../support/server.js";

const SERVER_ARGS = [
  "--demo",
  "--store", "redis",
  "--heartbeat-name", `demo-test-${process.pid}-${Date.now()}`,
  "--session-ttl", "600",
  "--server-heartbeat-interval", "1",
];
/** Each step's limit: a page that never shows what it should fails the test, not CI's clock. */
const STEP = { timeout: 60_000 };
const SCREENSHOT = path.join(process.env.SCREENSHOT_DIR ?? tmpdir(), "demo.png");

let server;
let proxy;
let browser;
/** fred's two tabs (one browser context: one session), and wilma's tab (another context). */
let fred1, fred2, wilma;

before(async () => {
  server = await Server.start(SERVER_ARGS);
  proxy = await Proxy.start(server.port);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  proxy?.close();
  await server?.kill();
});

/** A new tab on the demo page in `context`. */
async function open(context) {
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await page.goto(proxy.url + "/");
  await connected(page);
  return page;
}

/** Waits until the page shows it is connected (the demo says so once it has drawn the session). */
async function connected(page) {
  await page.locator("#status", { hasText: /^connected$/ }).waitFor();
}

async function login(page, name) {
  await page.fill("#name", name);
  await page.click("#login button");
  await page.locator("#me", { hasText: name }).waitFor();
}

async function join(page, room) {
  await page.click(`#rooms li[data-room="${room}"] button`);
  await joined(page, room);
}

/** Waits until the page lists `room` as joined. */
async function joined(page, room) {
  await page.locator(`#rooms li.joined[data-room="${room}"]`).waitFor();
}

/** Sends `text` to the page's current room. */
async function say(page, text) {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

/** Waits until the page shows a message from `from` with `text` in `room`. */
async function sees(page, room, from, text) {
  const message = page.locator(`#messages li.message[data-room="${room}"]`, { hasText: text });
  await message.waitFor();
  assert.equal(await message.locator(".from").textContent(), from);
}

test("two users, and two tabs of one session, chat in a room", STEP, async () => {
  const fredContext = await browser.newContext({ viewport: { width: 1100, height: 640 } });
  fred1 = await open(fredContext);
  await login(fred1, "fred");
  await join(fred1, "disney");
  // A tab opened later shares the session: its user and its rooms.
  fred2 = await open(fredContext);
  assert.equal(await fred2.textContent("#me"), "fred");
  await joined(fred2, "disney");

  wilma = await open(await browser.newContext({ viewport: { width: 1100, height: 640 } }));
  assert.equal(await wilma.isVisible("#login"), true, "another browser is another session");
  await login(wilma, "wilma");
  await join(wilma, "disney");

  await say(wilma, "Has anyone seen Tom?");
  for (const page of [fred1, fred2, wilma]) await sees(page, "disney", "wilma", "Has anyone seen Tom?");
  await say(fred2, "He went to the kids room");
  for (const page of [fred1, fred2, wilma]) await sees(page, "disney", "fred", "He went to the kids room");

  await fred1.locator("#online li", { hasText: "wilma" }).waitFor();
  await wilma.locator("#online li", { hasText: "fred" }).waitFor();
});

test("each user sees who is in the room: the other enters and leaves, live", STEP, async () => {
  for (const page of [fred1, fred2]) await page.locator('#members li[data-member="wilma"]').waitFor();
  await wilma.locator('#members li[data-member="fred"]').waitFor();
  assert.equal(await wilma.textContent("#in-room"), "In #disney (2)", "fred's two tabs are one member");
  await wilma.click('#rooms li[data-room="disney"] button');
  for (const page of [fred1, fred2]) {
    await page.locator('#members li[data-member="wilma"]').waitFor({ state: "detached" });
  }
  assert.equal(await fred1.textContent("#in-room"), "In #disney (1)");
  await join(wilma, "disney");
  for (const page of [fred1, fred2]) await page.locator('#members li[data-member="wilma"]').waitFor();
  await wilma.locator('#members li[data-member="fred"]').waitFor();
});

test("a room's messages reach only the sessions in it", STEP, async () => {
  await join(fred1, "kids");
  await say(fred1, "kids only");
  await sees(fred1, "kids", "fred", "kids only");
  await sees(fred2, "kids", "fred", "kids only");
  await fred1.click('#rooms li[data-room="disney"]');
  await say(fred1, "back in disney");
  await sees(wilma, "disney", "fred", "back in disney");
  // wilma's socket gets events in publish order: "kids only" would have come first.
  assert.equal(await wilma.locator("#messages li", { hasText: "kids only" }).count(), 0);
});

test("a reload keeps the session's rooms", STEP, async () => {
  await fred1.reload();
  await connected(fred1);
  assert.equal(await fred1.textContent("#me"), "fred");
  await joined(fred1, "disney");
  await joined(fred1, "kids");
  await say(wilma, "welcome back");
  await sees(fred1, "disney", "wilma", "welcome back");
});

test("a room the backend joins shows in every open tab at once", STEP, async () => {
  assert.equal(await fred1.textContent("#empty"), "Say something in a room.", "not 'Join a room' while in rooms");
  const cookies = await fred1.context().cookies();
  const session = cookies.find((c) => c.name === "tidings.sid").value;
  const response = await fetch(`${server.url}/api/sessions/${session}/subscribe`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ channels: "sports" }),
  });
  assert.equal(response.status, 200);
  await joined(fred1, "sports");
  await joined(fred2, "sports");
});

test("a broadcast reaches every tab; the demo's screenshot is saved", STEP, async () => {
  await wilma.click("#announce");
  for (const page of [fred1, fred2, wilma]) {
    await page.locator("#flash", { hasText: "going down" }).waitFor();
  }
  await wilma.screenshot({ path: SCREENSHOT });
  const png = await readFile(SCREENSHOT);
  assert.deepEqual([...png.subarray(1, 4)], [...Buffer.from("PNG")]);
  console.log(`screenshot: ${SCREENSHOT}`);
});

test("after the server is killed and restarted, the pages reconnect and receive again", STEP, async () => {
  await server.kill();
  for (const page of [fred1, fred2, wilma]) {
    await page.locator("#status", { hasText: "reconnecting" }).waitFor();
  }
  server = await Server.start(SERVER_ARGS, `127.0.0.1:${server.port}`);
  for (const page of [fred1, fred2, wilma]) await connected(page);
  await say(wilma, "the server is back");
  for (const page of [fred1, fred2]) await sees(page, "disney", "wilma", "the server is back");
});

test("a link that stops carrying the server's heartbeats is dropped and reconnected", STEP, async () => {
  const before = proxy.sockets;
  proxy.freeze();
  // Three missed heartbeats (1 s apart) later, each page opens a new socket by itself.
  await proxy.socketsReach(before + 3);
  for (const page of [fred1, fred2, wilma]) await connected(page);
  await say(wilma, "through the new link");
  for (const page of [fred1, fred2]) await sees(page, "disney", "wilma", "through the new link");
});
