// `tidings serve` as a real process for the JS tests: the binary from TIDINGS_BIN (scripts/test.sh
// sets it), or the workspace's debug build.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";

const binary = process.env.TIDINGS_BIN ?? fileURLToPath(new URL("../../../target/debug/tidings", import.meta.url));

/** A running server: `url` (http://127.0.0.1:port), `port`, `kill()`, `publish(target, body)`. */
export class Server {
  /** Starts `tidings serve` with `args` on `listen` (default a free port); waits until it listens. */
  static async start(args = [], listen = "127.0.0.1:0") {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("TIDINGS_")));
    const child = spawn(binary, ["serve", "--listen", listen, ...args], {
      env: { ...env, RUST_LOG: "error" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const lines = createInterface({ input: child.stdout });
    const [line] = await Promise.race([
      once(lines, "line"),
      once(child, "exit").then(([code]) => {
        throw new Error(`${binary} serve exited with ${code} before listening`);
      }),
    ]);
    const url = line.match(/listening on (http:\/\/\S+)/)?.[1];
    if (!url) throw new Error(`unexpected startup line: ${line}`);
    return new Server(child, url);
  }

  constructor(child, url) {
    this.child = child;
    this.url = url;
    this.port = Number(new URL(url).port);
  }

  /** Kills the process (SIGKILL: no goodbye to its sockets) and waits for it to exit. */
  async kill() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, "exit");
    this.child.kill("SIGKILL");
    await exited;
  }

  /** Publishes through the HTTP API: `target` is all, channel, user or socket. */
  async publish(target, body) {
    const response = await fetch(`${this.url}/api/publish/${target}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw new Error(`publish: ${response.status} ${await response.text()}`);
  }
}
