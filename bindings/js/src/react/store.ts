// The connection of one <TetherProvider>, as an external store for useSyncExternalStore.
//
// It leases the client: `acquire` opens it (or takes back the one already open for the
// same key), `release` gives it back, and the client is closed only if nobody has
// acquired it again a timer tick after the last release. React StrictMode unmounts and
// remounts every effect once in development, and Fast Refresh re-runs them: both release
// and re-acquire within the same tick, so the socket is neither closed nor opened twice.
//
// It also keeps what a component mounted later still wants to see: the recent lifecycle
// events of the client (state changes, attempts, scheduled reconnects, fallback, stops, errors),
// from the moment it was opened.
import type { TetherClient, TetherEventMap } from '../index.js';

/** The events of the lifecycle log, in `TetherEventMap` terms. */
export const LIFECYCLE_EVENTS = [
  'state',
  'quality',
  'attempt',
  'reconnecting',
  'fallback',
  'disconnected',
  'stopped',
  'sessionReset',
  'tokenRefreshed',
  'error',
] as const;

/** A kind of lifecycle event. */
export type LifecycleEventType = (typeof LIFECYCLE_EVENTS)[number];

/** One entry of the lifecycle log: what happened, when (`Date.now()`), and its value. */
export type LifecycleEvent = {
  [K in LifecycleEventType]: { at: number; type: K; value: TetherEventMap[K] };
}[LifecycleEventType];

/** Entries kept in the lifecycle log. */
export const LIFECYCLE_LOG_SIZE = 50;

export class ClientStore {
  /** The client, once the provider has opened it (or the one it was given). */
  client: TetherClient | null;
  /** Recent lifecycle events, oldest first; replaced (never mutated) on each event. */
  log: readonly LifecycleEvent[] = [];

  private readonly listeners = new Set<() => void>();
  private detach: (() => void) | null = null;
  private owned = false;
  private key: string | null = null;
  private refs = 0;
  private closeTimer: ReturnType<typeof setTimeout> | null = null;

  /** `given`: a client the provider was handed (shown at once, listened to once mounted). */
  constructor(given?: TetherClient | null) {
    this.client = given ?? null;
  }

  /** Calls `listener` whenever the client is replaced or a lifecycle event arrives. */
  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  /**
   * Takes a lease on the client for `key` (what it was opened with), opening it with
   * `open` unless the client open for the same key is still there. A client open for
   * another key is closed first: never two at once.
   */
  acquire(key: string, open: () => TetherClient): void {
    this.cancelClose();
    if (!this.owned || this.key !== key) {
      this.retire();
      const client = open();
      this.key = key;
      this.owned = true;
      this.watch(client);
    }
    this.refs += 1;
  }

  /** Gives a lease back; the last one closes the client a tick later unless re-acquired. */
  release(): void {
    this.refs = Math.max(0, this.refs - 1);
    if (this.refs > 0 || this.closeTimer !== null) return;
    this.closeTimer = setTimeout(() => {
      this.closeTimer = null;
      if (this.refs === 0) this.retire();
    }, 0);
  }

  /** Shows a client the provider was given; it is never closed here. */
  show(client: TetherClient): void {
    this.cancelClose();
    this.refs = 0;
    if (this.client === client && !this.owned && this.detach) return;
    this.retire();
    this.watch(client);
  }

  /** Stops listening to a client the provider was given. */
  hide(): void {
    if (!this.owned) this.retire();
  }

  private cancelClose(): void {
    if (this.closeTimer !== null) {
      clearTimeout(this.closeTimer);
      this.closeTimer = null;
    }
  }

  private watch(client: TetherClient): void {
    if (this.client !== client) this.log = [];
    this.client = client;
    const offs = LIFECYCLE_EVENTS.map((type) =>
      client.on(type, (value: TetherEventMap[typeof type]) => {
        const log = this.log.slice(this.log.length >= LIFECYCLE_LOG_SIZE ? 1 : 0);
        log.push({ at: Date.now(), type, value } as LifecycleEvent);
        this.log = log;
        this.notify();
      }),
    );
    this.detach = () => {
      for (const off of offs) off();
    };
    this.notify();
  }

  /** Stops listening to the current client, and closes it if it was opened here. */
  private retire(): void {
    this.detach?.();
    this.detach = null;
    if (this.client && this.owned) {
      // The client stays readable (state 'closed') for anyone who kept it, and its memory
      // goes with its last reference. A close rejects only once the WebAssembly instance
      // has died (kind 'driver-failed'), which `stopped` has told already.
      this.client.close().catch(() => {});
    }
    this.owned = false;
    this.key = null;
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }
}
