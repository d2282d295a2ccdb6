// useTether: a hook shaped like react-use-websocket's `useWebSocket`, over TetherSocket
// (a reconnecting client), needing no provider. Each hook has its own connection, or with
// `share: true` one per URL and options for every hook that asks for it.
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'react';

import type { TetherOptions } from '../index.js';
import { TetherSocket } from '../socket.js';

/** `readyState`: the WebSocket's values, and UNINSTANTIATED while there is no socket (no URL, or `enabled: false`). */
export const ReadyState = {
  UNINSTANTIATED: -1,
  CONNECTING: 0,
  OPEN: 1,
  CLOSING: 2,
  CLOSED: 3,
} as const;
export type ReadyState = (typeof ReadyState)[keyof typeof ReadyState];

/** The hook's own options; every other key is the client's (`TetherOptions`). */
export interface UseTetherOptions extends Omit<TetherOptions, 'protocols'> {
  /** False: stay disconnected (as a null URL). Default true. */
  enabled?: boolean;
  /** Components asking for the same URL and options share one connection. Default false. */
  share?: boolean;
  /** Added to the URL's query string. */
  queryParams?: Record<string, string | number | boolean>;
  /** WebSocket subprotocols to offer. */
  protocols?: string | string[];
  /** Called on each (re)connection. */
  onOpen?: (event: Event) => void;
  /** Called when a connection is lost (it reconnects) and when it is closed for good. */
  onClose?: (event: CloseEvent) => void;
  /** Called with every message (whatever `filter` says). */
  onMessage?: (event: MessageEvent) => void;
  /** Called before `onClose` when a connection failed or was lost abnormally. */
  onError?: (event: Event) => void;
  /** Which messages become `lastMessage` (and re-render). Default: all. */
  filter?: (event: MessageEvent) => boolean;
}

/** What `useTether` gives. */
export interface UseTetherResult {
  /**
   * Sends text or binary; queued while (re)connecting (and, up to 1,000 messages, while
   * an async URL resolves) unless `keep` is false: then it is dropped unless OPEN.
   */
  sendMessage: (data: string | ArrayBufferLike | ArrayBufferView | Blob, keep?: boolean) => void;
  /** Sends `JSON.stringify(value)`, as `sendMessage`. */
  sendJsonMessage: (value: unknown, keep?: boolean) => void;
  /** The last message (that `filter` let through), or null. */
  lastMessage: MessageEvent | null;
  /** `lastMessage`'s data parsed as JSON, or null (none yet, binary, or not JSON). */
  lastJsonMessage: unknown;
  readyState: ReadyState;
  /** The TetherSocket (a WebSocket-compatible object), or null while there is none. */
  getSocket: () => TetherSocket | null;
}

const HOOK_KEYS = [
  'enabled',
  'share',
  'queryParams',
  'protocols',
  'onOpen',
  'onClose',
  'onMessage',
  'onError',
  'filter',
] as const;

// Every open socket, by key: a shared one by URL and options, another by the hook's own
// id. A socket is closed a timer tick after its last user let go, unless taken back
// meanwhile (React StrictMode mounts, unmounts and mounts again).
interface Lease {
  socket: TetherSocket;
  users: number;
  closing: ReturnType<typeof setTimeout> | null;
}
const leases = new Map<string, Lease>();

function acquire(key: string, open: () => TetherSocket): TetherSocket {
  let lease = leases.get(key);
  if (!lease) {
    lease = { socket: open(), users: 0, closing: null };
    leases.set(key, lease);
  }
  if (lease.closing !== null) clearTimeout(lease.closing);
  lease.closing = null;
  lease.users += 1;
  return lease.socket;
}

function release(key: string): void {
  const lease = leases.get(key);
  if (!lease) return;
  lease.users -= 1;
  if (lease.users > 0 || lease.closing !== null) return;
  lease.closing = setTimeout(() => {
    if (lease.users > 0) return;
    leases.delete(key);
    lease.socket.close();
  }, 0);
}

function withQuery(url: string, params: UseTetherOptions['queryParams']): string {
  if (!params || Object.keys(params).length === 0) return url;
  const query = new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)])).toString();
  const hash = url.indexOf('#');
  const [base, fragment] = hash < 0 ? [url, ''] : [url.slice(0, hash), url.slice(hash)];
  return `${base}${base.includes('?') ? '&' : '?'}${query}${fragment}`;
}

/** The options as a key: every value (functions left out, as the client's are read once). */
const keyOf = (value: unknown) =>
  JSON.stringify(value ?? {}, (_, v: unknown) =>
    typeof v === 'function' ? undefined : typeof v === 'bigint' ? `${v}n` : v,
  );

let hooks = 0;
type Data = string | ArrayBufferLike | ArrayBufferView | Blob;
/** At most this many messages wait for a socket that does not exist yet. */
const MAX_EARLY = 1000;
const useIsomorphicLayoutEffect = typeof document === 'undefined' ? useEffect : useLayoutEffect;

/**
 * A connection for this component, shaped like react-use-websocket's `useWebSocket`:
 *
 * ```tsx
 * const { sendJsonMessage, lastJsonMessage, readyState } = useTether('wss://example.com/ws', {
 *   share: true,
 *   onOpen: () => console.log('open'),
 * });
 * ```
 *
 * `url`: a URL (`ws(s)://`, `http(s)://`, or relative to the page), a function returning
 * one or a promise of one (called again when the function changes: keep it stable), or
 * null to stay disconnected. A change of URL or of an option's value reconnects; the
 * callbacks are always called in their latest version.
 */
export function useTether(
  url: string | (() => string | Promise<string>) | null,
  options: UseTetherOptions = {},
): UseTetherResult {
  const [id] = useState(() => `own:${(hooks += 1)}`);
  const [socket, setSocket] = useState<TetherSocket | null>(null);
  const [readyState, setReadyState] = useState<ReadyState>(ReadyState.UNINSTANTIATED);
  const [lastMessage, setLastMessage] = useState<MessageEvent | null>(null);
  const latest = useRef(options);
  useIsomorphicLayoutEffect(() => {
    latest.current = options;
  });
  const socketRef = useRef<TetherSocket | null>(null);
  // What sendMessage(…, keep) was given before there was a socket (an async URL
  // resolving): sent once there is one.
  const early = useRef<Data[]>([]);

  const enabled = options.enabled !== false && url !== null;
  const clientOptions: Record<string, unknown> = { ...options };
  for (const key of HOOK_KEYS) delete clientOptions[key];
  if (options.protocols !== undefined) {
    clientOptions.protocols = typeof options.protocols === 'string' ? [options.protocols] : options.protocols;
  }
  const optionsKey = keyOf([clientOptions, options.queryParams ?? null]);

  useEffect(() => {
    if (!enabled || url === null) {
      setReadyState(ReadyState.UNINSTANTIATED);
      return undefined;
    }
    let done = false;
    let cleanup: (() => void) | null = null;
    const start = (resolved: string) => {
      if (done) return;
      const full = withQuery(resolved, latest.current.queryParams);
      const key = latest.current.share ? `shared:${full}\n${optionsKey}` : id;
      const s = acquire(key, () => new TetherSocket(full, undefined, clientOptions as TetherOptions));
      const sync = () => setReadyState(s.readyState as ReadyState);
      const onOpen = (e: Event) => {
        sync();
        latest.current.onOpen?.(e);
      };
      const onClose = (e: Event) => {
        sync();
        latest.current.onClose?.(e as CloseEvent);
      };
      const onError = (e: Event) => {
        sync();
        latest.current.onError?.(e);
      };
      const onMessage = (e: Event) => {
        const m = e as MessageEvent;
        latest.current.onMessage?.(m);
        if (latest.current.filter?.(m) ?? true) setLastMessage(m);
      };
      s.addEventListener('open', onOpen);
      s.addEventListener('close', onClose);
      s.addEventListener('error', onError);
      s.addEventListener('message', onMessage);
      socketRef.current = s;
      setSocket(s);
      sync();
      for (const data of early.current.splice(0)) s.send(data);
      cleanup = () => {
        s.removeEventListener('open', onOpen);
        s.removeEventListener('close', onClose);
        s.removeEventListener('error', onError);
        s.removeEventListener('message', onMessage);
        if (socketRef.current === s) socketRef.current = null;
        release(key);
      };
    };
    if (typeof url === 'string') start(url);
    else {
      Promise.resolve()
        .then(url)
        .then(start, (error: unknown) => {
          if (!done) latest.current.onError?.(Object.assign(new Event('error'), { error }));
        });
    }
    return () => {
      done = true;
      cleanup?.();
      setSocket(null);
      setReadyState(ReadyState.UNINSTANTIATED);
    };
    // `optionsKey` stands for the options' values and `clientOptions`.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [url, enabled, options.share, optionsKey, id]);

  const lastJsonMessage = useMemo(() => {
    if (!lastMessage || typeof lastMessage.data !== 'string') return null;
    try {
      return JSON.parse(lastMessage.data) as unknown;
    } catch {
      return null;
    }
  }, [lastMessage]);

  const api = useMemo(() => {
    const sendMessage: UseTetherResult['sendMessage'] = (data, keep = true) => {
      const s = socketRef.current;
      if (!keep && s?.readyState !== ReadyState.OPEN) return;
      if (s) s.send(data);
      else if (early.current.length < MAX_EARLY) early.current.push(data);
      else
        throw Object.assign(new Error(`more than ${MAX_EARLY} messages sent before the socket exists`), {
          kind: 'queue-full',
        });
    };
    return {
      sendMessage,
      sendJsonMessage: (value: unknown, keep = true) => sendMessage(JSON.stringify(value), keep),
      getSocket: () => socketRef.current,
    };
  }, []);

  return {
    ...api,
    lastMessage,
    lastJsonMessage,
    readyState: socket && enabled ? readyState : ReadyState.UNINSTANTIATED,
  };
}
