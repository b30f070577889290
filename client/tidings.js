// tidings.js: the client of a tidings server, for browsers and Node 20+. One ES module, no build
// step, no dependencies. The protocol it speaks: docs/protocol.md.

/** This client's version; the server serves it at `/tidings.js` and `/tidings-<VERSION>.js`. */
export const VERSION = "0.1.0";

/** Close codes after which reconnecting cannot help (docs/protocol.md, "Close codes"). */
const TERMINAL = new Set([1002, 1003, 1007, 1008, 1009, 4002, 4003, 4006, 4007]);

/** Server heartbeats missed in a row after which the link is taken as dead. */
const MISSED_HEARTBEATS = 3;

/** An error the server answered, or one of the client's own (`disconnected`, `queue_full`…). */
export class TidingsError extends Error {
  constructor(code, message, details) {
    super(message);
    this.name = "TidingsError";
    this.code = code;
    Object.assign(this, details);
  }
}

/** The error of a request made to, or waiting in, a client that was closed. */
const closed = () => new TidingsError("closed", "tidings: the client was closed");

/**
 * The delay before reconnect attempt `attempt` (0 for the first): "full jitter", a random time
 * between 0 and min(maxDelay, minDelay × 2^attempt) milliseconds.
 */
export function backoff(attempt, { minDelay = 500, maxDelay = 30000 } = {}, random = Math.random) {
  return Math.floor(random() * Math.min(maxDelay, minDelay * 2 ** attempt));
}

/** Connects to a tidings server; see the `Tidings` class. */
export function connect(url, options) {
  return new Tidings(url, options);
}

/** Handlers by name, each called with the arguments of `emit`. */
class Handlers {
  #byName = new Map();

  on(name, handler) {
    if (!this.#byName.has(name)) this.#byName.set(name, new Set());
    this.#byName.get(name).add(handler);
  }

  off(name, handler) {
    const set = this.#byName.get(name);
    if (!set) return;
    if (handler) set.delete(handler);
    else set.clear();
  }

  emit(name, args) {
    for (const handler of this.#byName.get(name) ?? []) {
      try {
        handler(...args);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    }
  }
}

/** The WebSocket URL: `url` resolved against where this module (or the page) was loaded from. */
function socketUrl(url) {
  const base = /^https?:/.test(import.meta.url) ? import.meta.url : globalThis.location?.href;
  if (url === undefined && !base) throw new TypeError("tidings: connect(url) needs a URL outside a page");
  const resolved = new URL(url ?? "ws", base);
  resolved.protocol = resolved.protocol.replace(/^http/, "ws");
  if (!/^wss?:$/.test(resolved.protocol)) throw new TypeError(`tidings: ${resolved} is not a WebSocket URL`);
  return resolved;
}

/**
 * A connection that reconnects by itself. Its session (the `tidings.sid` cookie in browsers)
 * keeps subscriptions and user id across reconnects, so app code subscribes once.
 */
export class Tidings {
  /** Event handlers: `event.on(name, (...args, channel?) => …)`, `event.off(name, handler?)`. */
  event;
  /**
   * Lifecycle handlers: `ready`, `reconnect`, `disconnect` (with `{code, reason, reconnecting}`),
   * and `recovered` after a reconnect, once per channel with history (with `{channel, recovered,
   * replayed}`; `recovered: false`: events were lost, reload that channel's state).
   */
  server;
  /** Session channels: `subscribe`, `unsubscribe` (promise of the channels held), `list`. */
  channel;
  /**
   * Session changes, whichever tab or the backend made them: `session.on("change", ({channels,
   * userId}) => …)`.
   */
  session;
  /** This tab's socket id once connected (from the server's `welcome`). */
  socketId = null;

  #url;
  #options;
  #ws = null;
  #ready = false;
  #everReady = false;
  #closed = false;
  #attempt = 0;
  #retry = null;
  #nextId = 0;
  #pending = new Map();
  #queue = [];
  #events = new Handlers();
  #lifecycle = new Handlers();
  #changes = new Handlers();
  #beating = false;
  #beatTimer = null;
  #beatDelay = 30000;
  #watch = null;
  #heard = false;
  #missed = 0;
  #heartbeatMessage = null;
  #stoppedOnHide = false;
  /** Per channel with history: the last `{epoch, offset}` seen. */
  #positions = new Map();
  /** Whether the socket being opened was asked to hold events until the `recover` request. */
  #recovering = false;

  /**
   * Options: `WebSocket` (constructor; default the global one), `token` (string, or function
   * returning one or a promise of one, called on every connect), `reconnect` (`{minDelay,
   * maxDelay}` in ms, or `false`), `maxQueue` (requests kept while disconnected, default 1000).
   */
  constructor(url, options = {}) {
    this.#url = socketUrl(url);
    this.#options = { maxQueue: 1000, reconnect: {}, ...options };
    if (!(this.#options.WebSocket ?? globalThis.WebSocket)) {
      throw new TypeError("tidings: no WebSocket here; pass options.WebSocket (e.g. from the ws package)");
    }
    const events = this.#events;
    const lifecycle = this.#lifecycle;
    this.event = { on: (n, h) => events.on(n, h), off: (n, h) => events.off(n, h) };
    this.server = { on: (n, h) => lifecycle.on(n, h), off: (n, h) => lifecycle.off(n, h) };
    const changes = this.#changes;
    this.session = { on: (n, h) => changes.on(n, h), off: (n, h) => changes.off(n, h) };
    this.channel = {
      subscribe: (channels, token) => this.#request({ type: "subscribe", channels, token }),
      unsubscribe: async (channels) => {
        const left = await this.#request({ type: "unsubscribe", channels });
        for (const channel of [channels].flat()) if (!left.includes(channel)) this.#positions.delete(channel);
        return left;
      },
      list: () => this.#request({ type: "list" }),
    };
    globalThis.addEventListener?.("online", this.#onOnline);
    globalThis.addEventListener?.("pagehide", this.#onPageHide);
    globalThis.addEventListener?.("pageshow", this.#onPageShow);
    this.#open();
  }

  /** Calls a server method; resolves with its result, rejects with a `TidingsError`. */
  rpc(method, ...params) {
    return this.#request({ type: "rpc", method, params });
  }

  /** Starts this tab's presence heartbeat (again after every reconnect, until stopped). */
  heartbeatStart() {
    if (this.#beating) return;
    this.#beating = true;
    if (this.#ready) this.#startBeating();
  }

  /** Stops the heartbeat: the server emits `disconnect` unless another tab still beats. */
  heartbeatStop() {
    if (!this.#beating) return;
    this.#beating = false;
    clearInterval(this.#beatTimer);
    if (this.#ready) this.#send({ type: "heartbeat", op: "stop" });
  }

  /** Closes for good: no reconnect; waiting requests reject with `closed`. */
  close() {
    this.heartbeatStop();
    this.#shut();
    const ws = this.#ws;
    this.#drop(1000);
    ws?.close(1000);
  }

  /** Marks the client closed for good and stops listening to the page. */
  #shut() {
    this.#closed = true;
    clearTimeout(this.#retry);
    globalThis.removeEventListener?.("online", this.#onOnline);
    globalThis.removeEventListener?.("pagehide", this.#onPageHide);
    globalThis.removeEventListener?.("pageshow", this.#onPageShow);
  }

  async #open() {
    this.#retry = null;
    const url = new URL(this.#url);
    const { token } = this.#options;
    if (token) {
      try {
        url.searchParams.set("token", typeof token === "function" ? await token() : token);
      } catch (e) {
        return this.#lost(4002, `token: ${e?.message ?? e}`);
      }
    }
    if (this.#closed) return;
    this.#recovering = this.#positions.size > 0;
    if (this.#recovering) url.searchParams.set("recover", "1");
    const ws = new (this.#options.WebSocket ?? globalThis.WebSocket)(url.href);
    this.#ws = ws;
    ws.onmessage = (m) => this.#ws === ws && this.#receive(m.data);
    ws.onclose = (c) => this.#ws === ws && this.#lost(c.code, c.reason);
    ws.onerror = () => {};
  }

  #receive(data) {
    this.#heard = true;
    if (data === this.#heartbeatMessage) return;
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame?.type === "event") {
      if (typeof frame.offset === "number" && typeof frame.channel === "string") {
        const last = this.#positions.get(frame.channel);
        if (last?.epoch === frame.epoch && frame.offset > last.offset + 1) {
          // Events were lost on the way (the server's link to its bus dropped): reconnect and
          // recover them from the last one seen, this one included.
          const ws = this.#ws;
          this.#lost(4008, `missed events on ${frame.channel}`);
          return ws.close();
        }
        this.#positions.set(frame.channel, { epoch: frame.epoch, offset: frame.offset });
      }
      const args = Array.isArray(frame.args) ? frame.args : [];
      this.#events.emit(frame.event, "channel" in frame ? [...args, frame.channel] : args);
    } else if (frame?.type === "reply") {
      this.#learn(frame.positions);
      const call = this.#pending.get(frame.id);
      this.#pending.delete(frame.id);
      if (!call) return;
      if (frame.error) {
        const { code, message, ...details } = frame.error;
        call.reject(new TidingsError(code, message, details));
      } else call.resolve(frame.result);
    } else if (frame?.type === "welcome") {
      this.#welcome(frame);
    } else if (frame?.type === "session" && Array.isArray(frame.channels)) {
      // A channel the session left (in any tab) is no longer followed here.
      for (const channel of this.#positions.keys()) if (!frame.channels.includes(channel)) this.#positions.delete(channel);
      this.#changes.emit("change", [{ channels: frame.channels, userId: frame.user_id ?? null }]);
    } else if (frame?.type === "error") {
      console.warn(`tidings: the server could not read a frame: ${frame.error?.message}`);
    }
  }

  #welcome(frame) {
    this.socketId = frame.socket;
    this.#ready = true;
    this.#attempt = 0;
    this.#beatDelay = frame.beat_delay_ms ?? this.#beatDelay;
    this.#heartbeatMessage = frame.heartbeat?.message ?? null;
    if (frame.heartbeat) this.#watchHeartbeat(frame.heartbeat.interval_ms);
    // The first request on a socket asked to hold: anything else would end the holding. It
    // names only positions seen before this socket: the welcome's are after what was held.
    if (this.#recovering) this.#recover();
    this.#learn(frame.positions);
    if (this.#beating) this.#startBeating();
    const queued = this.#queue;
    this.#queue = [];
    for (const request of queued) this.#send(request.frame, request);
    this.#lifecycle.emit(this.#everReady ? "reconnect" : "ready", []);
    this.#everReady = true;
  }

  /** Starts tracking channels the client has no position for, at the positions the server gave. */
  #learn(positions) {
    for (const [channel, position] of Object.entries(positions ?? {})) {
      if (!this.#positions.has(channel)) this.#positions.set(channel, position);
    }
  }

  /** Asks for what was missed on each channel with history; tells the app per channel. */
  #recover() {
    const channels = Object.fromEntries(this.#positions);
    const done = (answers) => {
      for (const [channel, answer] of Object.entries(answers)) {
        if (answer.epoch === null) this.#positions.delete(channel);
        const { recovered, replayed } = answer;
        this.#lifecycle.emit("recovered", [{ channel, recovered, replayed }]);
      }
    };
    this.#send({ type: "recover", channels }, { resolve: done, reject: () => {} });
  }

  /** Counts the server heartbeat intervals with nothing heard; drops the link after 3. */
  #watchHeartbeat(interval) {
    this.#heard = false;
    this.#missed = 0;
    const check = () => {
      this.#missed = this.#heard ? 0 : this.#missed + 1;
      this.#heard = false;
      if (this.#missed < MISSED_HEARTBEATS) {
        this.#watch = setTimeout(check, interval);
        return;
      }
      const ws = this.#ws;
      this.#lost(4001, `missed ${MISSED_HEARTBEATS} server heartbeats`);
      ws.close();
    };
    this.#watch = setTimeout(check, interval);
  }

  #startBeating() {
    this.#send({ type: "heartbeat", op: "start" });
    clearInterval(this.#beatTimer);
    this.#beatTimer = setInterval(() => this.#send({ type: "heartbeat", op: "beat" }), this.#beatDelay);
  }

  /** Sends a request and waits for its reply; while disconnected, queues it (up to `maxQueue`). */
  #request(frame) {
    return new Promise((resolve, reject) => {
      if (this.#closed) return reject(closed());
      const request = { frame, resolve, reject };
      if (this.#ready) return this.#send(frame, request);
      if (this.#queue.length >= this.#options.maxQueue) {
        return reject(new TidingsError("queue_full", `tidings: ${this.#queue.length} requests already wait for the connection`));
      }
      this.#queue.push(request);
    });
  }

  #send(frame, request) {
    const id = ++this.#nextId;
    if (request) this.#pending.set(id, request);
    this.#ws.send(JSON.stringify({ ...frame, id }));
  }

  /** Forgets the socket and fails what waited on it; no reconnect. */
  #drop(code) {
    const wasReady = this.#ready;
    this.#ws = null;
    this.#ready = false;
    this.socketId = null;
    clearTimeout(this.#watch);
    clearInterval(this.#beatTimer);
    const failed = new TidingsError("disconnected", `tidings: the connection closed (${code}) before the reply`);
    for (const call of this.#pending.values()) call.reject(failed);
    this.#pending.clear();
    if (this.#closed) {
      for (const request of this.#queue) request.reject(closed());
      this.#queue = [];
    }
    return wasReady;
  }

  /** The socket is gone: tell the app, then reconnect unless the close code says not to. */
  #lost(code, reason) {
    if (this.#closed) return;
    const reconnecting =
      this.#options.reconnect !== false &&
      (!TERMINAL.has(code) || (code === 4002 && typeof this.#options.token === "function"));
    if (!reconnecting) this.#shut();
    const wasReady = this.#drop(code);
    if (wasReady || !reconnecting) this.#lifecycle.emit("disconnect", [{ code, reason, reconnecting }]);
    if (!reconnecting) return;
    const delay = code === 1001 && this.#attempt === 0 ? 0 : backoff(this.#attempt, this.#options.reconnect);
    this.#attempt += 1;
    this.#retry = setTimeout(() => this.#open(), delay);
  }

  #onOnline = () => {
    if (this.#retry === null) return;
    clearTimeout(this.#retry);
    this.#open();
  };

  #onPageHide = () => {
    this.#stoppedOnHide = this.#beating;
    this.heartbeatStop();
  };

  #onPageShow = (e) => {
    if (e.persisted && this.#stoppedOnHide) this.heartbeatStart();
  };
}
