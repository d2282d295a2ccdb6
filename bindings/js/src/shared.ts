// SharedTetherClient: one connection for every tab of an origin that uses the same URL
// (and share key). One tab, the leader, holds the connection (elected with the Web Locks
// API: the lock is held for the tab's life, and the browser gives it to the next tab in
// line when the leader's document goes away); the others, followers, talk to it over a
// BroadcastChannel: their sends go through the leader, and the leader broadcasts every
// message, every event and its state, quality, metrics and health to them.
//
// Handoff without loss (protocol mode): after every task in which something happened the
// leader broadcasts its session (`client.handoff()`: session id, secret, sequence numbers,
// unacknowledged and unsent messages, and which tab sent each). The tab that gets the lock
// next resumes that session (`resume` option): the server resends what it has not taken,
// it resends what the server lacks under the same numbers (the server drops repeats), and
// sends again what a follower asked for that no session snapshot showed.
import { TetherClient, ready, type TetherEventMap, type TetherOptions, type TetherSessionHandoff } from './index.js';

type Events = TetherEventMap;
type Handler<K extends keyof Events> = (value: Events[K]) => void;
type Data = Parameters<TetherClient['send']>[0];
type Metrics = ReturnType<TetherClient['metrics']>;
type Health = ReturnType<TetherClient['health']>;

/** Options of a shared client: the client's, and how tabs find each other. */
export interface SharedTetherOptions extends TetherOptions {
  /**
   * Share one connection between the tabs of this origin that use the same URL and key
   * (ignored, as false, where the browser lacks Web Locks or BroadcastChannel). In the
   * React provider the default is true when the options name no user of their own (no
   * `tokenProvider`, no `auth`) or give a `shareKey`, else false: tabs with tokens of
   * different users must not share. `false`: this tab has a connection of its own.
   */
  shareAcrossTabs?: boolean;
  /** Tells apart connections to the same URL that must not be shared (e.g. the user's id). Default ''. */
  shareKey?: string;
}

/** Who sent a retained message: a tab, and the id that tab's `send` returned. */
interface Owner {
  tab: string;
  id: number;
}

type Wire =
  | { type: 'hello'; from: string }
  | { type: 'bye'; from: string }
  | { type: 'send'; from: string; id: number; data: Data }
  | { type: 'accepted'; to: string; id: number }
  | { type: 'outcome'; to: string; id: number; event: 'delivered' | 'dropped'; value: Events['dropped'] }
  | { type: 'event'; event: keyof Events; value: unknown }
  | { type: 'status'; status: Status; session: TetherSessionHandoff | null; owners: (Owner | null)[] };

interface Status {
  state: TetherClient['state'];
  quality: TetherClient['quality'];
  metrics: Metrics;
  health: Health;
  tabs: number;
}

/** A follower's figures before the leader's first status: nothing measured yet. */
function initialMetrics(): Metrics {
  return {
    state: 'connecting',
    attempt: 0,
    reconnects: 0,
    uptimeMs: null,
    totalUptimeMs: 0,
    lastCloseCode: null,
    lastCloseReason: null,
    rttMs: null,
    rttMeanMs: null,
    jitterMs: null,
    loss: 0,
    quality: null,
    reliability: 0,
    messagesIn: 0,
    messagesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    queueDepth: 0,
    queueBytes: 0,
    unreadBytesPeak: 0,
    readingPaused: false,
    fallbackActive: false,
    terminalReason: null,
  } as Metrics;
}

/** Whether this platform can share: Web Locks and BroadcastChannel (browsers in a secure context). */
export function canShareAcrossTabs(): boolean {
  const nav = (globalThis as { navigator?: { locks?: unknown } }).navigator;
  return typeof BroadcastChannel === 'function' && !!nav?.locks && typeof window === 'object';
}

const EVENTS_BROADCAST: (keyof Events)[] = [
  'state',
  'quality',
  'reconnecting',
  'fallback',
  'error',
  'stopped',
  'disconnected',
  'sessionReset',
  'tokenRefreshed',
];

/**
 * A client with TetherClient's API whose connection is shared by the tabs of the origin
 * (see the package README, "One connection for every tab"). Message ids are this tab's:
 * `delivered` and `dropped` name the ids its own `send` returned, whichever tab wrote them.
 *
 * ```js
 * await ready();
 * const client = new SharedTetherClient('wss://example.com/ws', { protocol: true, shareKey: userId });
 * client.on('message', (m) => console.log(m)); // in every tab
 * client.send('hello');                        // through the leader tab
 * ```
 */
export class SharedTetherClient {
  readonly #url: string;
  readonly #options: TetherOptions;
  readonly #tab = Math.random().toString(36).slice(2) + Date.now().toString(36);
  readonly #channel: BroadcastChannel;
  readonly #listeners = new Map<keyof Events, Set<(v: unknown) => void>>();
  #client: TetherClient | null = null;
  #closed = false;
  #release: (() => void) | null = null;
  #nextId = 0;
  /** Sends not yet taken by a leader (follower), or by this leader's client. */
  #unaccepted = new Map<number, Data>();
  /** Confirmations this tab waits for, by its own id. */
  #confirm = new Map<number, { resolve: () => void; reject: (e: unknown) => void }>();
  /** Leader: who sent each message its client retains, by the client's id (in send order). */
  #owners = new Map<number, Owner | null>();
  /** The last session snapshot a leader broadcast, and messages seen since. */
  #session: TetherSessionHandoff | null = null;
  #sessionOwners: (Owner | null)[] = [];
  #messagesSince = 0;
  #status: Status;
  #scheduled = false;
  /** Other tabs in the group (as the leader knows them). */
  #tabs = new Set<string>();
  /** Leader: the highest id accepted from each tab (a resent send is taken once). */
  #acceptedUpTo = new Map<string, number>();
  #onPageHide = () => this.#post({ type: 'bye', from: this.#tab });

  constructor(url: string, options: SharedTetherOptions = {}) {
    const { shareAcrossTabs: _share, shareKey = '', ...rest } = options;
    this.#url = new URL(url, globalThis.location?.href).href;
    this.#options = rest;
    const name = `tether:${globalThis.location?.origin ?? ''}|${this.#url}|${shareKey}`;
    this.#status = {
      state: 'connecting',
      quality: null,
      metrics: initialMetrics(),
      health: { alerts: [], recommendations: [] } as Health,
      tabs: 1,
    };
    this.#channel = new BroadcastChannel(name);
    this.#channel.onmessage = (e: MessageEvent<Wire>) => this.#receive(e.data);
    this.#post({ type: 'hello', from: this.#tab });
    globalThis.addEventListener?.('pagehide', this.#onPageHide);
    void navigator.locks.request(name, () => {
      if (this.#closed) return undefined;
      this.#lead();
      return new Promise<void>((resolve) => (this.#release = resolve));
    });
  }

  /** Whether this tab holds the connection. */
  get isLeader(): boolean {
    return this.#client !== null;
  }

  /** How many tabs share the connection (as the leader last counted). */
  get tabs(): number {
    return this.#client ? this.#tabs.size + 1 : this.#status.tabs;
  }

  get state(): TetherClient['state'] {
    return this.#client?.state ?? this.#status.state;
  }
  get quality(): TetherClient['quality'] {
    return this.#client ? this.#client.quality : this.#status.quality;
  }
  /** The id the connection presents to the server, in hexadecimal ('' before a follower heard of a session). */
  get clientId(): string {
    if (this.#client) return this.#client.clientId;
    return this.#session ? BigInt(this.#session.clientId).toString(16) : '';
  }
  /** The leader's figures (a follower's are as of the leader's last status), with `sharedTabs`: how many tabs share the connection. */
  metrics(): Metrics & { sharedTabs: number } {
    const tabs = this.#client ? this.#tabs.size + 1 : this.#status.tabs;
    return { ...(this.#client?.metrics() ?? this.#status.metrics), sharedTabs: tabs };
  }
  health(): Health {
    return this.#client?.health() ?? this.#status.health;
  }

  on<K extends keyof Events>(event: K, handler: Handler<K>): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    const h = handler as (v: unknown) => void;
    set.add(h);
    return () => set.delete(h);
  }

  /** Sends `data` (through the leader tab when this one follows); returns this tab's id for it. */
  send(data: Data): number {
    if (this.#closed) throw Object.assign(new Error('the client is closed'), { kind: 'stopped' });
    const id = ++this.#nextId;
    this.#unaccepted.set(id, data);
    this.#forward(id, data);
    return id;
  }

  /** Resolves with this tab's id for `data` once the server acknowledged it (protocol mode), whichever tab wrote it. */
  sendConfirmed(data: Data): Promise<number> {
    return new Promise((resolve, reject) => {
      const id = this.send(data);
      this.#confirm.set(id, { resolve: () => resolve(id), reject });
    });
  }

  reconnect(): void {
    this.#client?.reconnect();
  }

  /** Leaves the group: a leader hands the session to the next tab (its socket is dropped, the session kept). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#post({ type: 'bye', from: this.#tab });
    this.#closed = true;
    globalThis.removeEventListener?.('pagehide', this.#onPageHide);
    this.#channel.close();
    const client = this.#client;
    this.#client = null;
    // Closed at once, not lingering to deliver what it holds: that is the next leader's
    // now, and a client still trying would take the session back from it.
    void client
      ?.closeNow()
      .catch(() => {})
      .finally(() => client.free());
    this.#release?.();
  }

  #emit(event: keyof Events, value: unknown): void {
    for (const h of [...(this.#listeners.get(event) ?? [])]) h(value);
  }

  #post(message: Wire): void {
    if (!this.#closed) this.#channel.postMessage(message);
  }

  #forward(id: number, data: Data): void {
    if (this.#client) {
      this.#accept({ tab: this.#tab, id }, data);
    } else {
      this.#post({ type: 'send', from: this.#tab, id, data });
    }
  }

  /** Leader: writes a message for `owner` and remembers who it is for. */
  #accept(owner: Owner, data: Data): void {
    if ((this.#acceptedUpTo.get(owner.tab) ?? 0) >= owner.id) return;
    this.#acceptedUpTo.set(owner.tab, owner.id);
    const client = this.#client!;
    const id = client.send(data);
    // Only protocol mode confirms (or drops) each message: the map forgets it then.
    if (this.#options.protocol === true) this.#owners.set(id, owner);
    if (owner.tab === this.#tab) this.#unaccepted.delete(owner.id);
    else this.#post({ type: 'accepted', to: owner.tab, id: owner.id });
    this.#schedule();
  }

  #receive(m: Wire): void {
    if (this.#closed) return;
    switch (m.type) {
      case 'hello':
        // A tab joined (it learns the status at once), or took the lead: what this tab
        // sent that no leader took, nor any session holds, goes to it again.
        this.#tabs.add(m.from);
        if (this.#client) {
          this.#schedule();
          return;
        }
        for (const [id, data] of [...this.#unaccepted]) {
          if (this.#inSession(id)) this.#unaccepted.delete(id);
          else this.#post({ type: 'send', from: this.#tab, id, data });
        }
        return;
      case 'bye':
        this.#tabs.delete(m.from);
        if (this.#client) this.#schedule();
        return;
      case 'send':
        this.#tabs.add(m.from);
        if (this.#client) this.#accept({ tab: m.from, id: m.id }, m.data);
        return;
      case 'accepted':
        if (m.to === this.#tab) this.#unaccepted.delete(m.id);
        return;
      case 'outcome':
        if (m.to === this.#tab) this.#outcome(m.id, m.event, m.value);
        return;
      case 'event':
        if (m.event === 'message') this.#messagesSince += 1;
        if (m.event === 'state') this.#status.state = (m.value as Events['state']).to;
        this.#emit(m.event, m.value);
        return;
      case 'status':
        this.#status = m.status;
        if (m.session) {
          this.#session = m.session;
          this.#sessionOwners = m.owners;
          this.#messagesSince = 0;
        }
        return;
    }
  }

  /** Whether the last session snapshot holds this tab's message `id`. */
  #inSession(id: number): boolean {
    return this.#sessionOwners.some((o) => o?.tab === this.#tab && o.id === id);
  }

  #outcome(id: number, event: 'delivered' | 'dropped', value: Events['dropped']): void {
    const waiter = this.#confirm.get(id);
    this.#confirm.delete(id);
    if (event === 'delivered') {
      this.#emit('delivered', { id });
      waiter?.resolve();
    } else {
      this.#emit('dropped', { ...value, id });
      waiter?.reject(Object.assign(new Error(`message ${id} dropped (${value.reason})`), { kind: value.reason }));
    }
  }

  /** This tab got the lock: it takes the session the last leader broadcast, or starts one. */
  #lead(): void {
    const session = this.#session;
    let resume: TetherSessionHandoff | undefined;
    if (session) {
      // What the old leader broadcast after its last snapshot was taken by the application.
      resume = { ...session, recvSeq: String(BigInt(session.recvSeq) + BigInt(this.#messagesSince)) };
    }
    let client: TetherClient;
    try {
      client = new TetherClient(this.#url, resume ? { ...this.#options, resume } : this.#options);
    } catch (e) {
      // In a browser before `ready()`: lead once the WebAssembly is in.
      if ((e as { kind?: unknown }).kind !== 'not-ready') throw e;
      void ready().then(() => !this.#closed && this.#lead());
      return;
    }
    this.#client = client;
    // The retained messages got ids 1, 2, … in the snapshot's order.
    if (resume) {
      this.#sessionOwners.forEach((owner, i) => {
        this.#owners.set(i + 1, owner);
        if (owner) this.#acceptedUpTo.set(owner.tab, Math.max(this.#acceptedUpTo.get(owner.tab) ?? 0, owner.id));
      });
    }
    for (const event of EVENTS_BROADCAST) {
      client.on(event, (value) => {
        if (event === 'state') this.#status.state = (value as Events['state']).to;
        this.#emit(event, value);
        this.#post({ type: 'event', event, value });
        this.#schedule();
      });
    }
    client.on('message', (value) => {
      this.#emit('message', value);
      this.#post({ type: 'event', event: 'message', value });
      this.#schedule();
    });
    for (const event of ['delivered', 'dropped'] as const) {
      client.on(event, (value) => {
        const owner = this.#owners.get(value.id);
        this.#owners.delete(value.id);
        this.#schedule();
        if (!owner) return;
        const v = value as Events['dropped'];
        if (owner.tab === this.#tab) this.#outcome(owner.id, event, v);
        else this.#post({ type: 'outcome', to: owner.tab, id: owner.id, event, value: v });
      });
    }
    // Sends of this tab no leader took (and no snapshot holds) go now, in order.
    for (const [id, data] of [...this.#unaccepted]) {
      if (this.#inSession(id)) this.#unaccepted.delete(id);
      else this.#accept({ tab: this.#tab, id }, data);
    }
    // Followers' sends the old leader never took: they send them again on this hello.
    if (this.#status.state !== client.state) this.#emit('state', { from: this.#status.state, to: client.state });
    this.#status.state = client.state;
    this.#post({ type: 'hello', from: this.#tab });
    this.#schedule();
  }

  /** Leader: the status and the session go out once per task in which something happened. */
  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      const client = this.#client;
      if (!client || this.#closed) return;
      this.#status = {
        state: client.state,
        quality: client.quality,
        metrics: client.metrics(),
        health: client.health(),
        tabs: this.#tabs.size + 1,
      };
      const session = client.handoff();
      this.#post({ type: 'status', status: this.#status, session, owners: [...this.#owners.values()] });
    });
  }
}
