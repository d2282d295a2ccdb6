import { createContext, useContext, useEffect, useLayoutEffect, useRef, useState, type ReactNode } from 'react';

import { TetherClient, ready, type TetherOptions } from '../index.js';
import { ClientStore } from './store.js';

const StoreContext = createContext<ClientStore | null>(null);

// Layout effects run before any child's passive effect, so children can send from their
// own useEffect on mount. On a server neither kind runs, and React 18 warns about this one.
export const useIsomorphicLayoutEffect = typeof document === 'undefined' ? useEffect : useLayoutEffect;

/** Props of `<TetherProvider>`: a `url` (and `options`) to connect to, or a `client` made elsewhere. */
export type TetherProviderProps = { children?: ReactNode } & (
  | {
      /** Where to connect (`ws(s)://`, `http(s)://` or relative to the page). A new URL closes the connection and opens another. */
      url: string;
      /**
       * Options of the client (see `TetherOptions`). Read when the connection opens: a
       * change to a value (not merely a new object) reopens it. `tokenProvider` is always
       * called in its latest version; `WebSocket` and `fetch` are taken as first given.
       */
      options?: TetherOptions;
      client?: undefined;
    }
  | {
      /** A client you made and own: the provider shares it below and never closes it. */
      client: TetherClient;
      url?: undefined;
      options?: undefined;
    }
);

/**
 * Opens one connection for everything below it, kept across re-renders and route
 * changes, and closes it when unmounted. React StrictMode's double mount neither opens a
 * second socket nor closes and reopens the first.
 *
 * ```tsx
 * <TetherProvider url="wss://example.com/ws" options={{ protocol: true }}>
 *   <App />
 * </TetherProvider>
 * ```
 */
export function TetherProvider(props: TetherProviderProps) {
  const { url, options, client, children } = props;
  const [store] = useState(() => new ClientStore(client));
  const latest = useRef(options);
  useIsomorphicLayoutEffect(() => {
    latest.current = options;
  });
  const key = client ? null : connectionKey(url, options);
  // Bumped once the WebAssembly is loaded, when it was not at the first try; a failure
  // to load it is thrown from here, to the nearest error boundary.
  const [loads, setLoads] = useState(0);
  const [failure, setFailure] = useState<{ error: unknown } | null>(null);
  if (failure) throw failure.error;
  useIsomorphicLayoutEffect(() => {
    if (client) {
      store.show(client);
      return () => store.hide();
    }
    if (key === null || url === undefined) return undefined;
    try {
      store.acquire(key, () => new TetherClient(url, withLatestTokenProvider(options, latest)));
    } catch (e) {
      // In a browser before `ready()`: open it once loaded (in Node it loads at once).
      if ((e as { kind?: unknown }).kind !== 'not-ready') throw e;
      let live = true;
      ready().then(
        () => live && setLoads((n) => n + 1),
        (error: unknown) => live && setFailure({ error }),
      );
      return () => {
        live = false;
      };
    }
    return () => store.release();
    // `key` stands for `url` and `options`: a new options object alone reopens nothing.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [store, client, key, loads]);
  return <StoreContext.Provider value={store}>{children}</StoreContext.Provider>;
}

/** The store of the nearest provider; throws outside one. */
export function useStore(hook: string): ClientStore {
  const store = useContext(StoreContext);
  if (!store) throw new Error(`${hook} must be used inside <TetherProvider>`);
  return store;
}

/** What a connection was opened with: the URL and every option that is a value. */
function connectionKey(url: string | undefined, options: TetherOptions | undefined): string {
  return `${url}\n${JSON.stringify(options ?? {}, (_, value: unknown) =>
    typeof value === 'function' ? undefined : typeof value === 'bigint' ? `${value}n` : value,
  )}`;
}

function withLatestTokenProvider(
  options: TetherOptions | undefined,
  latest: { current: TetherOptions | undefined },
): TetherOptions | undefined {
  const first = options?.tokenProvider;
  if (!first) return options;
  return { ...options, tokenProvider: () => (latest.current?.tokenProvider ?? first)() };
}
