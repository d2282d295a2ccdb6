#!/usr/bin/env node
// `npm run demo:web` (at the repository root): builds the reference server, the package
// and this app, starts the reference server (dev mode, with its admin routes) and serves
// the app on 127.0.0.1, then prints the URL. Ctrl-C stops everything.
//
//   node examples/react-dashboard/demo.mjs [--no-build] [--port 4173]
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { startReferenceServer } from '../reference-server.mjs';
import { serveApp } from './serve.mjs';

const { values: args } = parseArgs({
  options: { 'no-build': { type: 'boolean', default: false }, port: { type: 'string', default: '4173' } },
});
const root = fileURLToPath(new URL('../..', import.meta.url));

function run(what, command, argv) {
  console.log(`\n==> ${what}`);
  const { status, error } = spawnSync(command, argv, { cwd: root, stdio: 'inherit' });
  if (status !== 0) {
    console.error(`demo: ${what} failed${error ? `: ${error.message}` : ''}`);
    process.exit(1);
  }
}

if (!args['no-build']) {
  run('reference server', 'cargo', ['build', '--locked', '-q', '-p', 'tether-server', '--bin', 'tether-server']);
  run('@tether/client (wasm, release)', 'npm', ['run', '--silent', 'build', '-w', '@tether/client']);
  run('the app', 'npm', ['run', '--silent', 'build', '-w', 'tether-react-dashboard']);
}

const server = await startReferenceServer();
const config = { server: server.http };
let app;
try {
  app = await serveApp({ config, port: Number(args.port) });
} catch (e) {
  if (e.code !== 'EADDRINUSE') throw e;
  app = await serveApp({ config }); // the port is taken: any free one
}

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  console.log('\nstopping');
  await Promise.all([app.close(), server.stop()]);
  process.exit(0);
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

console.log(`
Tether React dashboard: ${app.url}

  reference server  ${server.http} (echo at ${server.ws}, chat rooms at ${server.ws}?room=NAME)
  open two tabs to chat; ?room=NAME and ?name=YOU pick the room and your name
  kill the server and bring it back 3 s later (sessions kept; what you type meanwhile
  is delivered once it is back):
    curl -X POST -H 'authorization: Bearer ${server.adminToken}' '${server.admin}/restart?down_ms=3000'

Ctrl-C stops everything.`);
