// A TCP proxy in front of a server, for browser tests that need a link that goes quiet: `freeze()`
// stops everything the server sends on the WebSocket connections open now, as a dead network
// path would, while new connections pass.
import { EventEmitter, once } from "node:events";
import net from "node:net";

export class Proxy extends EventEmitter {
  /** WebSocket connections accepted so far. */
  sockets = 0;
  #open = new Set();
  #server;

  /** Listens on a free loopback port, forwarding to 127.0.0.1:`target`. */
  static async start(target) {
    const proxy = new Proxy();
    proxy.#server = net.createServer((client) => proxy.#forward(client, target));
    proxy.#server.listen(0, "127.0.0.1");
    await once(proxy.#server, "listening");
    proxy.url = `http://127.0.0.1:${proxy.#server.address().port}`;
    return proxy;
  }

  #forward(client, target) {
    const upstream = net.connect(target, "127.0.0.1");
    const pair = { client, upstream };
    client.once("data", (first) => {
      if (first.toString("latin1").startsWith("GET /ws")) {
        this.sockets += 1;
        this.#open.add(pair);
        this.emit("socket");
      }
    });
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      this.#open.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  }

  /** Resolves once `n` WebSocket connections have been accepted in all. */
  async socketsReach(n) {
    while (this.sockets < n) await once(this, "socket");
  }

  /** Silences the server side of every open WebSocket connection; the TCP links stay up. */
  freeze() {
    for (const { client, upstream } of this.#open) {
      upstream.unpipe(client);
      upstream.pause();
    }
    this.#open.clear();
  }

  /** Drops every open WebSocket connection at once, as a network that goes away would. */
  cut() {
    for (const { client, upstream } of this.#open) {
      client.destroy();
      upstream.destroy();
    }
    this.#open.clear();
  }

  close() {
    this.#server.close();
  }
}
