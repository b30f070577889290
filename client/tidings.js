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
   * `recovered` after a reconnect, once per channel with history (with `{channel, recovered,
   * replayed}`; `recovered: false`: events were lost, reload that channel's state), and `session`
   * when a reconnect found the session gone and the client subscribed a new one again (with
   * `{resumed: false, restored, lost}`: the channels back, and `{channel, code, message}` for each
   * that could not be).
   */
  server;
  /** Session channels: `subscribe`, `unsubscribe` (promise of the channels held), `list`. */
  channel;
  /**
   * Session changes, whichever tab or the backend made them: `session.on("change", ({channels,
   * userId}) => …)`.
   */
  session;
  /**
   * Presence channels' members, kept from the subscribe reply and `tidings:join`/`tidings:leave`
   * events: `presence.members(channel)` (an array of `{id, user, info?}`, or `null` past the
   * server's `max_members` or for a channel the session is not in), `presence.count(channel)`,
   * `presence.on("join" | "leave", (member, channel) => …)` (each member once, whatever the
   * order frames came in).
   */
  presence;
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
  /** The session's channels, as the server last said (a `session` frame, a reply). */
  #channels = new Set();
  /** The token each channel was subscribed with, when it was. */
  #tokens = new Map();
  /** Channels to subscribe again: the session they were in is gone. */
  #unrestored = new Set();
  /** Gives up on a socket not welcomed within `connectTimeout`. */
  #connecting = null;
  /** Presence channels' members: channel → `{count, members}` (`members`: id → member, or null). */
  #rosters = new Map();
  #members = new Handlers();

  /**
   * Options: `WebSocket` (constructor; default the global one), `token` (string, or function
   * returning one or a promise of one, called on every connect), `reconnect` (`{minDelay,
   * maxDelay}` in ms, or `false`), `maxQueue` (requests kept while disconnected, default 1000),
   * `connectTimeout` (ms a socket may take to be welcomed before it counts as failed, default
   * 10000).
   */
  constructor(url, options = {}) {
    this.#url = socketUrl(url);
    this.#options = { maxQueue: 1000, reconnect: {}, connectTimeout: 10000, ...options };
    if (!(this.#options.WebSocket ?? globalThis.WebSocket)) {
      throw new TypeError("tidings: no WebSocket here; pass options.WebSocket (e.g. from the ws package)");
    }
    const events = this.#events;
    const lifecycle = this.#lifecycle;
    this.event = { on: (n, h) => events.on(n, h), off: (n, h) => events.off(n, h) };
    this.server = { on: (n, h) => lifecycle.on(n, h), off: (n, h) => lifecycle.off(n, h) };
    const changes = this.#changes;
    this.session = { on: (n, h) => changes.on(n, h), off: (n, h) => changes.off(n, h) };
    const members = this.#members;
    this.presence = {
      members: (channel) => {
        const roster = this.#rosters.get(channel);
        return roster?.members ? [...roster.members.values()] : null;
      },
      count: (channel) => this.#rosters.get(channel)?.count ?? 0,
      on: (n, h) => members.on(n, h),
      off: (n, h) => members.off(n, h),
    };
    this.channel = {
      subscribe: async (channels, token) => {
        const held = await this.#request({ type: "subscribe", channels, token });
        if (token) for (const channel of [channels].flat()) this.#tokens.set(channel, token);
        return this.#held(held);
      },
      unsubscribe: async (channels) => this.#held(await this.#request({ type: "unsubscribe", channels })),
      list: async () => this.#held(await this.#request({ type: "list" })),
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
    // Some WebSockets (Node 20's) report a refused connection with `error` and never `close`.
    ws.onerror = () => this.#ws === ws && this.#abandon(1006, "connection error");
    this.#connecting = setTimeout(() => this.#abandon(1006, "connect timed out"), this.#options.connectTimeout);
  }

  /** Gives up on the current socket as if it had closed with `code`, and closes it. */
  #abandon(code, reason) {
    const ws = this.#ws;
    this.#lost(code, reason);
    try {
      ws?.close();
    } catch {
      // Already closing, or never opened: nothing more to do.
    }
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
        if (last && (last.epoch !== frame.epoch || frame.offset > last.offset + 1)) {
          // Events were lost on the way (the server's link to its bus dropped, or the channel's
          // history was lost and started again): reconnect and recover from the last one seen,
          // this one included; if that cannot be, the server says `recovered: false`.
          return this.#abandon(4008, `missed events on ${frame.channel}`);
        }
        this.#positions.set(frame.channel, { epoch: frame.epoch, offset: frame.offset });
      }
      const args = Array.isArray(frame.args) ? frame.args : [];
      if (frame.event === "tidings:join" || frame.event === "tidings:leave") this.#change(frame.event, args[0], frame.channel);
      this.#events.emit(frame.event, "channel" in frame ? [...args, frame.channel] : args);
    } else if (frame?.type === "reply") {
      this.#learn(frame.positions);
      this.#roll(frame.members);
      const call = this.#pending.get(frame.id);
      this.#pending.delete(frame.id);
      if (!call) return;
      if (frame.error) {
        const { code, message, ...details } = frame.error;
        call.reject(new TidingsError(code, message, details));
      } else call.resolve(call.whole ? frame : frame.result);
    } else if (frame?.type === "welcome") {
      this.#welcome(frame);
    } else if (frame?.type === "session" && Array.isArray(frame.channels)) {
      this.#held(frame.channels);
      this.#changes.emit("change", [{ channels: frame.channels, userId: frame.user_id ?? null }]);
    } else if (frame?.type === "error") {
      console.warn(`tidings: the server could not read a frame: ${frame.error?.message}`);
    }
  }

  /** Takes presence channels' members as a subscribe reply or a welcome (`whole`: every one the
   * session is in) gave them; a list known before (a reconnect) tells who joined and left
   * meanwhile. */
  #roll(rosters = {}, whole = false) {
    if (whole) for (const channel of this.#rosters.keys()) if (!(channel in rosters)) this.#rosters.delete(channel);
    for (const [channel, roster] of Object.entries(rosters)) {
      const listed = Array.isArray(roster.members) ? roster.members : roster.count === 0 ? [] : null;
      // Past max_members the server gives the count alone; a list is kept only while it fits.
      const members = listed && new Map(listed.map((m) => [m.id, m]));
      const before = this.#rosters.get(channel)?.members;
      this.#rosters.set(channel, { count: roster.count, members });
      if (!before || !members) continue;
      for (const [id, member] of before) if (!members.has(id)) this.#members.emit("leave", [member, channel]);
      for (const [id, member] of members) if (!before.has(id)) this.#members.emit("join", [member, channel]);
    }
  }

  /** Applies a `tidings:join` or `tidings:leave` to the channel's members, each member once. */
  #change(event, change, channel) {
    const roster = this.#rosters.get(channel);
    const member = change?.member;
    if (!roster || typeof member?.id !== "string") return;
    const joined = event === "tidings:join";
    if (roster.members) {
      if (joined === roster.members.has(member.id)) return; // already known: the reply had it
      if (joined) roster.members.set(member.id, member);
      else roster.members.delete(member.id);
      roster.count = roster.members.size;
    } else roster.count = Math.max(0, roster.count + (joined ? 1 : -1));
    this.#members.emit(joined ? "join" : "leave", [member, channel]);
  }

  /** `channels` by the token each was subscribed with (`undefined`: none). */
  #byToken(channels) {
    const groups = new Map();
    for (const channel of channels) {
      const token = this.#tokens.get(channel);
      groups.set(token, [...(groups.get(token) ?? []), channel]);
    }
    return groups;
  }

  /** Takes the session's channels as the server gave them; returns them. */
  #held(channels) {
    if (!Array.isArray(channels)) return channels;
    this.#channels = new Set(channels);
    for (const channel of this.#rosters.keys()) if (!this.#channels.has(channel)) this.#rosters.delete(channel);
    // A channel the session left (in any tab) is no longer followed here.
    const left = (channel) => !this.#channels.has(channel) && !this.#unrestored.has(channel);
    for (const channel of this.#positions.keys()) if (left(channel)) this.#positions.delete(channel);
    for (const channel of this.#tokens.keys()) if (left(channel)) this.#tokens.delete(channel);
    return channels;
  }

  #welcome(frame) {
    clearTimeout(this.#connecting);
    this.socketId = frame.socket;
    this.#ready = true;
    this.#attempt = 0;
    this.#beatDelay = frame.beat_delay_ms ?? this.#beatDelay;
    this.#heartbeatMessage = frame.heartbeat?.message ?? null;
    if (frame.heartbeat) this.#watchHeartbeat(frame.heartbeat.interval_ms);
    // A new session after a reconnect: the one that held the channels is gone (no cookie, a
    // server that forgot it). Subscribe the new one again, recovering what history keeps.
    if (frame.resumed === false && this.#everReady) for (const channel of this.#channels) this.#unrestored.add(channel);
    // The first request on a socket asked to hold: anything else would end the holding. It
    // names only positions seen before this socket: the welcome's are after what was held.
    if (this.#unrestored.size > 0) this.#restore();
    else if (this.#recovering) this.#recover();
    this.#learn(frame.positions);
    this.#roll(frame.members, true);
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
    this.#send({ type: "recover", channels }, { resolve: (answers) => this.#recovered(answers), reject: () => {} });
  }

  /** Takes the answers to a recovery, per channel, and tells the app. */
  #recovered(answers) {
    for (const [channel, answer] of Object.entries(answers ?? {})) {
      const { recovered, replayed, epoch, offset } = answer;
      if (epoch === null) this.#positions.delete(channel);
      // Nothing replayed: events go on from where the channel is now.
      else if (!recovered) this.#positions.set(channel, { epoch, offset });
      this.#lifecycle.emit("recovered", [{ channel, recovered, replayed }]);
    }
  }

  /**
   * Subscribes a new session to the channels the lost one held, with the token each was
   * subscribed with, recovering channels with history from the last events seen. A channel the
   * rules refuse is left out and the rest is tried again; then the app hears `session`.
   */
  async #restore() {
    const ws = this.#ws;
    const [restored, lost] = [[], []];
    for (let [token, channels] of this.#byToken(this.#unrestored)) {
      while (channels.length > 0 && this.#ws === ws) {
        const since = Object.fromEntries(channels.filter((c) => this.#positions.has(c)).map((c) => [c, this.#positions.get(c)]));
        const frame = { type: "subscribe", channels, token, ...(Object.keys(since).length > 0 && { since }) };
        try {
          const reply = await new Promise((resolve, reject) => this.#send(frame, { resolve, reject, whole: true }));
          for (const channel of channels) this.#unrestored.delete(channel);
          this.#held(reply.result);
          this.#recovered(reply.recovered);
          restored.push(...channels);
          break;
        } catch (e) {
          if (this.#ws !== ws) return; // the socket closed: the next one tries again
          const refused = e.code === "forbidden_channel" && channels.includes(e.channel) ? [e.channel] : channels;
          for (const channel of refused) {
            lost.push({ channel, code: e.code, message: e.message });
            this.#unrestored.delete(channel);
            this.#positions.delete(channel);
            this.#tokens.delete(channel);
          }
          channels = channels.filter((c) => !refused.includes(c));
        }
      }
    }
    if (this.#ws === ws) this.#lifecycle.emit("session", [{ resumed: false, restored, lost }]);
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
    clearTimeout(this.#connecting);
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
