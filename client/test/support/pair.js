// Two `tidings serve` nodes sharing the local Redis (bus and store, with prefixes of their own so
// tests never meet) and a headless Chromium, for the browser tests that need a cluster.
import { randomUUID } from "node:crypto";

import { launch } from "./browser.js";
import { Server } from "./server.js";

/** The two nodes `a` and `b`, the `args` they were started with, and the `browser`. */
export class Pair {
  /** Starts both nodes with `extra` arguments, and Chromium. */
  static async start(extra = []) {
    const prefix = `t${randomUUID()}`;
    const args = [...extra, "--bus", "redis", "--store", "redis", "--bus-prefix", prefix, "--heartbeat-name", prefix];
    const pair = new Pair(args);
    pair.a = await Server.start(args);
    pair.b = await Server.start(args);
    pair.browser = await launch();
    return pair;
  }

  constructor(args) {
    this.args = args;
  }

  /** Closes the browser and kills both nodes. */
  async stop() {
    await this.browser?.close();
    await this.a?.kill();
    await this.b?.kill();
  }
}
