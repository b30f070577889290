// Recovery in Chromium: a page subscribed to a channel with history, its server killed and
// restarted on Redis while another node publishes; after tidings.js reconnects, the page has every
// event once, in order, and was told it recovered.
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";

import { Pair } from "../support/pair.js";
import { Server } from "../support/server.js";

let pair;

before(async () => {
  const config = path.join(tmpdir(), `tidings-recover-${process.pid}.toml`);
  await writeFile(config, 'public_channels = ["chat:*"]\n\n[[history]]\nchannels = ["chat:*"]\n');
  pair = await Pair.start(["--config", config]);
});

after(() => pair?.stop());

/** A page that shows each `m` event's argument as a list item, and the `recovered` events. */
const page = (server) => `<!doctype html><p id="state">connecting</p><ol id="events"></ol><p id="recovered"></p><script type="module">
  import { connect } from "${server.url}/tidings.js";
  const ss = connect("ws://127.0.0.1:${server.port}/ws", { reconnect: { minDelay: 100, maxDelay: 400 } });
  ss.event.on("m", (n) => document.getElementById("events").append(Object.assign(document.createElement("li"), { textContent: n })));
  ss.server.on("recovered", ({ channel, recovered, replayed }) => {
    document.getElementById("recovered").textContent = channel + " " + recovered + " " + replayed;
  });
  ss.channel.subscribe("chat:r").then(() => { document.getElementById("state").textContent = "subscribed"; });
</script>`;

/** Publishes `m(n)` to `chat:r` through `server`. */
const publish = (server, n) => server.publish("channel", { channels: "chat:r", event: "m", args: [n] });

test("a page gets the events published while its server was down, and knows it recovered", { timeout: 60_000 }, async () => {
  const { a, b, browser } = pair;
  const tab = await browser.newPage();
  tab.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await tab.goto(`${a.url}/healthz`);
  await tab.setContent(page(a));
  await tab.locator("#state", { hasText: "subscribed" }).waitFor();
  for (const n of [1, 2, 3]) await publish(a, n);
  await tab.locator("#events li").nth(2).waitFor();

  const port = a.port;
  await a.kill();
  for (const n of [4, 5, 6]) await publish(b, n);
  const restarted = await Server.start(pair.args, `127.0.0.1:${port}`);
  pair.a = restarted;

  await tab.locator("#recovered", { hasText: "chat:r" }).waitFor();
  assert.equal(await tab.locator("#recovered").textContent(), "chat:r true 3");
  await publish(restarted, 7);
  await tab.locator("#events li").nth(6).waitFor();
  assert.deepEqual(await tab.locator("#events li").allTextContents(), ["1", "2", "3", "4", "5", "6", "7"]);
});
