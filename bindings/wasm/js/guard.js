// Notices when the WebAssembly instance dies. A Rust panic is a trap (the release build
// aborts on panic), thrown as a `WebAssembly.RuntimeError` to whatever JavaScript called
// in; the instance is then unusable (its stack pointer is not restored, its RefCells may
// stay borrowed), so nothing may call into it again.
//
// JavaScript calls into the instance from the wrapper's methods (index.js guards them with
// `call`), from the driver's callbacks (a socket's events, a request's or the token
// provider's answer, a page hint: js/driver.js runs each through `run`), and from what
// `queueMicrotask` and `setTimeout` run (the driver's deferred work, tether-web's shim
// telling a socket's reader that frames wait, the shared timer). esbuild injects this
// module's `queueMicrotask`, `setTimeout` and `clearTimeout` in place of the globals
// throughout the bundle (scripts/build-wasm.sh), which guards the last. Once dead, the
// callbacks do nothing and pending timers are
// cleared, so that nothing keeps Node's event loop alive.

let trap = null;
let hook = () => {};
const timers = new Set();

/** The trap that killed the instance, or null while it lives. */
export const dead = () => trap;

/** `f(trap)` is called once, when the instance dies. */
export function onDeath(f) {
  hook = f;
}

/** Whether `e`, thrown by a call into the instance, is a trap. */
export const isTrap = (e) => e instanceof WebAssembly.RuntimeError;

/** The instance trapped with `e`: it is dead from now on. */
export function died(e) {
  if (trap) return;
  trap = e;
  for (const t of timers) globalThis.clearTimeout(t);
  timers.clear();
  hook(e);
}

function run(f) {
  if (trap) return;
  try {
    f();
  } catch (e) {
    if (!isTrap(e)) throw e;
    died(e);
  }
}

export function queueMicrotask(f) {
  globalThis.queueMicrotask(() => run(f));
}

export function setTimeout(f, ms) {
  const t = globalThis.setTimeout(() => {
    timers.delete(t);
    run(f);
  }, ms);
  timers.add(t);
  return t;
}

export function clearTimeout(t) {
  timers.delete(t);
  globalThis.clearTimeout(t);
}
