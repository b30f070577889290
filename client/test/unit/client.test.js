// The client's timers under fake time: reconnect backoff, close codes, server heartbeat counting,
// the presence heartbeat, and requests across reconnects.
import assert from "node:assert/strict";
import { afterEach, beforeEach, mock, test } from "node:test";

import { TidingsError, connect } from "../../tidings.js";
import { FakeSocket, latest, sockets } from "./fake_socket.js";

let page;

beforeEach(() => {
  page = new EventTarget();
  mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  mock.method(Math, "random", () => 0.5);
  globalThis.addEventListener = page.addEventListener.bind(page);
  globalThis.removeEventListener = page.removeEventListener.bind(page);
  sockets.length = 0;
});

afterEach(() => {
  mock.timers.reset();
  mock.restoreAll();
  delete globalThis.addEventListener;
  delete globalThis.removeEventListener;
});

/** Advances fake time by `n` intervals of `ms`, one at a time (timers set by timers keep time). */
function intervals(n, ms) {
  for (let i = 0; i < n; i++) mock.timers.tick(ms);
}

/** A client on fake sockets, with its lifecycle events recorded. */
function client(options = {}) {
  const ss = connect("ws://tidings.test/ws", { WebSocket: FakeSocket, ...options });
  const seen = [];
  for (const name of ["ready", "reconnect", "disconnect"]) {
    ss.server.on(name, (info) => seen.push(info ? `${name} ${info.code} ${info.reconnecting}` : name));
  }
  return { ss, seen };
}

test("a lost connection is retried after a full-jitter delay that doubles per attempt", () => {
  const { ss, seen } = client({ reconnect: { minDelay: 1000, maxDelay: 8000 } });
  latest().welcome();
  latest().drop(1006);
  assert.deepEqual(seen, ["ready", "disconnect 1006 true"]);
  const delays = [];
  for (let attempt = 0; attempt < 5; attempt++) {
    const before = sockets.length;
    let waited = 0;
    while (sockets.length === before) {
      mock.timers.tick(1);
      waited += 1;
    }
    delays.push(waited);
    if (attempt < 4) latest().drop(1006);
  }
  // Math.random() is 0.5: half of min(8000, 1000 × 2^attempt).
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 4000]);
  latest().welcome();
  assert.deepEqual(seen, ["ready", "disconnect 1006 true", "reconnect"]);
  ss.close();
});

test("a welcome resets the backoff", () => {
  const { ss } = client();
  for (let i = 0; i < 3; i++) {
    latest().drop(1006);
    mock.timers.tick(30000);
  }
  latest().welcome();
  const count = sockets.length;
  latest().drop(1006);
  mock.timers.tick(249);
  assert.equal(sockets.length, count);
  mock.timers.tick(1);
  assert.equal(sockets.length, count + 1);
  ss.close();
});

test("terminal close codes stop reconnecting and say so", async () => {
  for (const code of [1002, 1003, 1007, 1009, 4002, 4003, 4006, 4007]) {
    sockets.length = 0;
    const { ss, seen } = client();
    latest().welcome();
    latest().drop(code, "why");
    mock.timers.tick(60000);
    assert.equal(sockets.length, 1, `close ${code} must not reconnect`);
    assert.deepEqual(seen, ["ready", `disconnect ${code} false`]);
    await assert.rejects(ss.rpc("x"), { code: "closed" });
  }
});

test("a refused token closes even before a welcome, and is reported", () => {
  const { seen } = client({ token: "expired" });
  assert.match(latest().url, /\?token=expired$/);
  latest().drop(4002, "token expired");
  assert.deepEqual(seen, ["disconnect 4002 false"]);
});

test("an expired token is replaced when the token is a function", async () => {
  let minted = 0;
  const { ss } = client({ token: () => `t${++minted}` });
  await Promise.resolve();
  assert.match(latest().url, /token=t1$/);
  latest().drop(4002, "token expired");
  mock.timers.tick(250);
  await Promise.resolve();
  assert.equal(sockets.length, 2);
  assert.match(latest().url, /token=t2$/);
  ss.close();
});

test("a server going away (1001) is reconnected at once, then with backoff", () => {
  const { ss } = client();
  latest().welcome();
  latest().drop(1001, "going away");
  mock.timers.tick(0);
  assert.equal(sockets.length, 2);
  latest().drop(1006);
  mock.timers.tick(499);
  assert.equal(sockets.length, 2, "the second attempt waits backoff(1)");
  mock.timers.tick(1);
  assert.equal(sockets.length, 3);
  ss.close();
});

test("the browser's online event retries at once", () => {
  const { ss } = client({ reconnect: { minDelay: 10000, maxDelay: 60000 } });
  latest().drop(1006);
  mock.timers.tick(100);
  assert.equal(sockets.length, 1);
  page.dispatchEvent(new Event("online"));
  assert.equal(sockets.length, 2);
  mock.timers.tick(60000);
  assert.equal(sockets.length, 2, "the cancelled retry does not fire");
  ss.close();
});

test("three missed server heartbeats drop the link and reconnect", () => {
  const { ss, seen } = client();
  const first = latest();
  first.welcome({ interval: 1000 });
  for (let i = 0; i < 5; i++) {
    mock.timers.tick(1000);
    first.receive("--heartbeat--");
  }
  // The last heartbeat counts for the interval it came in; then silence.
  intervals(3, 1000);
  assert.equal(first.closedWith, null, "two missed in a row are tolerated");
  assert.deepEqual(seen, ["ready"]);
  intervals(1, 1000);
  assert.equal(first.closedWith, 1005);
  assert.deepEqual(seen, ["ready", "disconnect 4001 true"]);
  mock.timers.tick(250);
  assert.equal(sockets.length, 2);
  first.receive({ type: "event", event: "late", args: [] });
  first.drop(1006);
  assert.deepEqual(seen, ["ready", "disconnect 4001 true"], "the dropped socket is ignored");
  ss.close();
});

test("any frame from the server counts as a sign of life", () => {
  const { ss } = client();
  latest().welcome({ interval: 1000 });
  for (let i = 0; i < 10; i++) {
    mock.timers.tick(1000);
    latest().receive({ type: "event", event: "tick", args: [i] });
  }
  assert.equal(latest().closedWith, null);
  ss.close();
});

test("the presence heartbeat beats, restarts after a reconnect, and stops", () => {
  const { ss } = client();
  ss.heartbeatStart();
  const first = latest();
  assert.equal(first.sent.length, 0, "nothing is sent before the welcome");
  first.welcome({ beat: 5000, interval: 1000 });
  assert.equal(first.last("heartbeat").op, "start");
  for (let i = 0; i < 5; i++) {
    mock.timers.tick(1000);
    first.receive("--heartbeat--");
  }
  assert.deepEqual(first.sent.map((f) => f.op), ["start", "beat"]);
  first.drop(1006);
  intervals(5, 1000);
  assert.equal(first.sent.length, 2, "no beats on a closed socket");
  latest().welcome({ beat: 5000 });
  assert.equal(latest().last("heartbeat").op, "start");
  ss.heartbeatStop();
  assert.equal(latest().last("heartbeat").op, "stop");
  for (let i = 0; i < 20; i++) {
    mock.timers.tick(1000);
    latest().receive("--heartbeat--");
  }
  assert.equal(latest().sent.length, 2);
  ss.close();
});

test("pagehide stops the heartbeat; a page restored from the back-forward cache restarts it", () => {
  const { ss } = client();
  latest().welcome();
  ss.heartbeatStart();
  page.dispatchEvent(new Event("pagehide"));
  assert.deepEqual(latest().sent.map((f) => f.op), ["start", "stop"]);
  page.dispatchEvent(Object.assign(new Event("pageshow"), { persisted: false }));
  assert.equal(latest().sent.length, 2, "a fresh load starts nothing by itself");
  page.dispatchEvent(Object.assign(new Event("pageshow"), { persisted: true }));
  assert.deepEqual(latest().sent.map((f) => f.op), ["start", "stop", "start"]);
  ss.close();
});

test("requests wait for the connection; replies resolve or reject by id", async () => {
  const { ss } = client();
  const subscribed = ss.channel.subscribe("public:news");
  const called = ss.rpc("chat.send", "lobby", "hi");
  const socket = latest();
  assert.equal(socket.sent.length, 0);
  socket.welcome();
  const [sub, rpc] = socket.sent;
  assert.deepEqual(sub, { type: "subscribe", channels: "public:news", id: sub.id });
  assert.deepEqual(rpc, { type: "rpc", method: "chat.send", params: ["lobby", "hi"], id: rpc.id });
  socket.receive({ type: "reply", id: rpc.id, error: { code: "unknown_method", message: "no such method" } });
  socket.receive({ type: "reply", id: sub.id, result: ["public:news"] });
  assert.deepEqual(await subscribed, ["public:news"]);
  await assert.rejects(called, (e) => e instanceof TidingsError && e.code === "unknown_method");
  ss.close();
});

test("a request in flight when the link drops rejects with disconnected", async () => {
  const { ss } = client();
  latest().welcome();
  const called = ss.rpc("slow");
  latest().drop(1006);
  await assert.rejects(called, { code: "disconnected" });
  ss.close();
});

test("past maxQueue, requests made while disconnected are refused", async () => {
  const { ss } = client({ maxQueue: 2 });
  const waiting = [ss.rpc("a"), ss.rpc("b")];
  await assert.rejects(ss.rpc("c"), { code: "queue_full" });
  ss.close();
  for (const request of waiting) await assert.rejects(request, { code: "closed" });
});

test("a channel event passes the channel as the handler's last argument", () => {
  const { ss } = client();
  latest().welcome();
  const got = [];
  const handler = (...args) => got.push(args);
  ss.event.on("chatMessage", handler);
  latest().receive({ type: "event", event: "chatMessage", args: [{ text: "hi" }], channel: "disney" });
  latest().receive({ type: "event", event: "chatMessage", args: ["direct"] });
  ss.event.off("chatMessage", handler);
  latest().receive({ type: "event", event: "chatMessage", args: ["unheard"] });
  assert.deepEqual(got, [[{ text: "hi" }, "disney"], ["direct"]]);
  ss.close();
});

test("frames it cannot use are skipped; a URL must be a WebSocket's", (t) => {
  const { ss } = client();
  const warned = t.mock.method(console, "warn", () => {});
  latest().welcome();
  for (const junk of ["not json", "null", "[1]", '{"type":"novel"}', '{"type":"reply","id":99,"result":1}']) {
    latest().receive(junk);
  }
  latest().receive({ type: "error", error: { code: "malformed_frame", message: "frame is not a JSON object" } });
  assert.equal(warned.mock.callCount(), 1);
  assert.match(warned.mock.calls[0].arguments[0], /frame is not a JSON object/);
  const got = [];
  ss.event.on("ok", (...args) => got.push(args));
  latest().receive({ type: "event", event: "ok", args: [1] });
  assert.deepEqual(got, [[1]]);
  assert.throws(() => connect("ftp://host/ws", { WebSocket: FakeSocket }), /not a WebSocket URL/);
  assert.throws(() => connect(undefined, { WebSocket: FakeSocket }), /needs a URL/);
  ss.close();
});

test("close() stops for good", () => {
  const { ss, seen } = client();
  latest().welcome();
  ss.close();
  assert.equal(latest().closedWith, 1000);
  mock.timers.tick(60000);
  assert.equal(sockets.length, 1);
  assert.deepEqual(seen, ["ready"]);
});

test("after a reconnect the client recovers channels with history before anything else", () => {
  const { ss } = client();
  const recovered = [];
  ss.server.on("recovered", (info) => recovered.push(info));
  ss.heartbeatStart();
  latest().welcome();
  assert.doesNotMatch(latest().url, /recover/, "nothing to recover on the first connect");
  latest().receive({ type: "event", event: "m", args: [1], channel: "chat:a", offset: 7, epoch: "e1" });
  latest().receive({ type: "event", event: "m", args: [2], channel: "plain" });
  latest().drop(1006);
  mock.timers.tick(30000);
  assert.match(latest().url, /[?&]recover=1/);
  latest().welcome();
  const first = latest().sent[0];
  assert.deepEqual(first, { type: "recover", channels: { "chat:a": { epoch: "e1", offset: 7 } }, id: first.id });
  assert.equal(latest().sent[1].type, "heartbeat", "the presence heartbeat comes after");
  latest().receive({ type: "reply", id: first.id, result: { "chat:a": { recovered: false, replayed: 0, epoch: "e2", offset: 3 } } });
  assert.deepEqual(recovered, [{ channel: "chat:a", recovered: false, replayed: 0 }]);
  ss.close();
});

test("a gap in a channel's offsets reconnects and recovers from the last event seen", () => {
  const { ss } = client();
  const got = [];
  const disconnects = [];
  ss.event.on("m", (n) => got.push(n));
  ss.server.on("disconnect", (info) => disconnects.push(info.code));
  latest().welcome();
  latest().receive({ type: "event", event: "m", args: [1], channel: "chat:a", offset: 1, epoch: "e1" });
  latest().receive({ type: "event", event: "m", args: [3], channel: "chat:a", offset: 3, epoch: "e1" });
  latest().receive({ type: "event", event: "m", args: [4], channel: "chat:a", offset: 4, epoch: "e1" });
  assert.deepEqual(got, [1], "nothing past the gap reaches the app");
  assert.deepEqual(disconnects, [4008]);
  mock.timers.tick(30000);
  assert.match(latest().url, /[?&]recover=1/);
  latest().welcome();
  const recover = latest().sent[0];
  assert.deepEqual(recover.channels, { "chat:a": { epoch: "e1", offset: 1 } });
  latest().receive({ type: "reply", id: recover.id, result: { "chat:a": { recovered: true, replayed: 3, epoch: "e1", offset: 4 } } });
  for (const n of [2, 3, 4]) latest().receive({ type: "event", event: "m", args: [n], channel: "chat:a", offset: n, epoch: "e1" });
  assert.deepEqual(got, [1, 2, 3, 4]);
  ss.close();
});

test("a channel's epoch changing under a live link is a gap; the answer to its recovery is where it goes on", () => {
  const { ss } = client();
  const got = [];
  const recovered = [];
  ss.event.on("m", (n) => got.push(n));
  ss.server.on("recovered", (info) => recovered.push(info));
  latest().welcome();
  latest().receive({ type: "event", event: "m", args: [149], channel: "chat:a", offset: 149, epoch: "old" });
  // The channel's history was lost (Redis restarted empty) and numbering began again.
  latest().receive({ type: "event", event: "m", args: [146], channel: "chat:a", offset: 146, epoch: "new" });
  assert.deepEqual(got, [149], "nothing of the new epoch reaches the app unannounced");
  assert.equal(latest().closedWith, 1005);
  mock.timers.tick(30000);
  latest().welcome();
  const recover = latest().sent[0];
  assert.deepEqual(recover.channels, { "chat:a": { epoch: "old", offset: 149 } });
  latest().receive({ type: "reply", id: recover.id, result: { "chat:a": { recovered: false, replayed: 0, epoch: "new", offset: 146 } } });
  assert.deepEqual(recovered, [{ channel: "chat:a", recovered: false, replayed: 0 }]);
  latest().receive({ type: "event", event: "m", args: [147], channel: "chat:a", offset: 147, epoch: "new" });
  assert.deepEqual(got, [149, 147], "the app was told; events go on without another reconnect");
  assert.equal(sockets.length, 2);
  ss.close();
});

test("a socket not welcomed within connectTimeout, or one that errs without closing, is retried", () => {
  const { ss, seen } = client({ connectTimeout: 5000, reconnect: { minDelay: 1000, maxDelay: 1000 } });
  mock.timers.tick(4999);
  assert.equal(latest().closedWith, null);
  mock.timers.tick(1);
  assert.equal(latest().closedWith, 1005, "given up on");
  mock.timers.tick(1000);
  assert.equal(sockets.length, 2);
  // Node 20's WebSocket reports a refused connection with `error` alone.
  latest().onerror(new Event("error"));
  assert.equal(latest().closedWith, 1005);
  mock.timers.tick(1000);
  assert.equal(sockets.length, 3);
  latest().welcome();
  mock.timers.tick(60000);
  assert.equal(latest().closedWith, null, "a welcomed socket has no connect timer");
  assert.deepEqual(seen, ["ready"]);
  ss.close();
});

test("a new session after a reconnect is subscribed again, with tokens and recovery, and the app is told", async () => {
  const { ss } = client();
  const sessions = [];
  const recovered = [];
  ss.server.on("session", (info) => sessions.push(info));
  ss.server.on("recovered", (info) => recovered.push(info));
  latest().welcome();
  const subscribing = ss.channel.subscribe(["chat:a", "public:b"]);
  latest().receive({ type: "reply", id: latest().last("subscribe").id, result: ["chat:a", "public:b"] });
  await subscribing;
  const granting = ss.channel.subscribe("private:c", "tok");
  latest().receive({ type: "reply", id: latest().last("subscribe").id, result: ["chat:a", "private:c", "public:b"] });
  await granting;
  // The backend subscribed the session to a channel the client may not take by itself.
  latest().receive({ type: "session", channels: ["chat:a", "private:c", "public:b", "room"], user_id: null });
  latest().receive({ type: "event", event: "m", args: [1], channel: "chat:a", offset: 5, epoch: "e1" });
  latest().drop(1006);
  mock.timers.tick(30000);
  latest().receive({ type: "welcome", protocol: 1, socket: "n.2", resumed: false, beat_delay_ms: 30000 });
  const first = latest().sent[0];
  assert.deepEqual(first, {
    type: "subscribe",
    channels: ["chat:a", "public:b", "room"],
    since: { "chat:a": { epoch: "e1", offset: 5 } },
    id: first.id,
  });
  const refused = { code: "forbidden_channel", message: "not public", channel: "room", rule: "token" };
  latest().receive({ type: "reply", id: first.id, error: refused });
  await Promise.resolve();
  const again = latest().last("subscribe");
  assert.deepEqual(again.channels, ["chat:a", "public:b"]);
  latest().receive({
    type: "reply",
    id: again.id,
    result: ["chat:a", "public:b"],
    recovered: { "chat:a": { recovered: true, replayed: 2, epoch: "e1", offset: 7 } },
  });
  await Promise.resolve();
  const token = latest().last("subscribe");
  assert.deepEqual([token.channels, token.token], [["private:c"], "tok"]);
  latest().receive({ type: "reply", id: token.id, result: ["chat:a", "private:c", "public:b"] });
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(recovered, [{ channel: "chat:a", recovered: true, replayed: 2 }]);
  assert.deepEqual(sessions, [
    { resumed: false, restored: ["chat:a", "public:b", "private:c"], lost: [{ channel: "room", code: "forbidden_channel", message: "not public" }] },
  ]);
  // A reconnect that finds its session needs nothing of this.
  latest().drop(1006);
  mock.timers.tick(30000);
  latest().receive({ type: "welcome", protocol: 1, socket: "n.3", resumed: true, beat_delay_ms: 30000 });
  assert.equal(latest().sent[0].type, "recover");
  ss.close();
});

test("a restore cut off by another reconnect goes on with what is left on the next socket", async () => {
  const { ss } = client();
  const sessions = [];
  ss.server.on("session", (info) => sessions.push(info));
  latest().welcome();
  const subscribing = ss.channel.subscribe("public:b");
  latest().receive({ type: "reply", id: latest().last("subscribe").id, result: ["public:b"] });
  await subscribing;
  const granting = ss.channel.subscribe("private:c", "tok");
  latest().receive({ type: "reply", id: latest().last("subscribe").id, result: ["private:c", "public:b"] });
  await granting;
  latest().drop(1006);
  mock.timers.tick(30000);
  latest().receive({ type: "welcome", protocol: 1, socket: "n.2", resumed: false, beat_delay_ms: 30000 });
  const granted = latest().last("subscribe");
  assert.deepEqual([granted.channels, granted.token], [["private:c"], "tok"]);
  latest().receive({ type: "reply", id: granted.id, result: ["private:c"] });
  await new Promise((resolve) => setImmediate(resolve));
  const plain = latest().last("subscribe");
  assert.deepEqual([plain.channels, plain.token], [["public:b"], undefined]);
  // The link drops before the answer; the next socket finds the new session.
  latest().drop(1006);
  mock.timers.tick(30000);
  latest().receive({ type: "welcome", protocol: 1, socket: "n.3", resumed: true, beat_delay_ms: 30000 });
  const resent = latest().sent[0];
  assert.deepEqual([resent.type, resent.channels, resent.token], ["subscribe", ["public:b"], undefined]);
  latest().receive({ type: "reply", id: resent.id, result: ["private:c", "public:b"] });
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(sessions, [{ resumed: false, restored: ["public:b"], lost: [] }]);
  ss.close();
});

test("session changes reach the app, and a channel the session left is no longer recovered", () => {
  const { ss } = client();
  const changes = [];
  ss.session.on("change", (change) => changes.push(change));
  latest().welcome();
  latest().receive({ type: "event", event: "m", args: [1], channel: "chat:a", offset: 7, epoch: "e1" });
  latest().receive({ type: "event", event: "m", args: [1], channel: "chat:b", offset: 2, epoch: "e1" });
  latest().receive({ type: "session", channels: ["chat:b"], user_id: "ann" });
  assert.deepEqual(changes, [{ channels: ["chat:b"], userId: "ann" }]);
  latest().drop(1006);
  mock.timers.tick(30000);
  latest().welcome();
  assert.deepEqual(latest().sent[0].channels, { "chat:b": { epoch: "e1", offset: 2 } });
  ss.close();
});

test("positions from the welcome and a subscribe reply are tracked before any event", async () => {
  const { ss } = client();
  latest().welcome();
  latest().receive({ type: "welcome", protocol: 1, socket: "n.1", beat_delay_ms: 30000, positions: { "chat:a": { epoch: "e1", offset: 4 } } });
  const subscribed = ss.channel.subscribe("chat:b");
  const request = latest().last("subscribe");
  latest().receive({ type: "reply", id: request.id, result: ["chat:a", "chat:b"], positions: { "chat:b": { epoch: "e2", offset: 0 } } });
  assert.deepEqual(await subscribed, ["chat:a", "chat:b"]);
  latest().drop(1006);
  mock.timers.tick(30000);
  latest().welcome();
  const recover = latest().sent[0];
  assert.deepEqual(recover.channels, { "chat:a": { epoch: "e1", offset: 4 }, "chat:b": { epoch: "e2", offset: 0 } });
  ss.close();
});
