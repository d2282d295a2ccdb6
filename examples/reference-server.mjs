// Starts the reference server (crates/tether-server) for the examples and their tests:
// on 127.0.0.1, a free port, anonymous clients and localhost pages allowed (dev mode), and
// its admin routes (`--admin`: restart keeping sessions, delivered counts) on another free
// port, behind an admin token made up here (`adminToken`; `admin()` sends it).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Where `cargo build -p tether-server` puts the binary. */
export const serverBinary = `${process.env.CARGO_TARGET_DIR ?? `${root}target`}/debug/tether-server`;

/** The admin token of each admin URL this module started. */
const adminTokens = new Map();

/**
 * Resolves once the server listens, with its addresses and `stop()`:
 * `http` (`http://127.0.0.1:PORT`), `ws` (`ws://127.0.0.1:PORT/ws`), `admin` and
 * `adminToken` (the admin routes' credential, `Authorization: Bearer <it>`).
 */
export async function startReferenceServer({ binary = serverBinary, log = 'warn' } = {}) {
  if (!existsSync(binary)) {
    throw new Error(`no reference server at ${binary}: run \`cargo build -p tether-server\` first`);
  }
  const adminToken = randomBytes(24).toString('hex');
  const child = spawn(
    binary,
    ['--bind', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--dev-allow-anonymous', '--drain-window', '0s', '--log', log],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, TETHER_ADMIN_TOKEN: adminToken } },
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
  adminTokens.set(`http://${found.admin}`, adminToken);
  return {
    http: `http://${found.server}`,
    ws: `ws://${found.server}/ws`,
    admin: `http://${found.admin}`,
    adminToken,
    /** Stops it (SIGTERM with a drain window of 0 s: WebSockets are closed with 1012 and told to come back at once) and resolves once it exited. */
    stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/**
 * Calls an admin route (`/stop`, `/start`, `/restart?down_ms=N`, `/freeze`, `/thaw`, `/delivered`) with the
 * admin token: the one of a server started here, else `token`, else `TETHER_ADMIN_TOKEN`.
 */
export async function admin(base, route, { method, token } = {}) {
  const credential = token ?? adminTokens.get(base) ?? process.env.TETHER_ADMIN_TOKEN;
  if (!credential) throw new Error(`admin ${route}: no admin token for ${base}`);
  const res = await fetch(`${base}${route}`, {
    method: method ?? (route === '/delivered' ? 'GET' : 'POST'),
    headers: { authorization: `Bearer ${credential}` },
  });
  if (!res.ok) throw new Error(`admin ${route}: HTTP ${res.status} ${await res.text()}`);
  return res.json();
}
