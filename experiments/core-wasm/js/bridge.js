// What stands in for wasm-bindgen's glue (`tether_wasm.js`) under the npm package's
// wrapper (bindings/wasm/js/index.js) when the wasm holds only the core: the same exports,
// over js/driver.js and js/snapshots.js, with tether-web's shim.js for fetch and page
// hints. Only to measure the JavaScript of that design (bundled as the package is, see
// estimate.sh); a real port would fold it into the wrapper.
//
// LITE is not a variable: estimate.sh bundles with `--define:LITE=false`, and
// `estimate.sh lite` with `--define:LITE=true` for the lite build's bridge, without
// health(), handoff(), the `resume` option, the self-test and log lines (which would load
// the full build); esbuild then drops the branches and imports LITE leaves unused.
import { Emitter } from '../../../bindings/wasm/src/emitter.js';
import { fail as failWith, text as textOf } from '../../../bindings/wasm/src/errors.js';
import { Hints, Req, canPing } from 'tether-web-shim';
import { Driver, load, wasmExports, Writer, Reader, STATES, QUALITIES } from './driver.js';
import { criteria, handoff, health, logLine, metrics, passes, resume, setLog } from './snapshots.js';

const full = () => {
  throw new Error('needs the full build');
};

export default async function init(options) {
  await load(options.module_or_path);
}

export function initSync(options) {
  load(options.module, true);
}

const HINTS = ['online', 'offline', 'visible', 'hidden', 'resumed'];

/// The options as `packOptions` (js/options.js) packs them, written for `tw_new`.
function writer(url, p) {
  return (w) => {
    const numbers = p[0];
    w.u32(numbers.length);
    for (const n of numbers) w.f64(n);
    w.str(url);
    const protocols = Array.isArray(p[1]) ? p[1] : [];
    w.u32(protocols.length);
    for (const s of protocols) w.str(s);
    if (typeof p[2] === 'string') w.u8(1).str(p[2]);
    else w.u8(0);
    w.payload(p[3]).payload(p[4]);
    if (p[5] === undefined) w.u8(0);
    else if (typeof p[6] === 'string') w.u8(2).str(p[6]);
    else w.u8(1);
    return w;
  };
}

export class TetherClient {
  constructor(url, p) {
    const emitter = new Emitter();
    this.e = emitter;
    this.d = new Driver(
      {
        pack: writer(url, p),
        maxMessageBytes: p[0][37],
        canPing: canPing(p[7]),
        WebSocket: p[7],
        tokenProvider: p[5],
        resume: p[9] === undefined ? undefined : LITE ? full : (w) => resume(p[9], w),
        post: (d, request, postUrl, headers, body) => {
          const req = new Req(p[8], postUrl, headers, body, d.limit);
          req.done().then((answer) => {
            if (answer instanceof Uint8Array) {
              d.input(answer);
              wasmExports().tw_http_response(d.c, performance.now(), request, true, 0, NaN);
            } else {
              d.input(answer.message ?? '');
              wasmExports().tw_http_response(d.c, performance.now(), request, false, 1, answer.status ?? NaN);
            }
            d.drive();
          });
          return () => req.abort();
        },
      },
      (index, value) => {
        if (emitter.has(index)) emitter.emit(index, value);
      },
    );
    if (p[0][42] !== 0) {
      const hints = new Hints();
      if (hints.active) {
        const watch = () =>
          hints.next().then((batch) => {
            if (!batch) return;
            for (const h of batch) {
              const i = HINTS.indexOf(h);
              if (i >= 0) wasmExports().tw_hint(this.d.c, performance.now(), i);
            }
            this.d.drive();
            watch();
          });
        watch();
      }
    }
  }
  get __emitter() {
    return this.e;
  }
  __destroy_into_raw() {
    this.d.free();
  }
  free() {
    this.d.free();
  }
  send(data) {
    return this.d.send(data);
  }
  sendConfirmed(data) {
    return this.d.sendConfirmed(data);
  }
  sendWait(data) {
    return this.d.sendWait(data);
  }
  flush() {
    return this.d.flush();
  }
  close(code, reason) {
    return this.d.close(code, reason, false);
  }
  closeNow(code, reason) {
    return this.d.close(code, reason, true);
  }
  reconnect() {
    this.d.reconnect();
  }
  get state() {
    return this.d.state;
  }
  get quality() {
    return this.d.quality;
  }
  get clientId() {
    return this.d.clientId;
  }
  metrics() {
    return metrics(this.d, Reader, wasmExports(), STATES, QUALITIES);
  }
  health() {
    return LITE ? full() : health(this.d, Reader, wasmExports());
  }
  handoff() {
    return LITE ? full() : handoff(this.d, Reader, wasmExports());
  }
}

export function setLogLevel(level) {
  if (LITE) return;
  setLog(level);
  wasmExports().tw_set_log_level(level);
}

export function __tetherTrap() {
  wasmExports().tw_trap();
}

export const selfTestCriteria = LITE ? full : (packed) => criteria(packed, Writer, Reader, wasmExports());

export const __selfTestPasses = LITE
  ? full
  : (packed, check, measured) => passes(packed, check, measured, Writer, wasmExports());

export { failWith, textOf, logLine };
