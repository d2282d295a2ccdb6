// The listeners of one TetherClient. Kept in JavaScript so that `on()` can hand back a
// plain unsubscribe function, and so that a throwing handler neither stops the others
// nor the client: its exception is reported as uncaught, after the dispatch.

// In the order of `event_index` (convert.rs): Rust names an event by its index here.
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

export class Emitter {
  constructor() {
    this.handlers = new Map();
  }

  on(event, handler) {
    if (typeof event !== 'string' || !EVENTS.includes(event)) {
      throw new TypeError(
        `on(event, handler): event must be one of ${EVENTS.map((e) => `'${e}'`).join(', ')}; got ${
          typeof event === 'string' ? `'${event}'` : typeof event
        }`,
      );
    }
    if (typeof handler !== 'function') {
      throw new TypeError(`on('${event}', handler): handler must be a function; got ${typeof handler}`);
    }
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    const entry = { handler };
    set.add(entry);
    return () => {
      set.delete(entry);
    };
  }

  // `event`: a name, or (from Rust) its index in EVENTS.
  has(event) {
    const set = this.handlers.get(typeof event === 'number' ? EVENTS[event] : event);
    return set !== undefined && set.size > 0;
  }

  emit(event, value) {
    const set = this.handlers.get(typeof event === 'number' ? EVENTS[event] : event);
    if (!set) return;
    if (set.size === 1) {
      // The usual case, without copying the set.
      const [entry] = set;
      try {
        entry.handler(value);
      } catch (e) {
        report(e);
      }
      return;
    }
    for (const entry of [...set]) {
      if (!set.has(entry)) continue;
      try {
        entry.handler(value);
      } catch (e) {
        report(e);
      }
    }
  }
}
