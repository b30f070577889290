// Pusher's own libraries against a real `tidings serve` with a Pusher app: pusher-js (Node),
// Laravel Echo on pusher-js, and the `pusher` server SDK for the HTTP API.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";

import Echo from "laravel-echo";
import PusherServer from "pusher";
import Pusher from "pusher-js";

import { Receiver, configFile, next, subscribed } from "../support/pusher.js";
import { Server } from "../support/server.js";

const app = { id: "1", key: "app-key", secret: "app-secret" };
// A second app, from the config file: its channels are tidings channels `two:<name>`.
const two = { id: "2", key: "key-2", secret: "secret-2" };
const config = (hooks) => `
[[pusher.apps]]
id = "2"
key = "key-2"
secret = "secret-2"
channel_prefix = "two:"
enable_client_messages = true
webhook_url = "${hooks}"
`;

let server;
let api;
// App 2's webhook.
let receiver;

before(async () => {
  receiver = await Receiver.start();
  const file = await configFile(config(receiver.url));
  server = await Server.start([
    "--config", file,
    "--pusher-app-id", app.id, "--pusher-app-key", app.key, "--pusher-app-secret", app.secret,
  ]);
  api = sdk(app.secret);
});

after(async () => {
  await server.kill();
  receiver.close();
});

/** App 2's webhook events so far, once `done(events)` is true. */
function webhooks(done) {
  return receiver.events(sdk(two.secret, two), two.key, done);
}

/** The `pusher` server SDK pointed at the server, signing for `of` with `secret`. */
function sdk(secret, of = app) {
  return new PusherServer({
    appId: of.id, key: of.key, secret, host: "127.0.0.1", port: String(server.port), useTLS: false,
  });
}

/** A pusher-js client of app `of` whose channel authorizations the server SDK signs, as a
 * backend would; a presence subscription names `user`. */
function client(user, { forge = false, of = app } = {}) {
  const pusher = new Pusher(of.key, {
    cluster: "local", wsHost: "127.0.0.1", wsPort: server.port, forceTLS: false,
    enabledTransports: ["ws"], disableStats: true,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) => {
        const data = channelName.startsWith("presence-") ? { user_id: user, user_info: { name: `user ${user}` } } : undefined;
        const auth = sdk(forge ? "not-the-secret" : of.secret, of).authorizeChannel(socketId, channelName, data);
        callback(null, auth);
      },
    },
  });
  return pusher;
}

/** Resolves once `check` resolves true, trying every 20 ms. */
async function until(check) {
  while (!(await check())) await new Promise((resolve) => setTimeout(resolve, 20));
}

test("pusher-js connects with a socket id of Pusher's form", async () => {
  const pusher = client("1");
  await next(pusher.connection, "connected");
  assert.match(pusher.connection.socket_id, /^\d+\.\d+$/);
  pusher.disconnect();
});

test("a public channel hears the server SDK's events and tidings' own API", async () => {
  const pusher = client("1");
  const channel = await subscribed(pusher, "orders");
  const heard = next(channel, "shipped");
  await api.trigger("orders", "shipped", { id: 7, items: ["a"] });
  assert.deepEqual(await heard, { id: 7, items: ["a"] });
  const own = next(channel, "note");
  await server.publish("channel", { channels: "orders", event: "note", args: ["plain text"] });
  assert.equal(await own, "plain text");
  pusher.disconnect();
});

test("a private channel takes a good signature and refuses a forged one", async () => {
  const good = client("1");
  const channel = await subscribed(good, "private-account-1");
  const heard = next(channel, "balance");
  await api.trigger("private-account-1", "balance", { amount: 10 });
  assert.deepEqual(await heard, { amount: 10 });
  const forged = client("1", { forge: true });
  const error = await next(forged.subscribe("private-account-1"), "pusher:subscription_error");
  assert.equal(error.status, 401);
  good.disconnect();
  forged.disconnect();
});

test("a presence channel lists its members and tells each join and leave", async () => {
  const alice = client("alice");
  const room = alice.subscribe("presence-room");
  const added = [];
  room.bind("pusher:member_added", (member) => added.push(member.id));
  const [members] = await Promise.all([next(room, "pusher:subscription_succeeded")]);
  assert.equal(members.count, 1);
  assert.equal(members.me.id, "alice");
  assert.deepEqual(members.me.info, { name: "user alice" });

  const joined = next(room, "pusher:member_added");
  const bob = client("bob");
  const bobs = await subscribed(bob, "presence-room");
  assert.deepEqual(await joined, { id: "bob", info: { name: "user bob" } });
  assert.equal(bobs.members.count, 2);

  const users = await api.get({ path: "/channels/presence-room/users" });
  assert.deepEqual((await users.json()).users.map((u) => u.id).sort(), ["alice", "bob"]);
  const listed = await api.get({ path: "/channels", params: { filter_by_prefix: "presence-", info: "user_count" } });
  assert.deepEqual((await listed.json()).channels["presence-room"], { user_count: 2 });
  const one = await api.get({ path: "/channels/presence-room", params: { info: "user_count" } });
  assert.deepEqual(await one.json(), { occupied: true, user_count: 2 });

  const left = next(room, "pusher:member_removed");
  bob.unsubscribe("presence-room");
  assert.deepEqual(await left, { id: "bob", info: { name: "user bob" } });
  assert.equal(room.members.count, 1);
  assert.deepEqual(added, ["bob"], "a member is not told its own join");
  alice.disconnect();
  bob.disconnect();
});

test("client events reach the channel's other subscribers, not their sender", async () => {
  const [a, b] = [client("a", { of: two }), client("b", { of: two })];
  const [ca, cb] = [await subscribed(a, "private-chat"), await subscribed(b, "private-chat")];
  const heardByB = next(cb, "client-typing");
  const heardByA = next(ca, "client-typing");
  ca.trigger("client-typing", { who: "a" });
  assert.deepEqual(await heardByB, { who: "a" });
  cb.trigger("client-typing", { who: "b" });
  assert.deepEqual(await heardByA, { who: "b" }, "a heard b's event first, not its own");
  a.disconnect();
  b.disconnect();
});

test("an app without client events refuses them with pusher:error", async () => {
  const pusher = client("1");
  const channel = await subscribed(pusher, "private-quiet");
  const error = next(pusher.connection, "error");
  channel.trigger("client-typing", {});
  assert.match((await error).data.message, /not enabled/);
  pusher.disconnect();
});

test("a publish with socket_id skips that socket", async () => {
  const [a, b] = [client("a"), client("b")];
  const [ca, cb] = [await subscribed(a, "skip"), await subscribed(b, "skip")];
  const heardByA = next(ca, "e");
  const heardByB = next(cb, "e");
  await api.trigger("skip", "e", { n: 1 }, { socket_id: a.connection.socket_id });
  assert.deepEqual(await heardByB, { n: 1 });
  await api.trigger("skip", "e", { n: 2 });
  assert.deepEqual(await heardByA, { n: 2 }, "a's first event is the second publish");
  a.disconnect();
  b.disconnect();
});

test("each app has its own channels, and tidings' API reaches them by prefix", async () => {
  const [one, other] = [client("a"), client("a", { of: two })];
  const [c1, c2] = [await subscribed(one, "news"), await subscribed(other, "news")];
  const heardByOne = next(c1, "e");
  const heardByOther = next(c2, "e");
  await sdk(two.secret, two).trigger("news", "e", "for two");
  assert.equal(await heardByOther, "for two");
  await server.publish("channel", { channels: "news", event: "e", args: ["for one"] });
  assert.equal(await heardByOne, "for one", "app 1 did not hear app 2's event");
  const again = next(c2, "e");
  await server.publish("channel", { channels: "two:news", event: "e", args: [{ via: "tidings" }] });
  assert.deepEqual(await again, { via: "tidings" });
  one.disconnect();
  other.disconnect();
});

test("a cache channel gives a new subscriber its last event, or pusher:cache_miss", async () => {
  const first = client("1");
  const miss = next(first.subscribe("cache-scores"), "pusher:cache_miss");
  await miss;
  await api.trigger("cache-scores", "score", { home: 1 });
  await api.trigger("cache-scores", "score", { home: 2 });
  const second = client("2");
  const channel = second.subscribe("cache-scores");
  const [, last] = await Promise.all([next(channel, "pusher:subscription_succeeded"), next(channel, "score")]);
  assert.deepEqual(last, { home: 2 });
  first.disconnect();
  second.disconnect();
});

test("the HTTP API tells which channels are occupied, of every kind", async () => {
  const info = async (path, params) => (await api.get({ path, params })).json();
  assert.deepEqual(await info("/channels/lobby"), { occupied: false });
  const pusher = client("1");
  await subscribed(pusher, "lobby");
  await subscribed(pusher, "private-lobby");
  assert.deepEqual(await info("/channels/lobby"), { occupied: true });
  const other = client("2");
  await subscribed(other, "lobby");
  assert.deepEqual(await info("/channels/lobby", { info: "subscription_count" }), { occupied: true, subscription_count: 2 });
  const counted = await info("/channels", { filter_by_prefix: "lobby", info: "subscription_count" });
  assert.deepEqual(counted.channels.lobby, { subscription_count: 2 });
  other.disconnect();
  const { channels } = await info("/channels", { filter_by_prefix: "private-lobby" });
  assert.deepEqual(channels, { "private-lobby": {} });
  assert.ok("lobby" in (await info("/channels")).channels);
  const vacated = await subscribed(pusher, "vacated-soon");
  pusher.unsubscribe(vacated.name);
  await until(async () => !(await info("/channels/vacated-soon")).occupied);
  pusher.disconnect();
});

test("webhooks tell occupancy, members, client events and cache misses, signed as Pusher signs", async () => {
  const [a, b] = [client("ann", { of: two }), client("ben", { of: two })];
  const room = await subscribed(a, "presence-hooked");
  await subscribed(b, "presence-hooked");
  room.trigger("client-wave", { hi: 1 });
  b.unsubscribe("presence-hooked");
  await subscribed(a, "cache-hooked");
  const of = (events, name) => events.filter((e) => e.name === name && e.channel.endsWith("hooked"));
  const events = await webhooks((events) => of(events, "member_removed").length > 0 && of(events, "cache_miss").length > 0 && of(events, "client_event").length > 0);
  assert.deepEqual(of(events, "channel_occupied").map((e) => e.channel).sort(), ["cache-hooked", "presence-hooked"]);
  assert.deepEqual(of(events, "member_added").map((e) => e.user_id).sort(), ["ann", "ben"]);
  assert.deepEqual(of(events, "member_removed").map((e) => e.user_id), ["ben"]);
  const [wave] = of(events, "client_event");
  assert.deepEqual([wave.event, JSON.parse(wave.data), wave.socket_id, wave.user_id], ["client-wave", { hi: 1 }, a.connection.socket_id, "ann"]);
  a.disconnect();
  b.disconnect();
  const vacated = await webhooks((events) => of(events, "channel_vacated").length === 2);
  assert.deepEqual(of(vacated, "channel_vacated").map((e) => e.channel).sort(), ["cache-hooked", "presence-hooked"]);
});

test("Pusher's Python SDK publishes, reads the API, and validates the webhooks", async () => {
  const pusher = client("py", { of: two });
  const channel = await subscribed(pusher, "py-orders");
  const heard = Promise.all([next(channel, "shipped"), next(channel, "batched")]);
  await webhooks((events) => events.length > 0);
  // The Python of scripts/test.sh's venv, which has the `pusher` package.
  const python = process.env.PYTHON_WITH_PUSHER ?? "python3";
  const script = new URL("./sdk.py", import.meta.url).pathname;
  const child = spawn(python, [script, String(server.port), two.id, two.key, two.secret], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const line = async () => JSON.parse((await lines.next()).value ?? '{"exited": true}');
  assert.deepEqual(await line(), { channels: { channels: { "py-orders": {} } } });
  assert.deepEqual(await line(), { channel: { occupied: true } });
  assert.deepEqual(await line(), { wrong_secret: 401 });
  assert.deepEqual(await heard, [{ id: 7 }, { n: 1 }]);
  const [post] = receiver.posts;
  const webhook = { key: post.headers["x-pusher-key"], signature: post.headers["x-pusher-signature"], body: post.rawBody };
  child.stdin.write(`${JSON.stringify(webhook)}\n`);
  assert.deepEqual((await line()).webhook.events, JSON.parse(post.rawBody).events);
  child.stdin.end(`${JSON.stringify({ ...webhook, body: post.rawBody.replace("}", " }") })}\n`);
  assert.deepEqual(await line(), { webhook: null }, "a body changed in transit is refused");
  pusher.disconnect();
});

test("the HTTP API refuses a request signed with the wrong secret (401)", async () => {
  await assert.rejects(sdk("wrong").trigger("orders", "e", {}), (error) => {
    assert.equal(error.status, 401);
    return true;
  });
});

test("batch events reach their channels", async () => {
  const pusher = client("1");
  const a = await subscribed(pusher, "batch-a");
  const b = await subscribed(pusher, "batch-b");
  const heard = Promise.all([next(a, "e"), next(b, "e")]);
  await api.triggerBatch([
    { channel: "batch-a", name: "e", data: { n: 1 } },
    { channel: "batch-b", name: "e", data: { n: 2 } },
  ]);
  assert.deepEqual(await heard, [{ n: 1 }, { n: 2 }]);
  pusher.disconnect();
});

/** A pusher-js client whose sign-in the SDK signs with `secret`, as user `user`. */
function signing(secret, user) {
  return new Pusher(app.key, {
    cluster: "local", wsHost: "127.0.0.1", wsPort: server.port, forceTLS: false,
    enabledTransports: ["ws"], disableStats: true,
    userAuthentication: {
      customHandler: ({ socketId }, callback) => callback(null, sdk(secret).authenticateUser(socketId, user)),
    },
  });
}

test("a signed-in user hears events sent to the user", async () => {
  const pusher = signing(app.secret, { id: "frank", name: "Frank" });
  const signedIn = new Promise((resolve) => {
    pusher.connection.bind("message", (message) => message.event === "pusher:signin_success" && resolve(message.data));
  });
  pusher.signin();
  assert.deepEqual(JSON.parse((await signedIn).user_data), { id: "frank", name: "Frank" });
  const heard = new Promise((resolve) => pusher.user.bind("notice", resolve));
  await api.sendToUser("frank", "notice", { text: "hello" });
  assert.deepEqual(await heard, { text: "hello" });
  const closed = next(pusher.connection, "disconnected");
  await api.terminateUserConnections("frank");
  await closed;
  pusher.disconnect();
});

test("a forged sign-in is refused", async () => {
  const pusher = signing("forged", { id: "mallory" });
  const error = next(pusher.connection, "error");
  pusher.signin();
  assert.match((await error).data.message, /invalid signature/);
  pusher.disconnect();
});

test("terminating a user's connections closes them for good", async () => {
  const pusher = client("carol");
  await subscribed(pusher, "presence-terminate");
  const closed = next(pusher.connection, "disconnected");
  await api.terminateUserConnections("carol");
  await closed;
  assert.equal(pusher.connection.state, "disconnected");
  pusher.disconnect();
});

test("an unknown app key is refused with Pusher's code 4001", async () => {
  const pusher = new Pusher("no-such-key", {
    cluster: "local", wsHost: "127.0.0.1", wsPort: server.port, forceTLS: false,
    enabledTransports: ["ws"], disableStats: true,
  });
  const error = await next(pusher.connection, "error");
  assert.equal(error.error.data.code, 4001);
  pusher.disconnect();
});

test("Laravel Echo listens, and sees who is here, joining and leaving", async () => {
  const options = (user) => ({
    broadcaster: "pusher", key: app.key, cluster: "local", wsHost: "127.0.0.1", wsPort: server.port,
    forceTLS: false, enabledTransports: ["ws"], disableStats: true,
    Pusher, client: client(user),
  });
  const echo = new Echo(options("dora"));
  const shipped = new Promise((resolve) => echo.channel("orders-echo").listen("OrderShipped", resolve));
  await new Promise((resolve) => echo.connector.pusher.channel("orders-echo").bind("pusher:subscription_succeeded", resolve));
  await api.trigger("orders-echo", "App\\Events\\OrderShipped", { order: 1 });
  assert.deepEqual(await shipped, { order: 1 });

  const here = new Promise((resolve) => {
    const room = echo.join("chat");
    room.here(resolve);
  });
  assert.deepEqual((await here).map((u) => u.name), ["user dora"]);
  const joining = new Promise((resolve) => echo.join("chat").joining(resolve));
  const other = new Echo(options("eve"));
  other.join("chat");
  assert.deepEqual(await joining, { name: "user eve" });
  const leaving = new Promise((resolve) => echo.join("chat").leaving(resolve));
  other.leave("chat");
  assert.deepEqual(await leaving, { name: "user eve" });
  echo.disconnect();
  other.disconnect();
});
