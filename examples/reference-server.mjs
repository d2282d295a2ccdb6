// Starts the reference server (crates/tether-server) for the examples and their tests:
// on 127.0.0.1, a free port, anonymous clients allowed (dev mode), and its admin routes
// (`--admin`: restart keeping sessions, delivered counts) on another free port.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Where `cargo build -p tether-server` puts the binary. */
export const serverBinary = `${process.env.CARGO_TARGET_DIR ?? `${root}target`}/debug/tether-server`;

/**
 * Resolves once the server listens, with its addresses and `stop()`:
 * `http` (`http://127.0.0.1:PORT`), `ws` (`ws://127.0.0.1:PORT/ws`) and `admin`.
 */
export async function startReferenceServer({ binary = serverBinary, log = 'warn' } = {}) {
  if (!existsSync(binary)) {
    throw new Error(`no reference server at ${binary}: run \`cargo build -p tether-server\` first`);
  }
  const child = spawn(
    binary,
    ['--bind', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--dev-allow-anonymous', '--log', log],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise((resolve) => child.once('exit', resolve));
  // Never outlive the process that started it, even one that ends without stop().
  const orphan = () => child.kill('SIGKILL');
  process.once('exit', orphan);
  exited.then(() => process.off('exit', orphan));
  const found = {};
  for await (const line of createInterface({ input: child.stdout })) {
    const [, admin, addr] = line.match(/^(admin )?listening on (\S+)$/) ?? [];
    if (addr) found[admin ? 'admin' : 'server'] = addr;
    if (found.admin && found.server) break;
  }
  if (!found.admin || !found.server) throw new Error('the reference server exited before listening');
  return {
    http: `http://${found.server}`,
    ws: `ws://${found.server}/ws`,
    admin: `http://${found.admin}`,
    /** Stops it (SIGTERM: WebSockets are closed with 1001) and resolves once it exited. */
    stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Calls an admin route (`/stop`, `/start`, `/restart?down_ms=N`, `/delivered`). */
export async function admin(base, route, method = route === '/delivered' ? 'GET' : 'POST') {
  const res = await fetch(`${base}${route}`, { method });
  if (!res.ok) throw new Error(`admin ${route}: HTTP ${res.status} ${await res.text()}`);
  return res.json();
}
