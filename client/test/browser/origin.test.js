// Cross-site WebSocket hijacking, in Chromium: with allowed_origins naming only the server's own
// origin, a page served from another port cannot open a WebSocket (the handshake is refused with
// 403), and a page of the allowed origin can.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { once } from "node:events";
import { after, before, test } from "node:test";

import { launch } from "../support/browser.js";
import { Server } from "../support/server.js";

let server;
let other;
let browser;

/** A page that opens a WebSocket to `ws` and shows how that went: "open" or "closed <code>". */
const page = (ws) => `<!doctype html><p id="state">connecting</p><script>
  const state = document.getElementById("state");
  const socket = new WebSocket(${JSON.stringify(ws)});
  socket.onmessage = () => { state.textContent = "open"; };
  socket.onclose = (e) => { if (state.textContent !== "open") state.textContent = "closed " + e.code; };
</script>`;

before(async () => {
  const port = await freePort();
  server = await Server.start(["--allowed-origins", `http://127.0.0.1:${port}`], `127.0.0.1:${port}`);
  other = createServer((_, res) => res.writeHead(200, { "content-type": "text/html" }).end(page(`ws://127.0.0.1:${port}/ws`)));
  other.listen(0, "127.0.0.1");
  await once(other, "listening");
  browser = await launch();
});

after(async () => {
  await browser?.close();
  other?.close();
  await server?.kill();
});

/** A free TCP port on loopback. */
async function freePort() {
  const probe = createServer().listen(0, "127.0.0.1");
  await once(probe, "listening");
  const { port } = probe.address();
  probe.close();
  return port;
}

test("a page on another port is refused, a page of the allowed origin connects", { timeout: 60_000 }, async () => {
  const foreign = await browser.newPage();
  await foreign.goto(`http://127.0.0.1:${other.address().port}/`);
  await foreign.locator("#state", { hasText: "closed" }).waitFor();
  assert.equal(await foreign.locator("#state").textContent(), "closed 1006");

  // The allowed origin: a page on the server's own origin (its 404 page, given a document).
  const own = await browser.newPage();
  await own.goto(`${server.url}/healthz`);
  await own.setContent(page(`ws://127.0.0.1:${server.port}/ws`));
  await own.locator("#state", { hasText: "open" }).waitFor();
});
