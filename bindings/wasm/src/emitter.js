// The listeners of one TetherClient. Kept in JavaScript so that `on()` can hand back a
// plain unsubscribe function, and so that a throwing handler neither stops the others
// nor the client: its exception is reported as uncaught, after the dispatch.

// In the order of the event tags of src/ffi/drain.rs (`event_record`): Rust names an event
// by its index here.
const EVENTS = [
  'state',
  'message',
  'quality',
  'attempt',
  'reconnecting',
  'fallback',
  'error',
  'delivered',
  'dropped',
  'stopped',
  'disconnected',
  'sessionReset',
  'tokenRefreshed',
];

// `globalThis.queueMicrotask`: the bundle's own `queueMicrotask` (js/guard.js) is for
// calls into the WebAssembly, and runs nothing once the instance is dead.
function report(error) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(error);
  else
    globalThis.queueMicrotask(() => {
      throw error;
    });
}

// No listener yet: one empty list for every emitter.
const NONE = Object.freeze([]);

export class Emitter {
  constructor() {
    // The listeners, as entries { event (its index), handler } in the order added. The
    // list is replaced, never changed in place: an `emit` goes over the list as it was
    // when it began (a listener added meanwhile is not called), and a removed entry's
    // event becomes -1 (it is not called either). One small array, where a Map of Sets
    // took about 0.2 kB per client.
    this.entries = NONE;
    // The state as of the last `state` event (set first by the wrapper, js/index.js):
    // what it reports once the instance is dead. Kept here rather than by a listener.
    this.state = null;
    // Set once the client failed for good (a dead instance, js/index.js): nothing is
    // emitted after its last events, not even to the rest of a listener list under way.
    this.halted = false;
  }

  /** No event is emitted from now on. */
  halt() {
    this.halted = true;
  }

  on(event, handler) {
    const index = typeof event === 'string' ? EVENTS.indexOf(event) : -1;
    if (index < 0) {
      throw new TypeError(
        `on(event, handler): event must be one of ${EVENTS.map((e) => `'${e}'`).join(', ')}; got ${
          typeof event === 'string' ? `'${event}'` : typeof event
        }`,
      );
    }
    if (typeof handler !== 'function') {
      throw new TypeError(`on('${event}', handler): handler must be a function; got ${typeof handler}`);
    }
    const entry = { event: index, handler };
    // `concat` makes an array of the exact size; a spread leaves room for ~40 more.
    this.entries = this.entries.concat([entry]);
    return () => {
      if (entry.event < 0) return;
      entry.event = -1;
      this.entries = this.entries.filter((e) => e !== entry);
    };
  }

  // `event`: a name, or (from Rust) its index in EVENTS. Always true for `state` (index
  // 0), which `this.state` follows.
  has(event) {
    const index = typeof event === 'number' ? event : EVENTS.indexOf(event);
    if (index === 0) return true;
    for (const entry of this.entries) if (entry.event === index) return true;
    return false;
  }

  emit(event, value) {
    const index = typeof event === 'number' ? event : EVENTS.indexOf(event);
    if (this.halted) return;
    if (index === 0) this.state = value.to;
    for (const entry of this.entries) {
      if (this.halted) return;
      if (entry.event !== index) continue;
      try {
        entry.handler(value);
      } catch (e) {
        report(e);
      }
    }
  }
}
