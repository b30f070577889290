// A page of another site (localhost page, 127.0.0.1 server on its keyless loopback default) makes
// the visitor's browser call the API: reset a session, kick a user. The API refuses it (403), so
// the session keeps its channels and the user stays connected.
import assert from "node:assert/strict";
import { once } from "node:events";
import { createHmac } from "node:crypto";
import { createServer } from "node:http";
import { after, before, test } from "node:test";

import { connect } from "../../tidings.js";
import { launch } from "../support/browser.js";
import { Server } from "../support/server.js";

const secret = "foreign secret";
let server;
let browser;

before(async () => {
  server = await Server.start(["--token-secret", secret]);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.kill();
});

/** An HS256 JWT of `claims`. */
function sign(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

test("a page of another site cannot reset a session or kick a user through the API", { timeout: 60_000 }, async () => {
  const token = sign({ sub: "fred", sid: "fred-session", exp: Math.floor(Date.now() / 1000) + 600 });
  const ss = connect(`${server.url.replace("http", "ws")}/ws`, { token });
  const kicked = [];
  ss.server.on("disconnect", (info) => kicked.push(info.code));
  await new Promise((resolve) => ss.server.on("ready", resolve));
  await ss.channel.subscribe("public:a");

  const html = `<!doctype html><p id="done">no</p><script>
    const api = "${server.url}/api";
    Promise.all([
      fetch(api + "/sessions/fred-session/reset", { method: "POST", mode: "no-cors" }),
      fetch(api + "/users/fred/disconnect", { method: "POST", mode: "no-cors" }),
    ]).then(() => { document.getElementById("done").textContent = "yes"; });
  </script>`;
  const site = createServer((_, response) => response.writeHead(200, { "content-type": "text/html" }).end(html));
  site.listen(0, "127.0.0.1");
  await once(site, "listening");
  const tab = await browser.newPage();
  const statuses = [];
  tab.on("response", (response) => response.url().includes("/api/") && statuses.push(response.status()));
  try {
    await tab.goto(`http://localhost:${site.address().port}/`);
    await tab.locator("#done", { hasText: "yes" }).waitFor();
  } finally {
    site.close();
  }
  assert.deepEqual(statuses, [403, 403]);
  assert.deepEqual(await ss.channel.list(), ["public:a"], "the session was not reset");
  const heard = new Promise((resolve) => ss.event.on("still", resolve));
  await server.publish("user", { users: "fred", event: "still", args: [] });
  await heard;
  assert.deepEqual(kicked, [], "fred was not kicked");
  ss.close();
});
