// pusher-js's browser build in headless Chromium against a real `tidings serve` with a Pusher
// app: each page's channel authorizations come from the `pusher` server SDK in Node, as a
// backend's auth endpoint would give them.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";

import PusherServer from "pusher";

import { launch } from "../support/browser.js";
import { Server } from "../support/server.js";

const app = { id: "1", key: "browser-key", secret: "browser-secret" };
const script = createRequire(import.meta.url).resolve("pusher-js/dist/web/pusher.min.js");

let server;
let browser;
let api;

before(async () => {
  server = await Server.start(["--pusher-app-id", app.id, "--pusher-app-key", app.key, "--pusher-app-secret", app.secret]);
  browser = await launch();
  api = new PusherServer({ appId: app.id, key: app.key, secret: app.secret, host: "127.0.0.1", port: String(server.port), useTLS: false });
});

after(async () => {
  await browser?.close();
  await server?.kill();
});

/** A page of the server's origin running pusher-js as `user`, subscribed to `channel`; what
 * it hears is in `window.heard`. */
async function page(user, channel) {
  const page = await browser.newPage();
  await page.exposeFunction("authorize", (socketId, name) =>
    api.authorizeChannel(socketId, name, { user_id: user, user_info: { name: user } }));
  await page.goto(`${server.url}/healthz`);
  await page.addScriptTag({ path: script });
  await page.evaluate(({ key, port, channel }) => new Promise((resolve) => {
    window.heard = [];
    const pusher = new Pusher(key, {
      cluster: "local", wsHost: "127.0.0.1", wsPort: port, forceTLS: false, enabledTransports: ["ws"], disableStats: true,
      channelAuthorization: {
        customHandler: ({ socketId, channelName }, callback) => window.authorize(socketId, channelName).then((auth) => callback(null, auth)),
      },
    });
    const room = pusher.subscribe(channel);
    room.bind_global((event, data) => window.heard.push([event, data]));
    room.bind("pusher:subscription_succeeded", () => resolve());
  }), { key: app.key, port: server.port, channel });
  return page;
}

/** Waits until the page has heard `event`; returns each data it came with. */
async function heard(page, event) {
  await page.waitForFunction((event) => window.heard.some(([e]) => e === event), event, { timeout: 30_000 });
  return page.evaluate((event) => window.heard.filter(([e]) => e === event).map(([, data]) => data), event);
}

test("pages in Chromium hear the SDK's events and see who comes and goes", async () => {
  const alice = await page("alice", "presence-lounge");
  const bob = await page("bob", "presence-lounge");
  assert.deepEqual(await heard(alice, "pusher:member_added"), [{ id: "bob", info: { name: "bob" } }]);
  await api.trigger("presence-lounge", "toast", { text: "cheers" });
  assert.deepEqual(await heard(bob, "toast"), [{ text: "cheers" }]);
  await bob.close();
  assert.deepEqual(await heard(alice, "pusher:member_removed"), [{ id: "bob", info: { name: "bob" } }]);
  await alice.close();
});
