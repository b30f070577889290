// The README's "hello realtime" page, as written there: saved to a file, opened in Chromium, it
// imports tidings.js from the server (cross-origin) and shows what the README's curl publishes.
import assert from "node:assert/strict";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { pathToFileURL } from "node:url";

import { launch } from "../support/browser.js";
import { Server } from "../support/server.js";

let server;
let browser;

before(async () => {
  server = await Server.start();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.kill();
});

/** The README's section `heading`, from its heading to the next. */
async function section(heading) {
  const readme = await readFile(new URL("../../../README.md", import.meta.url), "utf8");
  const start = readme.indexOf(`## ${heading}`);
  assert.notEqual(start, -1, `README has a section "${heading}"`);
  const end = readme.indexOf("\n## ", start + 1);
  return readme.slice(start, end === -1 ? undefined : end);
}

/** The body of the first fenced block of `language` in `text`. */
function block(text, language) {
  const match = text.match(new RegExp("```" + language + "\\n([\\s\\S]*?)```"));
  assert.ok(match, `a ${language} block`);
  return match[1];
}

test("the README's hello page shows what the README's curl publishes", { timeout: 60_000 }, async () => {
  const readme = await section("Hello realtime");
  const html = block(readme, "html");
  assert.ok(html.trim().split("\n").length <= 10, "the hello page is 10 lines at most");
  const dir = await mkdtemp(path.join(tmpdir(), "tidings-hello-"));
  const file = path.join(dir, "hello.html");
  await writeFile(file, html.replaceAll("http://127.0.0.1:7400", server.url));

  const page = await browser.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  const subscribed = page.waitForEvent("websocket").then((ws) =>
    ws.waitForEvent("framereceived", (f) => f.payload.includes('"result":["public:news"]')),
  );
  await page.goto(pathToFileURL(file).href);
  await subscribed;

  const curl = block(readme, "sh");
  const [, route, body] = curl.match(
    /127\.0\.0\.1:7400\/api\/publish\/(\w+) -H 'content-type: application\/json' -d '(.*)'/,
  );
  await server.publish(route, JSON.parse(body));
  const line = page.locator("#news li");
  await line.waitFor();
  assert.equal(await line.textContent(), "public:news: tidings ships");
});
