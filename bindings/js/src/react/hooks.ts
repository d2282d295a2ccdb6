// The hooks. Values come through useSyncExternalStore, so a component re-renders only
// when the value it reads changes; messages go straight from the client to a handler,
// one call per message, in order.
import { useCallback, useRef, useState, useSyncExternalStore } from 'react';

import type { TetherClient, TetherMessage, TetherMetrics, TetherQuality, TetherState } from '../index.js';
import { useIsomorphicLayoutEffect, useStore } from './provider.js';
import type { ClientStore, LifecycleEvent } from './store.js';

/** What `send` and `sendConfirmed` take. */
export type TetherData = Parameters<TetherClient['send']>[0];

/** The state shown before the provider has opened its connection (and on the server). */
const BEFORE_OPEN: TetherState = 'connecting';
const NO_EVENTS: readonly LifecycleEvent[] = [];

/**
 * The provider's client (the nearest provider's, or with `name` the one named so):
 * `null` until the provider has opened it (after the first render, before any
 * `useEffect` below it runs).
 *
 * ```tsx
 * const client = useTetherClient();
 * <button onClick={() => client?.reconnect()}>Reconnect</button>
 * ```
 */
export function useTetherClient(name?: string): TetherClient | null {
  const store = useStore('useTetherClient', name);
  const get = () => store.client;
  return useSyncExternalStore(store.subscribe, get, get);
}

/**
 * The connection's state; re-renders only when it changes. `'connecting'` until the
 * provider has opened the connection.
 *
 * ```tsx
 * const state = useConnectionState(); // 'connected', 'reconnecting', …
 * ```
 */
export function useConnectionState(): TetherState {
  const store = useStore('useConnectionState');
  return useSyncExternalStore(
    store.subscribe,
    () => store.client?.state ?? BEFORE_OPEN,
    () => BEFORE_OPEN,
  );
}

/**
 * The quality level (`'excellent'` to `'critical'`), or `null` before it is measured;
 * re-renders only when it changes.
 *
 * ```tsx
 * const quality = useQuality();
 * ```
 */
export function useQuality(): TetherQuality | null {
  const store = useStore('useQuality');
  return useSyncExternalStore(
    store.subscribe,
    () => store.client?.quality ?? null,
    () => null,
  );
}

/**
 * The client's metrics (see `TetherMetrics`), read every `intervalMs` (default 1000;
 * 0: only on lifecycle events) and on every lifecycle event. Re-renders only when a
 * value differs; with `select`, only when the selected value does. `null` before the
 * connection is opened.
 *
 * ```tsx
 * const metrics = useMetrics();                       // everything (uptime ticks each second)
 * const rtt = useMetrics(1000, (m) => m.rttMs);       // re-renders when the RTT changes
 * ```
 */
export function useMetrics(intervalMs?: number): TetherMetrics | null;
export function useMetrics<T>(intervalMs: number | undefined, select: (metrics: TetherMetrics) => T): T | null;
export function useMetrics<T>(intervalMs = 1000, select?: (metrics: TetherMetrics) => T): T | TetherMetrics | null {
  const store = useStore('useMetrics');
  const selectRef = useRef(select);
  selectRef.current = select;
  // The last value read and the client it was read from: getSnapshot returns it as is.
  const [cell] = useState(() => ({
    client: undefined as TetherClient | null | undefined,
    value: null as T | TetherMetrics | null,
  }));
  const read = (): T | TetherMetrics | null => {
    cell.client = store.client;
    if (!store.client) return null;
    const metrics = store.client.metrics();
    return selectRef.current ? selectRef.current(metrics) : metrics;
  };
  const subscribe = useCallback(
    (notify: () => void) => {
      const refresh = () => {
        const next = read();
        if (same(next, cell.value)) return;
        cell.value = next;
        notify();
      };
      const timer = intervalMs > 0 ? setInterval(refresh, intervalMs) : null;
      const off = store.subscribe(refresh);
      return () => {
        if (timer !== null) clearInterval(timer);
        off();
      };
    },
    // `read` only reads the store and refs.
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [store, cell, intervalMs],
  );
  const getSnapshot = () => {
    if (cell.client !== store.client) cell.value = read();
    return cell.value;
  };
  return useSyncExternalStore(subscribe, getSnapshot, () => null);
}

/**
 * A function that sends a message and returns its id: a string as text, binary data as
 * binary, anything else as JSON. Queued while disconnected; throws as `client.send`
 * does, and an `Error` of kind `no-client` before the provider has opened the connection.
 *
 * ```tsx
 * const send = useTetherSend();
 * <button onClick={() => send({ type: 'like', id })}>Like</button>
 * ```
 */
export function useTetherSend(): (data: TetherData) => number {
  const store = useStore('useTetherSend');
  return useCallback((data: TetherData) => opened(store, 'send').send(data), [store]);
}

/**
 * A function that sends a message and resolves with its id once the server has
 * acknowledged it (`protocol: true`); rejects as `client.sendConfirmed` does.
 *
 * ```tsx
 * const sendConfirmed = useSendConfirmed();
 * await sendConfirmed({ type: 'order', items });
 * ```
 */
export function useSendConfirmed(): (data: TetherData) => Promise<number> {
  const store = useStore('useSendConfirmed');
  return useCallback((data: TetherData) => opened(store, 'sendConfirmed').sendConfirmed(data), [store]);
}

/**
 * Calls `handler` with every message from the server, in order, one call per message
 * (a burst of a thousand in one tick is a thousand calls), as long as the component is
 * mounted. With `filter`, only with the messages it accepts. The latest `handler` and
 * `filter` are used; changing them does not resubscribe.
 *
 * ```tsx
 * const [lines, setLines] = useState<string[]>([]);
 * useTetherMessages((m) => setLines((l) => [...l, String(m)]));
 * ```
 */
export function useTetherMessages(
  handler: (message: TetherMessage) => void,
  filter?: (message: TetherMessage) => boolean,
): void {
  const store = useStore('useTetherMessages');
  const latest = useRef({ handler, filter });
  useIsomorphicLayoutEffect(() => {
    latest.current = { handler, filter };
  });
  useIsomorphicLayoutEffect(
    () =>
      onMessages(store, (message) => {
        const { handler, filter } = latest.current;
        if (!filter || filter(message)) handler(message);
      }),
    [store],
  );
}

/** What `useQueryInvalidation` needs of a query client (TanStack Query's has it). */
export interface QueryInvalidator {
  invalidateQueries(filters: { queryKey: readonly unknown[] }): unknown;
}

/** One rule of `useQueryInvalidation`. */
export interface QueryInvalidationRule {
  /**
   * Which messages: a type (a JSON message whose `type` field equals it), or a test of
   * the message (its parsed JSON when it is JSON text, else the message itself).
   */
  match: string | ((message: unknown, raw: TetherMessage) => boolean);
  /** The query key to invalidate, or one made from the message (`null`: nothing). */
  queryKey: readonly unknown[] | ((message: unknown, raw: TetherMessage) => readonly unknown[] | null | undefined);
}

/**
 * Invalidates query-cache keys when matching server messages arrive. Keys matched in the
 * same tick are invalidated once, together, after it. Works with TanStack Query's
 * `QueryClient` (anything with `invalidateQueries({ queryKey })`).
 *
 * ```tsx
 * useQueryInvalidation(queryClient, [
 *   { match: 'todo.changed', queryKey: ['todos'] },
 *   { match: (m: any) => m?.type === 'user.changed', queryKey: (m: any) => ['user', m.id] },
 * ]);
 * ```
 */
export function useQueryInvalidation(queryClient: QueryInvalidator, rules: readonly QueryInvalidationRule[]): void {
  const store = useStore('useQueryInvalidation');
  const latest = useRef({ queryClient, rules });
  useIsomorphicLayoutEffect(() => {
    latest.current = { queryClient, rules };
  });
  useIsomorphicLayoutEffect(() => {
    let live = true;
    let pending = new Map<unknown, readonly unknown[]>();
    const flush = () => {
      const keys = [...pending.values()];
      pending = new Map();
      if (!live) return;
      for (const queryKey of keys) {
        // A failed refetch is the query's own error, shown where the query is used.
        Promise.resolve(latest.current.queryClient.invalidateQueries({ queryKey })).catch(() => {});
      }
    };
    const off = onMessages(store, (raw) => {
      const { rules } = latest.current;
      if (rules.length === 0) return;
      const message = parse(raw);
      for (const rule of rules) {
        const hit =
          typeof rule.match === 'string'
            ? typeof message === 'object' && message !== null && (message as { type?: unknown }).type === rule.match
            : rule.match(message, raw);
        if (!hit) continue;
        const key = typeof rule.queryKey === 'function' ? rule.queryKey(message, raw) : rule.queryKey;
        if (!key) continue;
        if (pending.size === 0) queueMicrotask(flush);
        pending.set(keyOf(key), key);
      }
    });
    return () => {
      live = false;
      off();
    };
  }, [store]);
}

/**
 * The recent lifecycle events of the connection (state changes, attempts, scheduled reconnects,
 * fallback, disconnects, stops, errors), oldest first, since it was opened; at most 50.
 *
 * ```tsx
 * const events = useLifecycleEvents();
 * ```
 */
export function useLifecycleEvents(): readonly LifecycleEvent[] {
  const store = useStore('useLifecycleEvents');
  return useSyncExternalStore(
    store.subscribe,
    () => store.log,
    () => NO_EVENTS,
  );
}

/** The wait before the next attempt while reconnecting. */
export interface ReconnectCountdown {
  /** The attempt that is scheduled (1 for the first retry). */
  attempt: number;
  /** Whole seconds until it (rounded up); 0 once it is under way. */
  seconds: number;
}

/**
 * While the state is `'reconnecting'`: which attempt is next and how many seconds are
 * left before it, updated each second; otherwise `null`.
 *
 * ```tsx
 * const countdown = useReconnectCountdown();
 * countdown && <span>retrying in {countdown.seconds} s</span>
 * ```
 */
export function useReconnectCountdown(): ReconnectCountdown | null {
  const store = useStore('useReconnectCountdown');
  const [cell] = useState(() => ({ value: countdown(store, Date.now()) }));
  const subscribe = useCallback(
    (notify: () => void) => {
      let timer: ReturnType<typeof setTimeout> | null = null;
      const refresh = () => {
        if (timer !== null) clearTimeout(timer);
        timer = null;
        const now = Date.now();
        const next = countdown(store, now);
        if (next?.at !== undefined && next.at > now) {
          // Wake when the number of whole seconds left goes down.
          timer = setTimeout(refresh, ((next.at - now) % 1000 || 1000) + 1);
        }
        if (same(strip(next), strip(cell.value))) return;
        cell.value = next;
        notify();
      };
      const off = store.subscribe(refresh);
      refresh();
      return () => {
        if (timer !== null) clearTimeout(timer);
        off();
      };
    },
    [store, cell],
  );
  const value = useSyncExternalStore(
    subscribe,
    () => cell.value,
    () => null,
  );
  return value && value.public;
}

type CountdownCell = { public: ReconnectCountdown; at: number } | null;

function countdown(store: ClientStore, now: number): CountdownCell {
  if (store.client?.state !== 'reconnecting') return null;
  for (let i = store.log.length - 1; i >= 0; i -= 1) {
    const entry = store.log[i];
    if (entry.type !== 'reconnecting') continue;
    const at = entry.at + entry.value.delayMs;
    return { public: { attempt: entry.value.attempt, seconds: Math.max(0, Math.ceil((at - now) / 1000)) }, at };
  }
  return null;
}

const strip = (c: CountdownCell) => c && c.public;

/** The provider's client, or an `Error` of kind `no-client` when it has none yet. */
function opened(store: ClientStore, what: string): TetherClient {
  if (store.client) return store.client;
  const error = new Error(
    `${what}: the connection is not open yet; the TetherProvider opens it after its first render, before any effect below it runs`,
  ) as Error & { kind: string };
  error.kind = 'no-client';
  throw error;
}

/** Calls `handler` with each message of the store's client, following it when replaced. */
function onMessages(store: ClientStore, handler: (message: TetherMessage) => void): () => void {
  let client: TetherClient | null = null;
  let off: (() => void) | null = null;
  const follow = () => {
    if (store.client === client) return;
    off?.();
    client = store.client;
    off = client ? client.on('message', handler) : null;
  };
  follow();
  const unsubscribe = store.subscribe(follow);
  return () => {
    unsubscribe();
    off?.();
  };
}

function parse(raw: TetherMessage): unknown {
  if (typeof raw !== 'string') return raw;
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return raw;
  }
}

function keyOf(queryKey: readonly unknown[]): unknown {
  try {
    return JSON.stringify(queryKey);
  } catch {
    return queryKey;
  }
}

/** Equal as JSON-like values: primitives by `Object.is`, arrays and plain objects by their entries. */
export function same(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && same((a as never)[k], (b as never)[k]));
}
