import {
  createContext,
  useContext,
  useEffect,
  useLayoutEffect,
  useMemo,
  useRef,
  useState,
  type ReactNode,
} from 'react';

import {
  SharedTetherClient,
  TetherClient,
  canShareAcrossTabs,
  ready,
  type SharedTetherOptions,
  type TetherOptions,
} from '../index.js';
import { ClientStore } from './store.js';

const StoreContext = createContext<ClientStore | null>(null);
// The named providers above, by name (each named provider adds itself to its parent's).
const NamedContext = createContext<ReadonlyMap<string, ClientStore>>(new Map());

// Layout effects run before any child's passive effect, so children can send from their
// own useEffect on mount. On a server neither kind runs, and React 18 warns about this one.
export const useIsomorphicLayoutEffect = typeof document === 'undefined' ? useEffect : useLayoutEffect;

/** Props of `<TetherProvider>`: a `url` (and `options`) to connect to, or a `client` made elsewhere. */
export type TetherProviderProps = {
  children?: ReactNode;
  /**
   * A name for this connection: components below any number of other providers reach it
   * with `<TetherScope name="…">` (every hook inside uses it) or `useTetherClient(name)`.
   */
  name?: string;
} & (
  | {
      /** Where to connect (`ws(s)://`, `http(s)://` or relative to the page). A new URL closes the connection and opens another. */
      url: string;
      /**
       * Options of the client (see `TetherOptions`). Read when the connection opens: a
       * change to a value (not merely a new object) reopens it. `tokenProvider` is always
       * called in its latest version; `WebSocket` and `fetch` are taken as first given.
       */
      options?: SharedTetherOptions;
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
  const { url, options, client, children, name } = props;
  const parentNames = useContext(NamedContext);
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
      store.acquire(key, () => open(url, withLatestTokenProvider(options, latest)));
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
  const names = useMemo(
    () => (name === undefined ? parentNames : new Map(parentNames).set(name, store)),
    [name, parentNames, store],
  );
  return (
    <NamedContext.Provider value={names}>
      <StoreContext.Provider value={store}>{children}</StoreContext.Provider>
    </NamedContext.Provider>
  );
}

/**
 * Makes the provider named `name` (above it, however many other providers are in
 * between) the one every hook and component below it uses.
 *
 * ```tsx
 * <TetherProvider name="chat" url="wss://example.com/chat">
 *   <TetherProvider name="feed" url="wss://example.com/feed">
 *     <Feed />  // the nearest: feed
 *     <TetherScope name="chat"><Chat /></TetherScope>
 *   </TetherProvider>
 * </TetherProvider>
 * ```
 */
export function TetherScope({ name, children }: { name: string; children?: ReactNode }) {
  const store = useStore('<TetherScope>', name);
  return <StoreContext.Provider value={store}>{children}</StoreContext.Provider>;
}

/** The store of the nearest provider, or of the one named `name`; throws when there is none. */
export function useStore(hook: string, name?: string): ClientStore {
  const nearest = useContext(StoreContext);
  const named = useContext(NamedContext);
  const store = name === undefined ? nearest : (named.get(name) ?? null);
  if (!store) {
    throw new Error(
      name === undefined
        ? `${hook} must be used inside <TetherProvider>`
        : `${hook}: no <TetherProvider name=${JSON.stringify(name)}> above`,
    );
  }
  return store;
}

/**
 * The client for `options`: shared with the other tabs of the origin (SharedTetherClient)
 * where the browser can and sharing is asked for or safe, else a tab's own. Without
 * `shareAcrossTabs`, tabs share when the connection names no user of its own (no token
 * provider, no auth: every tab of the origin is the same user, by its cookies) or when
 * `shareKey` says whose it is; with a token provider and no key, tabs may belong to
 * different users (tokens kept per tab), so each keeps its own connection.
 */
function open(url: string, options: SharedTetherOptions | undefined): TetherClient {
  const { shareAcrossTabs, shareKey, ...own } = options ?? {};
  const safe = (own.tokenProvider == null && own.auth == null) || shareKey !== undefined;
  if ((shareAcrossTabs ?? safe) && canShareAcrossTabs()) {
    return new SharedTetherClient(url, options) as unknown as TetherClient;
  }
  return new TetherClient(url, own);
}

/** What a connection was opened with: the URL and every option that is a value. */
function connectionKey(url: string | undefined, options: TetherOptions | undefined): string {
  return `${url}\n${JSON.stringify(options ?? {}, (_, value: unknown) =>
    typeof value === 'function' ? undefined : typeof value === 'bigint' ? `${value}n` : value,
  )}`;
}

function withLatestTokenProvider(
  options: SharedTetherOptions | undefined,
  latest: { current: SharedTetherOptions | undefined },
): SharedTetherOptions | undefined {
  const first = options?.tokenProvider;
  if (!first) return options;
  return { ...options, tokenProvider: () => (latest.current?.tokenProvider ?? first)() };
}
