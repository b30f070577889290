// Type declarations of tidings.js.

/** This client's version. */
export const VERSION: string;

/** An error the server answered (its `code`, e.g. `forbidden_channel`), or one of the client's:
 * `disconnected` (the connection closed before the reply), `queue_full`, `closed`. */
export class TidingsError extends Error {
  readonly code: string;
  /** The channel a `forbidden_channel` error names. */
  readonly channel?: string;
  /** The rule that refused it (`token`, `user`). */
  readonly rule?: string;
}

/** Reconnect delays, in milliseconds: attempt n waits a random time below min(maxDelay, minDelay × 2^n). */
export interface ReconnectOptions {
  /** Default 500. */
  minDelay?: number;
  /** Default 30000. */
  maxDelay?: number;
}

export interface ConnectOptions {
  /** The WebSocket constructor; default `globalThis.WebSocket`. */
  WebSocket?: new (url: string) => WebSocket;
  /** A connection token signed by the backend, or a function giving one; called on every
   * connect, so an expired token (close 4002) is replaced. */
  token?: string | (() => string | Promise<string>);
  /** Backoff of reconnects; `false` never reconnects. */
  reconnect?: ReconnectOptions | false;
  /** Requests kept while disconnected (default 1000); past it they reject with `queue_full`. */
  maxQueue?: number;
  /** Milliseconds from opening a socket to the server's `welcome` (default 10000); past it the
   * attempt counts as failed. */
  connectTimeout?: number;
}

/** Why a connection was lost. */
export interface DisconnectInfo {
  /** The close code (docs/protocol.md); 4001 also when 3 server heartbeats were missed, 4008 when
   * a channel's offsets skipped or its epoch changed (events lost on the way): the client recovers
   * them; 1006 also for a connect that timed out or failed without a close. */
  code: number;
  reason: string;
  /** Whether the client will reconnect by itself. */
  reconnecting: boolean;
}

/** What a reconnect recovered of one channel with history. */
export interface RecoveredInfo {
  channel: string;
  /** `false`: events published while away are lost; reload this channel's state. */
  recovered: boolean;
  /** How many missed events were replayed (they reach the event handlers before live ones). */
  replayed: number;
}

/** A channel a new session could not be subscribed to again. */
export interface LostChannel {
  channel: string;
  /** Why: the server's error code (`forbidden_channel`, `token_expired`…). */
  code: string;
  message: string;
}

/** A reconnect found a new session (the old one is gone), and the client subscribed it again. */
export interface SessionInfo {
  resumed: false;
  /** The channels subscribed again (those with history were recovered: see `recovered`). */
  restored: string[];
  /** The channels that could not be. */
  lost: LostChannel[];
}

/** A session's state after a change made by any of its tabs or by the backend. */
export interface SessionChange {
  /** Every channel the session holds, sorted. */
  channels: string[];
  /** The user id the session is bound to, if any. */
  userId: string | null;
}

export type Handler = (...args: any[]) => void;

export interface Lifecycle {
  on(name: "ready" | "reconnect", handler: () => void): void;
  on(name: "disconnect", handler: (info: DisconnectInfo) => void): void;
  on(name: "recovered", handler: (info: RecoveredInfo) => void): void;
  on(name: "session", handler: (info: SessionInfo) => void): void;
  off(name: "ready" | "reconnect" | "disconnect" | "recovered" | "session", handler?: Handler): void;
}

export class Tidings {
  /** Event handlers: a channel event passes the channel name as the handler's last argument. */
  readonly event: { on(name: string, handler: Handler): void; off(name: string, handler?: Handler): void };
  /** Lifecycle events: `ready` (first connect), `reconnect`, `disconnect`, `recovered`,
   * `session`. */
  readonly server: Lifecycle;
  /** The session's channels (every tab of it); each call resolves with the channels held. */
  readonly channel: {
    subscribe(channels: string | string[], token?: string): Promise<string[]>;
    unsubscribe(channels: string | string[]): Promise<string[]>;
    list(): Promise<string[]>;
  };
  /** Changes to the session (every tab of it), whoever made them: a tab or the backend. */
  readonly session: {
    on(name: "change", handler: (change: SessionChange) => void): void;
    off(name: "change", handler?: Handler): void;
  };
  /** Presence channels' members (docs/presence.md): the list (null past the server's
   * `max_members`), the count, and each member joining or leaving once. */
  readonly presence: {
    members(channel: string): Member[] | null;
    count(channel: string): number;
    on(name: "join" | "leave", handler: (member: Member, channel: string) => void): void;
    off(name: "join" | "leave", handler?: Handler): void;
  };
  /** This tab's socket id while connected. */
  readonly socketId: string | null;
  constructor(url?: string | URL, options?: ConnectOptions);
  /** Calls a server method with `params`; resolves with its result. */
  rpc<T = unknown>(method: string, ...params: unknown[]): Promise<T>;
  /** Starts the presence heartbeat; it restarts after every reconnect until stopped. */
  heartbeatStart(): void;
  /** Stops the heartbeat (done by itself on `pagehide`). */
  heartbeatStop(): void;
  /** Closes for good. */
  close(): void;
}

/** A member of a presence channel: a user id, or a session bound to none. */
export interface Member {
  /** `u:<user id>`, or `s:<16 hex digits>` for a session bound to no user id. */
  id: string;
  user: string | null;
  /** What the connection token's `info` claim said of the user. */
  info?: Record<string, unknown>;
}

/** Connects to a tidings server: by default the one this module was loaded from (`…/ws`). */
export function connect(url?: string | URL, options?: ConnectOptions): Tidings;

/** The delay before reconnect attempt `attempt` (full jitter). */
export function backoff(attempt: number, options?: ReconnectOptions, random?: () => number): number;
