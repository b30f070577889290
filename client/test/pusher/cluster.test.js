// Pusher's libraries against three `tidings serve` nodes sharing the local Redis (bus and store),
// and two over NATS and over the local Redis Cluster:
// a publish through any node reaches every client, presence is one roster, and a node killed
// with SIGKILL makes its member leave once, told to the others and to the webhook once.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";

import PusherServer from "pusher";
import Pusher from "pusher-js";

import { Receiver, configFile, next, subscribed } from "../support/pusher.js";
import { Server } from "../support/server.js";

const app = { id: "9", key: "cluster-key", secret: "cluster-secret" };

const nodes = [];
let receiver;

before(async () => {
  receiver = await Receiver.start();
  const file = await configFile(`
[[pusher.apps]]
id = "${app.id}"
key = "${app.key}"
secret = "${app.secret}"
webhook_url = "${receiver.url}"
`);
  const prefix = `t${randomUUID()}`;
  const args = [
    "--config", file, "--bus", "redis", "--store", "redis", "--bus-prefix", prefix, "--heartbeat-name", prefix,
    // A dead node is found within seconds.
    "--heartbeat-purge-delay", "1", "--heartbeat-beat-delay", "1", "--heartbeat-expire-delay", "2",
  ];
  for (let i = 0; i < 3; i++) nodes.push(await Server.start(args));
});

after(async () => {
  for (const node of nodes) await node.kill();
  receiver.close();
});

/** The server SDK, through `node`. */
function sdk(node) {
  return new PusherServer({ appId: app.id, key: app.key, secret: app.secret, host: "127.0.0.1", port: String(node.port), useTLS: false });
}

/** A pusher-js client of `node`, whose presence subscriptions name `user`. */
function client(node, user) {
  return new Pusher(app.key, {
    cluster: "local", wsHost: "127.0.0.1", wsPort: node.port, forceTLS: false, enabledTransports: ["ws"], disableStats: true,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) =>
        callback(null, sdk(node).authorizeChannel(socketId, channelName, { user_id: user, user_info: { name: user } })),
    },
  });
}

/** The app's webhook events so far, once `done(events)` is true. */
function webhooks(done) {
  return receiver.events(sdk(nodes[0]), app.key, done);
}

test("a publish through any node reaches the clients of every node, socket_id skipped on each", async () => {
  const clients = nodes.map((node, i) => client(node, `u${i}`));
  const channels = await Promise.all(clients.map((c) => subscribed(c, "everywhere")));
  const heard = channels.map((channel) => next(channel, "e"));
  await sdk(nodes[2]).trigger("everywhere", "e", { n: 1 }, { socket_id: clients[0].connection.socket_id });
  assert.deepEqual(await Promise.all(heard.slice(1)), [{ n: 1 }, { n: 1 }]);
  await sdk(nodes[1]).trigger("everywhere", "e", { n: 2 });
  assert.deepEqual(await heard[0], { n: 2 }, "node 0's client skipped the first publish");
  clients.forEach((c) => c.disconnect());
});

test("presence is one roster across nodes; a killed node's member leaves once", async () => {
  const [alice, bob, carol] = [client(nodes[0], "alice"), client(nodes[1], "bob"), client(nodes[2], "carol")];
  const room = await subscribed(alice, "presence-cluster");
  const removed = [];
  room.bind("pusher:member_removed", (member) => removed.push(member.id));
  const joined = next(room, "pusher:member_added");
  await subscribed(bob, "presence-cluster");
  assert.equal((await joined).id, "bob");
  const carols = await subscribed(carol, "presence-cluster");
  assert.deepEqual(Object.keys(carols.members.members).sort(), ["alice", "bob", "carol"]);
  const users = await (await sdk(nodes[2]).get({ path: "/channels/presence-cluster/users" })).json();
  assert.deepEqual(users.users.map((u) => u.id).sort(), ["alice", "bob", "carol"]);

  const gone = next(room, "pusher:member_removed");
  await nodes[1].kill();
  assert.equal((await gone).id, "bob");
  const events = await webhooks((events) => events.some((e) => e.name === "member_removed" && e.user_id === "bob"));
  const of = (name) => events.filter((e) => e.name === name && e.channel === "presence-cluster").map((e) => e.user_id);
  assert.deepEqual(of("member_added").sort(), ["alice", "bob", "carol"], "each join posted once");
  assert.deepEqual(of("member_removed"), ["bob"], "bob's leave posted once");
  // A publish after the kill comes after any duplicate leave would have.
  const after = next(room, "after");
  await sdk(nodes[0]).trigger("presence-cluster", "after", {});
  await after;
  assert.deepEqual(removed, ["bob"], "alice was told bob left once");
  alice.disconnect();
  carol.disconnect();
});

for (const [name, bus] of [
  ["NATS", ["--bus", "nats", "--store", "redis"]],
  ["a Redis Cluster", ["--bus", "redis-cluster", "--store", "redis-cluster", "--redis-cluster", "redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002"]],
]) {
  test(`over ${name}, a publish from Pusher's API or tidings' reaches the Pusher clients of both nodes`, async () => {
    const prefix = `t${randomUUID()}`;
    const args = [
      "--pusher-app-id", app.id, "--pusher-app-key", app.key, "--pusher-app-secret", app.secret,
      ...bus, "--bus-prefix", prefix, "--heartbeat-name", prefix,
    ];
    const pair = [await Server.start(args), await Server.start(args)];
    try {
      const clients = pair.map((node, i) => client(node, `u${i}`));
      const channels = await Promise.all(clients.map((c) => subscribed(c, "across")));
      const first = channels.map((channel) => next(channel, "e"));
      await sdk(pair[0]).trigger("across", "e", { via: "pusher" });
      assert.deepEqual(await Promise.all(first), [{ via: "pusher" }, { via: "pusher" }]);
      const second = channels.map((channel) => next(channel, "e"));
      await pair[1].publish("channel", { channels: "across", event: "e", args: [{ via: "tidings" }] });
      assert.deepEqual(await Promise.all(second), [{ via: "tidings" }, { via: "tidings" }]);
      clients.forEach((c) => c.disconnect());
    } finally {
      for (const node of pair) await node.kill();
    }
  });
}
