// The reference server for the tests: tether-server on 127.0.0.1, a free port, anonymous
// clients allowed (dev mode), its admin routes on another free port (restart), and an
// admin token made up here so the tests can read the per-connection metrics. Built by `cargo build -p tether-server` when the binary is
// missing (scripts/test-js.sh builds it first, so it is never stale there).
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const binary = join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'debug', 'tether-server');

/** What `GET /api/websocket/metrics` says (the fields the tests read). */
export interface ServerMetrics {
  total_connections: number;
  active_connections: number;
  connections: { id: number; client_id: string | null; endpoint: string; room: string | null }[];
}

export interface Server {
  /** `ws://127.0.0.1:PORT` */
  ws: string;
  /** `http://127.0.0.1:PORT` */
  http: string;
  metrics(): Promise<ServerMetrics>;
  /** Resolves once no connection of `clientId` (or none at all) is open. */
  drained(clientId?: string, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
  /** Kills the server as if the process died (no close frames) and listens again on the same port `downMs` later. */
  restart(downMs: number): Promise<void>;
}

export async function startServer(): Promise<Server> {
  if (!existsSync(binary)) {
    execFileSync('cargo', ['build', '--locked', '-q', '-p', 'tether-server', '--bin', 'tether-server'], {
      cwd: root,
      stdio: 'inherit',
    });
  }
  const adminToken = randomBytes(24).toString('hex');
  const child = spawn(
    binary,
    [
      '--bind',
      '127.0.0.1:0',
      '--admin',
      '127.0.0.1:0',
      '--dev-allow-anonymous',
      '--drain-window',
      '0s',
      '--log',
      'error',
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, TETHER_ADMIN_TOKEN: adminToken },
    },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let addr: string | undefined;
  let adminAddr: string | undefined;
  for await (const line of createInterface({ input: child.stdout })) {
    const [, isAdmin, found] = /^(admin )?listening on (\S+)$/.exec(line) ?? [];
    if (isAdmin) adminAddr = found;
    else if (found) addr = found;
    if (addr && adminAddr) break;
  }
  if (!addr || !adminAddr) throw new Error('tether-server exited before listening');
  const http = `http://${addr}`;
  // The per-connection part of the metrics needs the admin token.
  const metrics = async () =>
    (await (
      await fetch(`${http}/api/websocket/metrics`, { headers: { authorization: `Bearer ${adminToken}` } })
    ).json()) as ServerMetrics;
  return {
    ws: `ws://${addr}`,
    http,
    metrics,
    async drained(clientId, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = await metrics();
        const open = m.connections.filter((c) => clientId === undefined || c.client_id === clientId);
        if (open.length === 0 && (clientId !== undefined || m.active_connections === 0)) return;
        if (Date.now() > deadline) throw new Error(`still open after ${timeoutMs} ms: ${JSON.stringify(open)}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async restart(downMs) {
      const res = await fetch(`http://${adminAddr}/restart?down_ms=${downMs}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminToken}` },
      });
      if (!res.ok) throw new Error(`restart: HTTP ${res.status}`);
    },
    stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}
