// What the Pusher tests share: a config file of apps, a webhook receiver whose posts the SDK's
// own check validates, and awaiting pusher-js's events.
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtemp, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Writes `toml` to a fresh config file; returns its path. */
export async function configFile(toml) {
  const file = join(await mkdtemp(join(tmpdir(), "tidings-pusher-")), "tidings.toml");
  await writeFile(file, toml);
  return file;
}

/** An HTTP server that keeps every POST it is sent (headers and raw body) as a webhook. */
export class Receiver {
  posts = [];
  #posted = () => {};

  /** Listens on a free loopback port; `url` is where to send webhooks. */
  static async start() {
    const receiver = new Receiver();
    receiver.server = createServer((request, response) => {
      const chunks = [];
      request.on("data", (chunk) => chunks.push(chunk));
      request.on("end", () => {
        receiver.posts.push({ headers: request.headers, rawBody: Buffer.concat(chunks).toString() });
        response.end("ok");
        receiver.#posted();
      });
    });
    receiver.server.listen(0, "127.0.0.1");
    await once(receiver.server, "listening");
    receiver.url = `http://127.0.0.1:${receiver.server.address().port}/pusher`;
    return receiver;
  }

  /** Resolves with the events posted so far, once `done(events)` is true; each post must pass
   * the server SDK `sdk`'s own webhook check and carry `key` in `X-Pusher-Key`. */
  async events(sdk, key, done) {
    for (;;) {
      const events = this.posts.flatMap((post) => {
        const webhook = sdk.webhook(post);
        assert.ok(webhook.isValid(), "a webhook signed with the app's secret");
        assert.equal(post.headers["x-pusher-key"], key);
        return webhook.getEvents();
      });
      if (done(events)) return events;
      await new Promise((resolve) => (this.#posted = resolve));
    }
  }

  close() {
    this.server.close();
  }
}

/** Resolves with the first `event` on `emitter` (a channel, or a connection). */
export function next(emitter, event) {
  return new Promise((resolve) => {
    const handler = (data) => {
      emitter.unbind(event, handler);
      resolve(data);
    };
    emitter.bind(event, handler);
  });
}

/** Subscribes `pusher` to `name`; resolves with the channel once the server confirmed it. */
export async function subscribed(pusher, name) {
  const channel = pusher.subscribe(name);
  await next(channel, "pusher:subscription_succeeded");
  return channel;
}
