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
// sends again what a follower asked for that no session snapshot showed. A lock grant can
// overtake the old leader's last posts: the next tab leads once it read them (up to the
// old leader's bye), or once that leader was silent for SILENT_MS (gone without a bye).
//
// A leader told it is about to be frozen (page lifecycle `freeze` on the document) hands
// off as a close does and follows; on `resume` it joins again as a follower. A frozen
// leader that was not told keeps its lock. Every tab beats on the channel (BEAT_MS); a leader not
// heard from for SILENT_MS is taken over by one follower (the one that gets the lock
// `takeover|<epoch>`, asked for once per leadership) that steals the lock. Every message
// carries the sender's epoch (leaderships counted), so what a stale leader says is ignored,
// and it steps down, quietly, as soon as it hears of a newer epoch or loses the lock. A
// leader that finds its clock jumped (it was frozen) holds what it would write or report
// until it knows it still leads, so nothing the new leader took is sent or shown twice.
// A tab stopped for a while misses what was posted meanwhile: the leader numbers its posts
// (per leadership) and keeps the last RING of them, and a tab that sees a gap in the
// numbers asks for the rest.
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

/** How often every tab says it is alive, and after how long a silent tab (or leader) is gone. */
const BEAT_MS = 1000;
const SILENT_MS = 5000;
const RING = 1024;
/** And at most about this many bytes of messages (a replay is one post of them all). */
const RING_BYTES = 8 << 20;
/** What a leader posts unnumbered: the next one says the same, newer. */
const UNNUMBERED = ['beat', 'status', 'replayed'];
const FOLLOWERS_SAY = ['hello', 'bye', 'send', 'replay'];

/** About how much a kept post weighs: its message's bytes (UTF-16 for text), and a little. */
function weight(w: Wire): number {
  const v = w.type === 'event' ? w.value : undefined;
  if (typeof v === 'string') return 64 + v.length * 2;
  if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) return 64 + v.byteLength;
  return 64;
}

/** A leader's own send its client had not taken when it left (it held it, in doubt): the next leader writes it. */
interface Held {
  id: number;
  data: Data;
  wait?: boolean;
}

/** Who sent a retained message: a tab, and the id that tab's `send` returned. */
interface Owner {
  tab: string;
  id: number;
}

/** What a tab posts; `#post` adds who (`from`), its epoch (`e`) and whether it leads (`lead`). */
type Body =
  | { type: 'hello' }
  | { type: 'beat' }
  | { type: 'bye'; sends?: Held[]; base?: number }
  | { type: 'send'; id: number; data: Data; wait?: boolean; base?: number }
  | { type: 'accepted'; to: string; id: number }
  | { type: 'refused'; to: string; id: number; kind: string; message: string }
  | { type: 'outcome'; to: string; id: number; event: 'delivered' | 'dropped'; value: Events['dropped'] }
  | { type: 'event'; event: keyof Events; value: unknown }
  | { type: 'status'; status: Status; session: TetherSessionHandoff | null; owners: (Owner | null)[] }
  | { type: 'replay'; after: number }
  | { type: 'replayed'; to: string; items: Wire[] };
/** `n`: a leader's posts are numbered (a beat, a status or a replay carries the last number). */
type Wire = Body & { from: string; e: number; lead: boolean; n: number };

/** Who waits on a message: `sendConfirmed` (its outcome), `sendWait` (a leader took it), `flush` (its outcome, or taken in plain mode). */
interface Waiter {
  by: 'confirm' | 'wait' | 'flush';
  resolve: (id: number) => void;
  reject: (e: unknown) => void;
}

const fail = (message: string, fields: object) => Object.assign(new Error(message), fields);

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

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isText = (v: unknown): v is string => typeof v === 'string';
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
const isDigits = (v: unknown): boolean => isText(v) && /^[0-9]{1,20}$/.test(v);
const isData = (v: unknown): boolean => isText(v) || v instanceof Uint8Array;

/** A session another client could resume: a forged one would leave the next leader without a client. */
function isSession(v: unknown): v is TetherSessionHandoff {
  return (
    isObject(v) &&
    ['clientId', 'session', 'lastTransport', 'recvSeq', 'sendSeq'].every((k) => isDigits(v[k])) &&
    isText(v.secret) &&
    /^[0-9a-f]{32}$/i.test(v.secret) &&
    Array.isArray(v.unacknowledged) &&
    v.unacknowledged.every((u) => Array.isArray(u) && isDigits(u[0]) && isData(u[1])) &&
    Array.isArray(v.unsent) &&
    v.unsent.every(isData)
  );
}

/**
 * Whether `v` is a post some tab could have made. Any code of the origin can post on the
 * channel: what is not well formed is ignored (it neither throws nor takes a number).
 */
function isWire(v: unknown): v is Wire {
  if (!isObject(v) || !isText(v.from) || !isCount(v.e) || !isCount(v.n) || typeof v.lead !== 'boolean') return false;
  switch (v.type) {
    case 'hello':
    case 'beat':
      return true;
    case 'bye':
      return (
        (v.base === undefined || isCount(v.base)) &&
        (v.sends === undefined ||
          (Array.isArray(v.sends) &&
            v.sends.every(
              (h) => isObject(h) && isCount(h.id) && (h.wait === undefined || typeof h.wait === 'boolean'),
            )))
      );
    case 'send':
      return (
        isCount(v.id) &&
        (v.wait === undefined || typeof v.wait === 'boolean') &&
        (v.base === undefined || isCount(v.base))
      );
    case 'accepted':
      return isText(v.to) && isCount(v.id);
    case 'refused':
      return isText(v.to) && isCount(v.id) && isText(v.kind) && isText(v.message);
    case 'outcome':
      return isText(v.to) && isCount(v.id) && (v.event === 'delivered' || v.event === 'dropped') && isObject(v.value);
    case 'event':
      return (
        (v.event === 'message' || EVENTS_BROADCAST.includes(v.event as keyof Events)) &&
        (v.event !== 'state' || (isObject(v.value) && isText(v.value.to)))
      );
    case 'status':
      return (
        isObject(v.status) &&
        isText(v.status.state) &&
        isObject(v.status.metrics) &&
        isObject(v.status.health) &&
        isCount(v.status.tabs) &&
        (v.session === null || isSession(v.session)) &&
        Array.isArray(v.owners) &&
        v.owners.every((o) => o === null || (isObject(o) && isText(o.tab) && isCount(o.id)))
      );
    case 'replay':
      return isCount(v.after);
    case 'replayed':
      return isText(v.to) && Array.isArray(v.items);
    default:
      return false;
  }
}

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
  readonly #name: string;
  readonly #tab = Math.random().toString(36).slice(2) + Date.now().toString(36);
  readonly #channel: BroadcastChannel;
  readonly #listeners = new Map<keyof Events, Set<(v: unknown) => void>>();
  #client: TetherClient | null = null;
  /** Leader: what undoes its listeners on the client. */
  #off: (() => void)[] = [];
  #closed = false;
  /** Releases the lock this tab leads by; the lock `takeover|<epoch>` it holds. */
  #release: (() => void) | null = null;
  #releases: (() => void)[] = [];
  /** Whether this tab waits in line for the lock. */
  #queued = false;
  /**
   * The tab that leads the newest leadership this tab heard of, and whether it said bye.
   * A lock granted by a leader that left can overtake its last posts on the channel (its
   * last status, with what it wrote in its last task): the tab the lock goes to leads once
   * it has read them, up to its bye (`#granted`: leads then), or once that leader was
   * silent for SILENT_MS (it was gone without a bye).
   */
  #leader: string | null = null;
  #leaderGone = false;
  #granted: (() => void) | null = null;
  /** The sends a leader of this tab's epoch left with (its bye), for whichever tab leads next. */
  #orphans: { tab: string; base?: number; sends: Held[] } | null = null;
  /** The newest leadership this tab heard of (or, leading, its own). */
  #epoch = 0;
  /** When this follower last heard its leader; when this leader's clock last ticked. */
  #heard = Date.now();
  #tick = Date.now();
  readonly #timer: ReturnType<typeof setInterval>;
  /** Leader in doubt (its clock jumped, or its socket was replaced): what it holds back meanwhile. */
  #doubt: { held: (() => void)[]; timer: ReturnType<typeof setTimeout> } | null = null;
  #nextId = 0;
  /** Leader: its last post's number and its last posts; every tab: the last leader post it took (epoch, number). */
  #n = 0;
  #ring: Wire[] = [];
  #ringBytes = 0;
  #seen: { e: number; n: number } | null = null;
  /** The last number a follower asked a replay after (once per beat), and the number the last status came after. */
  #asked = -1;
  #statusN = 0;
  /** Sends not yet taken by a leader (follower), or by this leader's client. */
  #unaccepted = new Map<number, { data: Data; wait?: boolean }>();
  /** This tab's messages whose outcome it waits for, and who waits. */
  #open = new Map<number, Waiter[]>();
  /** Leader: who sent each message its client retains, by the client's id. */
  #owners = new Map<number, Owner | null>();
  /** The last session snapshot a leader broadcast, and messages seen since. */
  #session: TetherSessionHandoff | null = null;
  #sessionOwners: (Owner | null)[] = [];
  #messagesSince = 0;
  #status: Status;
  #scheduled = false;
  /** Other tabs in the group, and when each was last heard. */
  #tabs = new Map<string, number>();
  /**
   * Leader: what it took from each tab, so that a send posted again is taken once: every
   * id up to `upTo` (below the lowest the tab still waits for), and those above it. A tab's
   * sends may come out of order (one posted to a frozen leader, posted again after a later
   * one reached the next leader): a single highest id would drop the older.
   */
  #accepted = new Map<string, { upTo: number; ids: Set<number> }>();
  #onPageHide = () => this.#post({ type: 'bye' });
  /** Frozen (page lifecycle `freeze`, until `resume`): it neither leads nor waits in line for the lock. */
  #frozen = false;
  /** A leader about to be frozen hands off as a close does, and follows from then on. */
  #onFreeze = () => {
    this.#frozen = true;
    const client = this.#client;
    if (!client || this.#closed) return;
    this.#postStatus(client);
    this.#post({ type: 'bye' });
    this.#stepDown();
  };
  /** Thawed: it joins again as a follower (what it sent that no leader took goes again). */
  #onResume = () => {
    if (!this.#frozen) return;
    this.#frozen = false;
    if (this.#closed || this.#client) return;
    this.#heard = Date.now();
    this.#post({ type: 'hello' });
    if (!this.#queued && !this.#release) this.#request(false);
    this.#resend();
  };

  constructor(url: string, options: SharedTetherOptions = {}) {
    if (!canShareAcrossTabs()) {
      throw fail('tabs cannot share here: no Web Locks or BroadcastChannel (see canShareAcrossTabs)', {
        kind: 'cannot-share',
      });
    }
    const { shareAcrossTabs: _share, shareKey = '', ...rest } = options;
    this.#url = new URL(url, globalThis.location?.href).href;
    this.#options = rest;
    // Tabs in protocol mode and tabs without it do not share: a follower's sendConfirmed
    // waits for an acknowledgement that a plain leader never gets.
    const mode = rest.protocol === true ? 'protocol' : 'plain';
    this.#name = `tether:${globalThis.location?.origin ?? ''}|${this.#url}|${shareKey}|${mode}`;
    this.#status = {
      state: 'connecting',
      quality: null,
      metrics: initialMetrics(),
      health: { alerts: [], recommendations: [] } as Health,
      tabs: 1,
    };
    this.#channel = new BroadcastChannel(this.#name);
    this.#channel.onmessage = (e: MessageEvent<unknown>) => {
      if (isWire(e.data)) this.#receive(e.data);
    };
    this.#post({ type: 'hello' });
    globalThis.addEventListener?.('pagehide', this.#onPageHide);
    globalThis.document?.addEventListener?.('freeze', this.#onFreeze);
    globalThis.document?.addEventListener?.('resume', this.#onResume);
    this.#timer = setInterval(() => this.#beat(), BEAT_MS);
    this.#request(false);
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
    return { ...(this.#client?.metrics() ?? this.#status.metrics), sharedTabs: this.tabs };
  }
  health(): Health {
    return this.#client?.health() ?? this.#status.health;
  }
  /** The leader's session (`TetherClient.handoff`); `null` in a follower. */
  handoff(): TetherSessionHandoff | null {
    return this.#client?.handoff() ?? null;
  }

  on<K extends keyof Events>(event: K, handler: Handler<K>): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    const h = handler as (v: unknown) => void;
    set.add(h);
    return () => set.delete(h);
  }

  /**
   * Sends `data` (through the leader tab when this one follows); returns this tab's id for
   * it. Throws as `TetherClient.send` in the leader; a follower learns of a refusal
   * (`queue-full`, `too-large`) from the leader: `sendConfirmed`, `sendWait` and `flush`
   * reject with that error, and a plain `send` reports it as an `error` event (with `id`).
   */
  send(data: Data): number {
    return this.#send(data, false);
  }

  /** Resolves with this tab's id for `data` once the server acknowledged it (protocol mode), whichever tab wrote it. */
  sendConfirmed(data: Data): Promise<number> {
    if (this.#options.protocol !== true) {
      return Promise.reject(fail('sendConfirmed needs protocol: true', { kind: 'unconfirmable' }));
    }
    try {
      return this.#wait(this.#send(data, false), 'confirm');
    } catch (e) {
      return Promise.reject(fail((e as Error).message, { kind: 'rejected', cause: e }));
    }
  }

  /** Sends `data` once the leader's queue has room (instead of `queue-full`); resolves with this tab's id once a leader took it. */
  sendWait(data: Data): Promise<number> {
    try {
      return this.#wait(this.#send(data, true), 'wait');
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Resolves once every message this tab sent so far is acknowledged (protocol mode) or taken by the leader (plain mode). */
  async flush(): Promise<void> {
    await Promise.all([...this.#open.keys()].map((id) => this.#wait(id, 'flush')));
  }

  reconnect(): void {
    this.#client?.reconnect();
  }

  /** Leaves the group: a leader hands the session to the next tab (its socket is dropped, the session kept). */
  async close(): Promise<void> {
    if (this.#closed) return;
    // A leader's session as of now (what it wrote in this task too), for the next leader.
    if (this.#client) this.#postStatus(this.#client);
    // Its own sends its client did not take (held while it doubted it leads, or waiting
    // for room): never written, they go with its bye to the next leader.
    const sends = this.#client ? [...this.#unaccepted].map(([id, { data, wait }]) => ({ id, data, wait })) : [];
    this.#post(sends.length ? { type: 'bye', sends, base: this.#base() } : { type: 'bye' });
    this.#closed = true;
    clearInterval(this.#timer);
    globalThis.removeEventListener?.('pagehide', this.#onPageHide);
    globalThis.document?.removeEventListener?.('freeze', this.#onFreeze);
    globalThis.document?.removeEventListener?.('resume', this.#onResume);
    this.#channel.close();
    // Closed at once, not lingering to deliver what it holds: that is the next leader's
    // now, and a client still trying would take the session back from it.
    this.#stepDown();
    // The lock too when it has no client yet (before `ready()`, or none could be made).
    this.#release?.();
    this.#release = null;
    for (const release of this.#releases) release();
    // This tab no longer hears what becomes of its messages (the next leader may deliver
    // them): as TetherClient.closeNow, what waits settles now.
    const protocol = this.#options.protocol === true;
    for (const [id, waiters] of [...this.#open]) {
      this.#open.delete(id);
      const taken = !this.#unaccepted.delete(id);
      if (protocol) this.#emit('dropped', { id, reason: 'unconfirmed' });
      const dropped = fail(`message ${id} dropped (unconfirmed)`, { kind: 'dropped', reason: 'unconfirmed' });
      for (const w of waiters) {
        if (w.by === 'wait') {
          if (taken) w.resolve(id);
          else w.reject(fail('the client is closed', { kind: 'stopped' }));
        } else if (protocol) w.reject(dropped);
        else w.resolve(id);
      }
    }
  }

  /** This tab's messages a leader took whose outcome it may have missed: dropped as unconfirmed (they may have arrived). */
  #unsure(): void {
    if (this.#options.protocol !== true) return;
    for (const [id, waiters] of [...this.#open]) {
      if (this.#unaccepted.has(id)) continue;
      this.#open.delete(id);
      this.#emit('dropped', { id, reason: 'unconfirmed' });
      const dropped = fail(`message ${id} dropped (unconfirmed)`, { kind: 'dropped', reason: 'unconfirmed' });
      for (const w of waiters) if (w.by !== 'wait') w.reject(dropped);
    }
  }

  /** As `close`: a shared client never lingers, the next tab delivers what it holds. */
  closeNow(): Promise<void> {
    return this.close();
  }

  free(): void {
    void this.close();
  }

  [Symbol.dispose](): void {
    this.free();
  }

  #send(data: Data, wait: boolean): number {
    if (this.#closed) throw fail('the client is closed', { kind: 'stopped' });
    const id = ++this.#nextId;
    this.#unaccepted.set(id, { data, wait });
    this.#open.set(id, []);
    if (!this.#client) this.#post({ type: 'send', id, data, wait, base: this.#base() });
    else if (this.#doubt || wait) this.#when(() => this.#accept({ tab: this.#tab, id }, data, wait));
    else this.#accept({ tab: this.#tab, id }, data, wait);
    return id;
  }

  /** Settles when `id`'s event that `by` waits for comes (at once if it is past). */
  #wait(id: number, by: Waiter['by']): Promise<number> {
    const waiters = this.#open.get(id);
    if (!waiters || (by === 'wait' && !this.#unaccepted.has(id))) return Promise.resolve(id);
    return new Promise((resolve, reject) => waiters.push({ by, resolve, reject }));
  }

  /**
   * What became of this tab's message `id`: taken by a leader, delivered, dropped
   * (`error`: kind `dropped`) or refused (`error`: the kind `send` throws). Rejects as
   * TetherClient does: `sendConfirmed` with kind `rejected` (the refusal its `cause`) or
   * `dropped`, `sendWait` with the refusal, `flush` with `dropped`.
   */
  #settle(id: number, event: 'accepted' | 'delivered' | 'dropped' | 'refused', error?: Error): void {
    this.#unaccepted.delete(id);
    const waiters = this.#open.get(id) ?? [];
    const done = event !== 'accepted' || this.#options.protocol !== true;
    if (done) this.#open.delete(id);
    else
      this.#open.set(
        id,
        waiters.filter((w) => w.by !== 'wait'),
      );
    if (event === 'refused' && !waiters.some((w) => w.by !== 'flush')) this.#emit('error', error);
    for (const w of waiters) {
      if (!done && w.by !== 'wait') continue;
      if (event === 'refused' && w.by === 'confirm') {
        w.reject(fail(`message refused: ${error!.message}`, { kind: 'rejected', cause: error }));
      } else if ((event === 'refused' && w.by === 'wait') || (event === 'dropped' && w.by !== 'wait')) w.reject(error);
      else w.resolve(id);
    }
  }

  #emit(event: keyof Events, value: unknown): void {
    for (const h of [...(this.#listeners.get(event) ?? [])]) h(value);
  }

  #post(body: Body): void {
    if (this.#closed) return;
    const lead = !!this.#client;
    const numbered = lead && !UNNUMBERED.includes(body.type);
    const wire = { ...body, from: this.#tab, e: this.#epoch, lead, n: numbered ? ++this.#n : this.#n } as Wire;
    if (numbered) {
      this.#seen = { e: this.#epoch, n: this.#n };
      this.#ring.push(wire);
      this.#ringBytes += weight(wire);
      while (this.#ring.length > RING || (this.#ringBytes > RING_BYTES && this.#ring.length > 1)) {
        this.#ringBytes -= weight(this.#ring.shift()!);
      }
    }
    this.#channel.postMessage(wire);
  }

  /** Every BEAT_MS: says this tab lives, forgets silent tabs, takes over from a silent leader. */
  #beat(): void {
    const now = Date.now();
    if (this.#client) {
      if (now - this.#tick > SILENT_MS / 2) this.#suspect();
      this.#tick = now;
    }
    this.#post({ type: 'beat' });
    this.#asked = -1;
    for (const [tab, heard] of this.#tabs) {
      if (now - heard > SILENT_MS) {
        this.#tabs.delete(tab);
        this.#schedule();
      }
    }
    if (this.#granted && now - this.#heard > SILENT_MS) this.#granted();
    if (!this.#client && !this.#closed && !this.#frozen && !this.#release && now - this.#heard > SILENT_MS) {
      // One takeover per leadership: the first follower to get this lock keeps it.
      const epoch = this.#epoch;
      void navigator.locks.request(`${this.#name}|takeover|${epoch}`, { ifAvailable: true }, (lock) => {
        if (!lock || this.#closed || this.#client || this.#epoch !== epoch || Date.now() - this.#heard < SILENT_MS) {
          return undefined;
        }
        this.#request(true);
        return new Promise<void>((resolve) => this.#releases.push(resolve));
      });
    }
  }

  /** Asks for the lock (waiting in line, or taking it from a silent leader); leads while this tab holds it. */
  #request(steal: boolean): void {
    if (!steal) this.#queued = true;
    let mine: (() => void) | null = null;
    navigator.locks
      .request(this.#name, steal ? { steal: true } : {}, () => {
        if (!steal) this.#queued = false;
        if (this.#closed || this.#client) return undefined;
        return new Promise<void>((resolve) => {
          this.#release = mine = resolve;
          const lead = () => {
            this.#granted = null;
            if (this.#closed || this.#client || this.#release !== mine) return;
            this.#leader = this.#tab;
            this.#leaderGone = false;
            this.#lead();
          };
          // Taking over from a silent leader, or none known, or it said bye: lead now. Else
          // its last posts (its session as it left) are still on their way: lead on its bye.
          if (steal || this.#leader === null || this.#leader === this.#tab || this.#leaderGone) lead();
          else this.#granted = lead;
        });
      })
      .catch(() => {
        // Stolen: another tab leads now.
        if (!mine || this.#release !== mine) return;
        if (this.#client) return this.#stepDown();
        // Stolen while it waited for the old leader's bye: back in line.
        this.#release = null;
        this.#granted = null;
        if (!this.#closed && !this.#queued && !this.#frozen) this.#request(false);
      });
  }

  /** Leader: runs `f` now, or once this tab knows it still leads. */
  #when(f: () => void): void {
    if (!this.#doubt && Date.now() - this.#tick > SILENT_MS / 2) this.#suspect();
    if (this.#doubt) this.#doubt.held.push(f);
    else f();
  }

  /**
   * Leader: its clock jumped (it was frozen) or its socket was replaced (close 4409), so
   * another tab may lead now. What it would write or report waits: a newer leader's posts
   * or the loss of its lock make it step down and drop it; else, after one beat and a
   * half, it goes on (a replacement by another client of the user is then reported as
   * TetherClient reports it: this tab does not fight it).
   */
  #suspect(): void {
    if (this.#doubt) return;
    // A follower that took over from this leadership holds its takeover lock: step down
    // at once, before this tab's client connects again and takes the session back.
    const takeover = `${this.#name}|takeover|${this.#epoch}`;
    void navigator.locks.query().then(({ held }) => {
      if (this.#doubt && held?.some((lock) => lock.name === takeover)) this.#stepDown();
    });
    const timer = setTimeout(() => {
      const doubt = this.#doubt;
      this.#doubt = null;
      this.#tick = Date.now();
      if (doubt && this.#client) {
        for (const f of doubt.held) f();
        this.#schedule();
      }
    }, BEAT_MS * 1.5);
    this.#doubt = { held: [], timer };
  }

  /** Leader no more (a newer leader, the lock stolen, or closing): drops the client quietly, keeps the session at the server. */
  #stepDown(): void {
    const client = this.#client;
    if (!client) return;
    this.#client = null;
    for (const off of this.#off) off();
    this.#off = [];
    if (this.#doubt) clearTimeout(this.#doubt.timer);
    this.#doubt = null;
    this.#owners.clear();
    this.#accepted.clear();
    this.#heard = Date.now();
    void client
      .closeNow()
      .catch(() => {})
      .finally(() => client.free());
    this.#release?.();
    this.#release = null;
    if (this.#closed) return;
    if (!this.#queued && !this.#frozen) this.#request(false);
    // What this tab sent that its client did not take goes to the new leader.
    this.#resend();
  }

  /** Follower: what this tab sent that no leader took, nor any session holds, goes out again. */
  #resend(): void {
    for (const [id, { data, wait }] of [...this.#unaccepted]) {
      if (this.#inSession(id)) this.#settle(id, 'accepted');
      else this.#post({ type: 'send', id, data, wait, base: this.#base() });
    }
  }

  /** The lowest id of this tab that no leader took yet: every lower one was taken. */
  #base(): number {
    return this.#unaccepted.keys().next().value ?? this.#nextId + 1;
  }

  /** Leader: whether `owner`'s message is new (it is noted as taken then); `base`: as the tab says. */
  #isNew(owner: Owner, base: number): boolean {
    let seen = this.#accepted.get(owner.tab);
    if (!seen) this.#accepted.set(owner.tab, (seen = { upTo: 0, ids: new Set() }));
    if (base - 1 > seen.upTo) {
      seen.upTo = base - 1;
      for (const id of seen.ids) if (id <= seen.upTo) seen.ids.delete(id);
    }
    if (owner.id <= seen.upTo || seen.ids.has(owner.id)) return false;
    seen.ids.add(owner.id);
    // Bounded whatever a tab says: the oldest are taken as done.
    if (seen.ids.size > RING) {
      const oldest = Math.min(...seen.ids);
      seen.ids.delete(oldest);
      seen.upTo = Math.max(seen.upTo, oldest);
    }
    return true;
  }

  /** Leader: writes a message for `owner` and remembers who it is for. */
  #accept(owner: Owner, data: Data, wait?: boolean, base?: number): void {
    const client = this.#client;
    const mine = owner.tab === this.#tab;
    // A tab that does not say its base (an older version): every lower id was taken.
    if (!client || !this.#isNew(owner, mine ? this.#base() : (base ?? owner.id))) return;
    const taken = (id: number) => {
      // Only protocol mode confirms (or drops) each message: the map forgets it then.
      if (this.#options.protocol === true) this.#owners.set(id, owner);
      if (mine) this.#settle(owner.id, 'accepted');
      else this.#post({ type: 'accepted', to: owner.tab, id: owner.id });
      this.#schedule();
    };
    const refused = (e: unknown) => {
      // A client dropped since (this tab stepped down): the message goes to the new leader.
      if (this.#client !== client) return;
      const { kind = 'rejected', message = String(e) } = e as { kind?: string; message?: string };
      if (mine) this.#refused(owner.id, kind, message);
      else this.#post({ type: 'refused', to: owner.tab, id: owner.id, kind, message });
    };
    if (wait) {
      client.sendWait(data).then((id) => this.#client === client && taken(id), refused);
      return;
    }
    let id: number;
    try {
      id = client.send(data);
    } catch (e) {
      if (mine && !this.#doubt) {
        this.#unaccepted.delete(owner.id);
        this.#open.delete(owner.id);
        throw e;
      }
      return refused(e);
    }
    taken(id);
  }

  /** A leader refused this tab's message `id`. */
  #refused(id: number, kind: string, message: string): void {
    this.#settle(id, 'refused', fail(message, { kind, id }));
  }

  #receive(m: Wire): void {
    if (this.#closed) return;
    if (m.e > this.#epoch) {
      // A newer leadership: this tab, leading, is stale (and a newer leader took what an older one left).
      this.#epoch = m.e;
      this.#orphans = null;
      this.#stepDown();
    }
    if (m.type === 'bye' && m.sends) {
      // A leader's sends that no client took: written once, by whoever leads (now or next).
      const { from: tab, base, sends } = m;
      if (this.#client) for (const h of sends) this.#when(() => this.#accept({ tab, id: h.id }, h.data, h.wait, base));
      else if (m.e === this.#epoch) this.#orphans = { tab, base, sends };
    }
    if (m.lead) {
      if (m.e < this.#epoch || this.#client) return; // a stale leader, thawed: not heard
      this.#heard = Date.now();
      if (m.from !== this.#leader) {
        this.#leader = m.from;
        this.#leaderGone = false;
      }
      if (m.type === 'replayed') {
        if (m.to !== this.#tab) return;
        // The leader's own posts of this leadership, as it numbered them.
        const items = m.items.filter(
          (item) => isWire(item) && item.lead && item.e === m.e && item.from === m.from && item.type !== 'replayed',
        ) as Wire[];
        const last = this.#seen?.e === m.e ? this.#seen.n : 0;
        const first = items.find((item) => !UNNUMBERED.includes(item.type));
        if (first && first.n > last + 1) {
          // The leader no longer keeps what this tab missed (it was stopped while more went
          // out than the leader keeps): it goes on from what is kept, and says so, rather
          // than wait for posts that will never come.
          const missed = first.n - 1 - last;
          this.#seen = { e: m.e, n: first.n - 1 };
          this.#emit(
            'error',
            fail(
              `this tab missed ${missed} posts of the leader tab while it was stopped; messages among them are lost to it`,
              {
                kind: 'missed',
                missed,
              },
            ),
          );
          // What became of its messages a leader already took may have been among them:
          // those settle now, as unconfirmed (they may have arrived), not never.
          this.#unsure();
        }
        for (const item of items) this.#inOrder(item);
      } else this.#inOrder(m);
      if (m.type === 'bye') {
        // Its last post: everything it said is read (posts of one tab come in order).
        this.#leaderGone = true;
        this.#granted?.();
      }
    } else {
      this.#tabs.set(m.from, Date.now());
      // From a follower (or a leader that stepped down): only what followers say.
      if (FOLLOWERS_SAY.includes(m.type)) this.#handle(m);
    }
  }

  /** Follower: takes the leader's posts once each, in order; asks for what it missed. */
  #inOrder(m: Wire): void {
    // A tab that just came sees from here on; a tab that knew an older leader saw none of this one's.
    const numbered = !UNNUMBERED.includes(m.type);
    const seen = this.#seen ?? { e: m.e, n: numbered ? m.n - 1 : m.n };
    const last = seen.e === m.e ? seen.n : 0;
    this.#seen = { e: m.e, n: last };
    if ((numbered ? m.n - 1 : m.n) > last && this.#asked !== last) {
      this.#asked = last;
      this.#post({ type: 'replay', after: last });
    }
    if (numbered ? m.n === last + 1 : m.type === 'status') {
      if (numbered) this.#seen.n = m.n;
      this.#handle(m);
    }
  }

  #handle(m: Wire): void {
    switch (m.type) {
      case 'hello':
        // A tab joined (it learns the status at once), or took the lead: what this tab
        // sent that no leader took, nor any session holds, goes to it again.
        if (this.#client) this.#schedule();
        else if (m.lead) this.#resend();
        return;
      case 'bye':
        this.#tabs.delete(m.from);
        if (this.#client) this.#schedule();
        return;
      case 'replay':
        if (this.#client && m.e === this.#epoch) {
          this.#post({ type: 'replayed', to: m.from, items: this.#ring.filter((w) => w.n > m.after) });
        }
        return;
      case 'send':
        if (this.#client) this.#when(() => this.#accept({ tab: m.from, id: m.id }, m.data, m.wait, m.base));
        return;
      case 'accepted':
        if (m.to === this.#tab) this.#settle(m.id, 'accepted');
        return;
      case 'refused':
        if (m.to === this.#tab) this.#refused(m.id, m.kind, m.message);
        return;
      case 'outcome':
        if (m.to === this.#tab) this.#outcome(m.id, m.event, m.value);
        return;
      case 'event':
        if (m.event === 'message' && m.n > this.#statusN) this.#messagesSince += 1;
        if (m.event === 'state') this.#status.state = (m.value as Events['state']).to;
        this.#emit(m.event, m.value);
        return;
      case 'status':
        this.#statusN = m.n;
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
    if (event === 'delivered') {
      this.#emit('delivered', { id });
      this.#settle(id, 'delivered');
    } else {
      this.#emit('dropped', { ...value, id });
      const error = fail(`message ${id} dropped (${value.reason})`, { kind: 'dropped', reason: value.reason });
      this.#settle(id, 'dropped', error);
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
      if ((e as { kind?: unknown }).kind !== 'not-ready') return this.#cannotLead(e);
      void ready().then(() => !this.#closed && this.#release && !this.#client && this.#lead());
      return;
    }
    this.#client = client;
    this.#epoch += 1;
    this.#n = 0;
    this.#ring = [];
    this.#ringBytes = 0;
    this.#tick = Date.now();
    // The retained messages got ids 1, 2, … in the snapshot's order.
    if (resume) {
      this.#sessionOwners.forEach((owner, i) => {
        this.#owners.set(i + 1, owner);
        if (owner) this.#isNew(owner, 0);
      });
    }
    const on = <K extends keyof Events>(event: K, f: (value: Events[K]) => void) =>
      this.#off.push(
        client.on(event, (value) => {
          if (this.#client !== client) return;
          // Replaced at the server: by a tab that took over (this one steps down when it
          // hears of it), or by another client of the user.
          if (
            (event === 'disconnected' && (value as Events['disconnected']).code === 4409) ||
            client.metrics().terminalReason?.reason === 'replaced'
          ) {
            this.#suspect();
          }
          this.#when(() => f(value));
        }),
      );
    for (const event of [...EVENTS_BROADCAST, 'message' as const]) {
      on(event, (value) => {
        if (event === 'state') this.#status.state = (value as Events['state']).to;
        this.#emit(event, value);
        this.#post({ type: 'event', event, value });
        this.#schedule();
      });
    }
    for (const event of ['delivered', 'dropped'] as const) {
      on(event, (value) => {
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
    for (const [id, { data, wait }] of [...this.#unaccepted]) {
      if (this.#inSession(id)) this.#settle(id, 'accepted');
      else this.#accept({ tab: this.#tab, id }, data, wait);
    }
    // What the old leader left with, unwritten.
    const orphans = this.#orphans;
    this.#orphans = null;
    for (const h of orphans?.sends ?? []) this.#accept({ tab: orphans!.tab, id: h.id }, h.data, h.wait, orphans!.base);
    // Followers' sends the old leader never took: they send them again on this hello.
    if (this.#status.state !== client.state) this.#emit('state', { from: this.#status.state, to: client.state });
    this.#status.state = client.state;
    this.#post({ type: 'hello' });
    this.#schedule();
  }

  /**
   * No client can be made with these options (`new TetherClient()` throws a TypeError or
   * a RangeError): this tab stops as a TetherClient would, and says why, instead of
   * holding the lock with no connection while every tab waits.
   */
  #cannotLead(e: unknown): void {
    const { message = String(e) } = e as { message?: string };
    this.#emit(
      'error',
      fail(`no client can be made with these options: ${message}`, { kind: 'invalid-options', cause: e }),
    );
    const from = this.#status.state;
    this.#status.state = 'error';
    if (from !== 'error') this.#emit('state', { from, to: 'error' });
    this.#emit('stopped', { reason: 'fatal', message, code: null, status: null });
    void this.close();
  }

  /** Leader: the status and the session go out once per task in which something happened. */
  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      const client = this.#client;
      if (client && !this.#closed) this.#postStatus(client);
    });
  }

  /** Leader: its status and session, with who sent each message the session retains. */
  #postStatus(client: TetherClient): void {
    // In doubt it holds messages and outcomes its client has taken: a session covering
    // them would have the next leader skip them. The status goes out once it knows.
    if (this.#doubt) return;
    this.#status = {
      state: client.state,
      quality: client.quality,
      metrics: client.metrics(),
      health: client.health(),
      tabs: this.#tabs.size + 1,
    };
    const session = client.handoff();
    const owners = [...this.#owners].sort((a, b) => a[0] - b[0]).map(([, owner]) => owner);
    this.#post({ type: 'status', status: this.#status, session, owners });
  }
}
