// A stand-in for the WebSocket constructor, for tests of the client's timers: it records what
// the client sends and lets the test play the server. Tests against a real server: server.test.js
// and test/browser/.

/** Every socket made, newest last. */
export const sockets = [];

export class FakeSocket {
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.closedWith = null;
    sockets.push(this);
  }

  send(text) {
    this.sent.push(JSON.parse(text));
  }

  close(code) {
    this.closedWith = code ?? 1005;
  }

  /** The server's welcome, with a server heartbeat every `interval` ms. */
  welcome({ interval = 1000, beat = 30000, socket = "node.1" } = {}) {
    this.receive({
      type: "welcome",
      protocol: 1,
      socket,
      beat_delay_ms: beat,
      heartbeat: { message: "--heartbeat--", interval_ms: interval },
    });
  }

  receive(frame) {
    this.onmessage({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
  }

  /** The server closes the connection. */
  drop(code, reason = "") {
    this.onclose({ code, reason });
  }

  /** The last frame sent of `type`. */
  last(type) {
    return this.sent.findLast((f) => f.type === type);
  }
}

/** The newest socket. */
export function latest() {
  return sockets.at(-1);
}
