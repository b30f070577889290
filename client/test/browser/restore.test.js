// Pages whose reconnects carry no session cookie, in Chromium: a page opened from a file, and a
// page served from another site than the server (localhost page, 127.0.0.1 server: the
// SameSite=Lax cookie does not go with it). After a server restart with the memory store, or a
// network drop, tidings.js subscribes the new session to the page's channels again, tells the
// page, and the page hears what is published next.
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtemp, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { pathToFileURL } from "node:url";

import { launch } from "../support/browser.js";
import { Proxy } from "../support/proxy.js";
import { Server } from "../support/server.js";

let browser;

before(async () => {
  browser = await launch();
});

after(() => browser?.close());

/** A page that subscribes to `public:a` through `socket` and shows the `session` events and `m`. */
const page = (script, socket) => `<!doctype html><p id="state">connecting</p><p id="session"></p><ol id="events"></ol><script type="module">
  import { connect } from "${script}/tidings.js";
  const ss = connect("${socket}", { reconnect: { minDelay: 100, maxDelay: 400 } });
  ss.event.on("m", (n) => document.getElementById("events").append(Object.assign(document.createElement("li"), { textContent: n })));
  ss.server.on("session", (info) => { document.getElementById("session").textContent = JSON.stringify(info); });
  ss.channel.subscribe("public:a").then(() => { document.getElementById("state").textContent = "subscribed"; });
</script>`;

/** Opens `url` in a new tab and waits until its page has subscribed. */
async function open(url) {
  const tab = await browser.newPage();
  tab.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await tab.goto(url);
  await tab.locator("#state", { hasText: "subscribed" }).waitFor();
  return tab;
}

/** Waits for the page's `session` event, then checks that `m(n)` published through `server` arrives. */
async function restoredAndHearing(tab, server, n) {
  await tab.locator("#session", { hasText: "resumed" }).waitFor();
  const info = JSON.parse(await tab.locator("#session").textContent());
  assert.deepEqual(info, { resumed: false, restored: ["public:a"], lost: [] });
  await server.publish("channel", { channels: "public:a", event: "m", args: [n] });
  await tab.locator("#events li", { hasText: String(n) }).waitFor();
}

test("a page opened from a file keeps its channels across a restart of a memory-store server", { timeout: 60_000 }, async () => {
  let server = await Server.start();
  const dir = await mkdtemp(path.join(tmpdir(), "tidings-restore-"));
  const file = path.join(dir, "page.html");
  await writeFile(file, page(server.url, `ws://127.0.0.1:${server.port}/ws`));
  const tab = await open(pathToFileURL(file).href);
  const port = server.port;
  await server.kill();
  server = await Server.start([], `127.0.0.1:${port}`);
  try {
    await restoredAndHearing(tab, server, 1);
  } finally {
    await server.kill();
  }
});

test("a page of another site keeps its channels across a network drop", { timeout: 60_000 }, async () => {
  const server = await Server.start();
  const proxy = await Proxy.start(server.port);
  const html = page(server.url, `ws://127.0.0.1:${new URL(proxy.url).port}/ws`);
  const site = createServer((_, response) => response.writeHead(200, { "content-type": "text/html" }).end(html));
  site.listen(0, "127.0.0.1");
  await once(site, "listening");
  try {
    const tab = await open(`http://localhost:${site.address().port}/`);
    proxy.cut();
    await restoredAndHearing(tab, server, 2);
    assert.equal(proxy.sockets, 2, "one reconnect");
  } finally {
    site.close();
    proxy.close();
    await server.kill();
  }
});
