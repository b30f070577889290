// The module in Node against a real `tidings serve`: the global WebSocket (Node 22+, or Node 20
// with --experimental-websocket, as `npm test` runs it), and the script as the server serves it.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import { after, before, test } from "node:test";

import { TidingsError, VERSION, connect } from "../../tidings.js";
import { Proxy } from "../support/proxy.js";
import { Server } from "../support/server.js";

let server;

before(async () => {
  server = await Server.start();
});

after(() => server.kill());

/** Resolves with the first call's arguments of `name` on `target` (`ss.event` or `ss.server`). */
function next(target, name) {
  return new Promise((resolve) => {
    const handler = (...args) => {
      target.off(name, handler);
      resolve(args);
    };
    target.on(name, handler);
  });
}

test("events, channels and RPC errors over a real connection", async () => {
  const ss = connect(server.url.replace("http", "ws") + "/ws");
  await next(ss.server, "ready");
  assert.match(ss.socketId, /^[\w-]+\.\d+$/);
  assert.deepEqual(await ss.channel.subscribe("public:news"), ["public:news"]);
  assert.deepEqual(await ss.channel.list(), ["public:news"]);

  const flash = next(ss.event, "flash");
  await server.publish("all", { event: "flash", args: ["going down", 10] });
  assert.deepEqual(await flash, ["going down", 10]);
  const news = next(ss.event, "news");
  await server.publish("channel", { channels: "public:news", event: "news", args: [{ title: "hi" }] });
  assert.deepEqual(await news, [{ title: "hi" }, "public:news"]);
  const mine = next(ss.event, "mine");
  await server.publish("socket", { socket: ss.socketId, event: "mine", args: [] });
  assert.deepEqual(await mine, []);

  await assert.rejects(ss.channel.subscribe("secret"), (e) => {
    assert.ok(e instanceof TidingsError);
    assert.equal(e.code, "forbidden_channel");
    assert.equal(e.channel, "secret");
    assert.equal(e.rule, "token");
    return true;
  });
  await assert.rejects(ss.rpc("nothing.here", 1), { code: "unknown_method", message: /nothing\.here/ });
  assert.deepEqual(await ss.channel.unsubscribe("public:news"), []);
  ss.close();
});

test("the presence heartbeat reaches the server's presence", async () => {
  const ss = connect(new URL("/ws", server.url.replace("http", "ws")));
  await next(ss.server, "ready");
  const live = async () => (await (await fetch(`${server.url}/api/presence`)).json()).sessions;
  // A socket's requests other than RPC are answered in order: once `list` is answered, the
  // heartbeat frame sent before it has been applied.
  ss.heartbeatStart();
  await ss.channel.list();
  assert.equal((await live()).length, 1);
  ss.heartbeatStop();
  await ss.channel.list();
  assert.deepEqual(await live(), []);
  ss.close();
});

test("the server serves this file at /tidings.js, revalidated, and at a versioned path, immutable", async () => {
  const source = await readFile(new URL("../../tidings.js", import.meta.url), "utf8");
  const latest = await fetch(`${server.url}/tidings.js`);
  assert.equal(latest.status, 200);
  assert.equal(await latest.text(), source);
  assert.equal(latest.headers.get("content-type"), "text/javascript; charset=utf-8");
  assert.equal(latest.headers.get("cache-control"), "no-cache");
  assert.equal(latest.headers.get("access-control-allow-origin"), "*");
  const etag = latest.headers.get("etag");
  assert.match(etag, /^"[0-9a-f]{16}"$/);
  const again = await fetch(`${server.url}/tidings.js`, { headers: { "if-none-match": etag } });
  assert.equal(again.status, 304);
  const versioned = await fetch(`${server.url}/tidings-${VERSION}.js`);
  assert.equal(await versioned.text(), source);
  assert.equal(versioned.headers.get("cache-control"), "public, max-age=31536000, immutable");
  assert.equal((await fetch(`${server.url}/tidings-0.0.0.js`)).status, 404);
});

/** A port nothing listens on, for a server started later. */
async function freePort() {
  const { createServer } = await import("node:net");
  const probe = createServer().listen(0, "127.0.0.1");
  await once(probe, "listening");
  const { port } = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

test("without cookies, a restarted server's new session is subscribed again and the app is told", { timeout: 30000 }, async () => {
  // Node has no cookie jar, and a server with the memory store forgets its sessions: either way
  // the reconnect gets a new session.
  const port = await freePort();
  let own = await Server.start([], `127.0.0.1:${port}`);
  const ss = connect(`ws://127.0.0.1:${port}/ws`, { reconnect: { minDelay: 50, maxDelay: 200 } });
  await next(ss.server, "ready");
  await ss.channel.subscribe(["public:a", "public:b"]);
  await own.kill();
  const restored = next(ss.server, "session");
  own = await Server.start([], `127.0.0.1:${port}`);
  const [info] = await restored;
  assert.deepEqual(info, { resumed: false, restored: ["public:a", "public:b"], lost: [] });
  assert.deepEqual(await ss.channel.list(), ["public:a", "public:b"]);
  const heard = next(ss.event, "news");
  await own.publish("channel", { channels: "public:b", event: "news", args: ["back"] });
  assert.deepEqual(await heard, ["back", "public:b"]);
  ss.close();
  await own.kill();
});

test("a refused connection is retried, though Node 20's WebSocket never says close", { timeout: 30000 }, async () => {
  const port = await freePort();
  let retried;
  const retrying = new Promise((resolve) => (retried = resolve));
  let made = 0;
  class Counted extends WebSocket {
    constructor(url) {
      super(url);
      if (++made === 3) retried();
    }
  }
  const ss = connect(`ws://127.0.0.1:${port}/ws`, { WebSocket: Counted, reconnect: { minDelay: 50, maxDelay: 200 } });
  const ready = next(ss.server, "ready");
  await retrying;
  const own = await Server.start([], `127.0.0.1:${port}`);
  await ready;
  ss.close();
  await own.kill();
});

/** An HS256 JWT of `claims`, signed with `secret`. */
function sign(claims, secret) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

test("a token with sid keeps a cookie-less client in its session, with what the backend gave it", { timeout: 30000 }, async () => {
  const secret = "sid secret";
  const own = await Server.start(["--token-secret", secret]);
  const proxy = await Proxy.start(own.port);
  const token = () => sign({ sub: "ann", sid: "visitor-42", exp: Math.floor(Date.now() / 1000) + 600 }, secret);
  const ss = connect(`${proxy.url.replace("http", "ws")}/ws`, { token, reconnect: { minDelay: 50, maxDelay: 200 } });
  const sessions = [];
  ss.server.on("session", (info) => sessions.push(info));
  await next(ss.server, "ready");
  const response = await fetch(`${own.url}/api/sessions/visitor-42/subscribe`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ channels: "room" }),
  });
  assert.equal(response.status, 200);
  const reconnected = next(ss.server, "reconnect");
  proxy.cut();
  await reconnected;
  assert.deepEqual(await ss.channel.list(), ["room"], "the backend's channel, kept by the session");
  const heard = next(ss.event, "hi");
  await own.publish("user", { users: "ann", event: "hi", args: [] });
  assert.deepEqual(await heard, []);
  assert.deepEqual(sessions, [], "nothing needed restoring");
  ss.close();
  proxy.close();
  await own.kill();
});

test("presence channels: the members on subscribe, then each join and leave once", async () => {
  const { writeFile } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const config = `${tmpdir()}/tidings-js-rooms-${process.pid}.toml`;
  await writeFile(config, 'public_channels = ["room:*"]\n\n[[presence_channels]]\nchannels = ["room:*"]\nleave_delay = 0\n');
  const rooms = await Server.start(["--config", config]);
  const url = rooms.url.replace("http", "ws") + "/ws";
  const [a, b] = [connect(url), connect(url)];
  await Promise.all([next(a.server, "ready"), next(b.server, "ready")]);
  const joins = [];
  a.presence.on("join", (member) => joins.push(member.id));
  await a.channel.subscribe("room:1");
  const [me] = a.presence.members("room:1");
  assert.match(me.id, /^s:[0-9a-f]{16}$/);

  const joined = next(a.presence, "join");
  await b.channel.subscribe("room:1");
  const [other, channel] = await joined;
  assert.equal(channel, "room:1");
  assert.notEqual(other.id, me.id);
  assert.deepEqual(b.presence.members("room:1").map((m) => m.id).sort(), [me.id, other.id].sort());
  assert.equal(a.presence.count("room:1"), 2);
  assert.deepEqual(joins, [other.id], "the subscriber's own join was in the reply: told once, as a member");

  const left = next(a.presence, "leave");
  b.close();
  assert.deepEqual(await left, [other, "room:1"]);
  assert.deepEqual(a.presence.members("room:1"), [me]);
  assert.equal(a.presence.members("public:other"), null, "not a presence channel the session is in");
  await a.channel.unsubscribe("room:1");
  assert.equal(a.presence.members("room:1"), null);
  a.close();
  await rooms.kill();
});
