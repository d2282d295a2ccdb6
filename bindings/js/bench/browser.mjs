// `npm run bench:browser` (repository root): Tether's JS client in headless Chromium
// (Debian's /usr/bin/chromium through playwright-core; CHROMIUM= to use another), against
// the browser's own WebSocket on the same `ws` echo server (echo-server.mjs). Not a test:
// it prints figures; BENCHMARKS.md says how to read them. Needs bindings/js/dist
// (`node bindings/js/scripts/build.mjs`).
//
// 1. Loading: two minimal React pages (browser/react-raw.jsx, browser/react-tether.jsx),
//    bundled for production by esbuild and served from 127.0.0.1; each loaded 7 times in
//    a fresh browser context (cold cache): first contentful paint, the first render's
//    commit, connected, and when the .wasm was fetched and how it was compiled. Medians.
// 2. Speed: browser/throughput.js runs bench.mjs's measures in the page (64-byte text,
//    20,000 pipelined with 256 in flight, best of 3 rounds; 1,000 round trips a round).
//    The page is cross-origin isolated (COOP/COEP), so `performance.now()` has 5 µs
//    resolution rather than 100 µs.
//
// Last line: `browser-ratio throughput=… rtt_p50=… rtt_p99=…` (Tether ÷ the browser's WebSocket).
import { fork } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';
import { CHROMIUM, chromiumOptions } from '../../../scripts/chromium.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const LOADS = 7;
const DEADLINE_MS = 240_000;

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm' };
const HTML = (script) =>
  `<!doctype html><html><head><meta charset="utf-8"><title>bench</title></head><body><div id="root"></div>` +
  `<script>window.__marks = {}</script><script type="module" src="/${script}"></script></body></html>`;

async function bundle(dir) {
  await build({
    entryPoints: ['react-raw.jsx', 'react-tether.jsx', 'throughput.js'].map((f) => join(here, 'browser', f)),
    outdir: dir,
    bundle: true,
    minify: true,
    format: 'esm',
    target: 'es2022',
    jsx: 'automatic',
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'warning',
  });
  // Where the package's loader looks for it: next to the module that imports it.
  copyFileSync(join(here, '..', 'dist', 'wasm', 'tether_wasm_bg.wasm'), join(dir, 'tether_wasm_bg.wasm'));
}

function serve(dir) {
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const headers = {
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-embedder-policy': 'require-corp',
      'cache-control': 'no-store',
    };
    let body;
    if (path.endsWith('.html')) body = HTML(path.slice(1).replace('.html', '.js'));
    else {
      try {
        body = readFileSync(join(dir, path.slice(1).replace(/[^\w.-]/g, '')));
      } catch {
        res.writeHead(404, headers).end();
        return;
      }
    }
    res.writeHead(200, { ...headers, 'content-type': TYPES[extname(path)] ?? 'application/octet-stream' }).end(body);
  });
  return new Promise((ok) =>
    server.listen(0, '127.0.0.1', () =>
      ok({ url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() }),
    ),
  );
}

async function startEcho() {
  const child = fork(join(here, 'echo-server.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const { port } = await new Promise((ok) => child.once('message', ok));
  return { url: `ws://127.0.0.1:${port}`, stop: () => child.kill() };
}

/** One cold load of `page`: its marks, paint timing and the .wasm's fetch. */
async function load(browser, base, page, ws) {
  const context = await browser.newContext();
  const tab = await context.newPage();
  await tab.addInitScript(() => {
    window.__compiled = [];
    for (const name of ['compileStreaming', 'instantiateStreaming', 'compile', 'instantiate']) {
      const f = WebAssembly[name];
      WebAssembly[name] = function (...args) {
        window.__compiled.push([name, performance.now()]);
        return f.apply(this, args);
      };
    }
  });
  await tab.goto(`${base}/${page}.html?ws=${encodeURIComponent(ws)}`);
  await tab.waitForSelector('[data-state=connected]', { timeout: 15_000 });
  const r = await tab.evaluate(() => {
    const fcp = performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null;
    const wasm = performance.getEntriesByType('resource').find((e) => e.name.endsWith('.wasm'));
    return {
      ...window.__marks,
      fcp,
      wasmStart: wasm?.startTime ?? null,
      wasmEnd: wasm?.responseEnd ?? null,
      compiled: window.__compiled,
    };
  });
  await context.close();
  return r;
}

const median = (xs) => {
  const s = xs.filter((x) => x !== null && x !== undefined).sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
};
const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');

async function main() {
  if (!existsSync(join(here, '..', 'dist', 'wasm', 'tether_wasm_bg.wasm'))) {
    throw new Error('bindings/js/dist is not built: run node bindings/js/scripts/build.mjs');
  }
  setTimeout(() => {
    console.error(`bench: stopped after ${DEADLINE_MS} ms`);
    process.exit(1);
  }, DEADLINE_MS).unref();
  const dir = mkdtempSync(join(tmpdir(), 'tether-bench-'));
  const echo = await startEcho();
  let app;
  let browser;
  try {
    await bundle(dir);
    app = await serve(dir);
    browser = await chromium.launch({
      ...chromiumOptions,
    });
    console.log(`${browser.version()}; ${LOADS} cold loads of each page, medians (ms from navigation start)`);
    for (const page of ['react-raw', 'react-tether']) {
      await load(browser, app.url, page, echo.url); // warm the browser process, not the page
      const runs = [];
      for (let i = 0; i < LOADS; i++) runs.push(await load(browser, app.url, page, echo.url));
      const compiled = [...new Set(runs.flatMap((r) => r.compiled.map(([name]) => name)))];
      console.log(
        `${page.padEnd(13)} first render ${f(median(runs.map((r) => r.rendered)))}  FCP ${f(median(runs.map((r) => r.fcp)))}` +
          `  connected ${f(median(runs.map((r) => r.connected)))}` +
          (page === 'react-tether'
            ? `  wasm fetch ${f(median(runs.map((r) => r.wasmStart)))}–${f(median(runs.map((r) => r.wasmEnd)))}` +
              `  compiled by ${compiled.join(', ') || 'nothing'}` +
              `  render before wasm fetch start in ${runs.filter((r) => r.rendered <= r.wasmStart).length}/${runs.length}`
            : ''),
      );
    }
    const context = await browser.newContext();
    const tab = await context.newPage();
    await tab.goto(`${app.url}/throughput.html`);
    const isolated = await tab.evaluate(() => window.crossOriginIsolated);
    await tab.waitForFunction(() => typeof window.runBench === 'function');
    const rows = await tab.evaluate((a) => window.runBench(a), {
      url: echo.url,
      total: 20_000,
      window: 256,
      rtt: 1_000,
      rounds: 3,
    });
    await context.close();
    console.log(`throughput page cross-origin isolated: ${isolated}`);
    for (const r of rows) {
      console.log(
        `${(r.kind === 'raw' ? 'browser WebSocket' : 'tether plain').padEnd(18)} ${f(r.throughput, 0).padStart(7)} msg/s  rtt p50 ${f(r.p50)} µs  p99 ${f(r.p99)} µs`,
      );
    }
    const [raw, plain] = rows;
    console.log(
      `browser-ratio throughput=${f(plain.throughput / raw.throughput, 2)} rtt_p50=${f(plain.p50 / raw.p50, 2)} rtt_p99=${f(plain.p99 / raw.p99, 2)}`,
    );
  } finally {
    await browser?.close();
    app?.close();
    echo.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
