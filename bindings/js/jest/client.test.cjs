// The README's Jest recipe, proven: Jest 30, `testEnvironment: 'jsdom'`, CommonJS, no
// configuration for the package. The client connects (jsdom's own WebSocket) to the
// reference server on 127.0.0.1, started and stopped here, and gets its echo.
const { spawn } = require('node:child_process');
const { randomBytes } = require('node:crypto');
const { join } = require('node:path');
const { createInterface } = require('node:readline');
const React = require('react');
const { act } = React;
const { createRoot } = require('react-dom/client');

const { TetherClient, ready } = require('@tether/client');
const {
  ConnectionStatus,
  TetherProvider,
  useConnectionState,
  useTetherMessages,
  useTetherSend,
} = require('@tether/client/react');

const root = join(__dirname, '..', '..', '..');
const binary = join(process.env.CARGO_TARGET_DIR || join(root, 'target'), 'debug', 'tether-server');

let server;
let ws;
beforeAll(async () => {
  server = spawn(binary, ['--bind', '127.0.0.1:0', '--dev-allow-anonymous', '--log', 'error'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, TETHER_ADMIN_TOKEN: randomBytes(24).toString('hex') },
  });
  for await (const line of createInterface({ input: server.stdout })) {
    const addr = /^listening on (\S+)$/.exec(line)?.[1];
    if (addr) {
      ws = `ws://${addr}/ws`;
      break;
    }
  }
  if (!ws) throw new Error('tether-server exited before listening');
});
afterAll(async () => {
  if (server.exitCode === null && server.signalCode === null) {
    const exited = new Promise((resolve) => server.once('exit', resolve));
    server.kill('SIGTERM');
    await exited;
  }
});

test('runs in a jsdom environment', () => {
  expect(typeof window).toBe('object');
  expect(typeof document).toBe('object');
  expect(typeof WebSocket).toBe('function');
});

test('a client connects through jsdom and receives its echo', async () => {
  await ready();
  const client = new TetherClient(ws, { protocol: true });
  try {
    const echo = new Promise((resolve) => client.on('message', resolve));
    await client.sendConfirmed('hello from Jest');
    expect(await echo).toBe('hello from Jest');
    expect(client.state).toBe('connected');
  } finally {
    await client.close();
    client.free();
  }
});

test('the React provider renders in jsdom, connects, sends and receives', async () => {
  globalThis.IS_REACT_ACT_ENVIRONMENT = true;
  const container = document.createElement('div');
  document.body.append(container);
  let received;
  const echo = new Promise((resolve) => (received = resolve));
  // Sends once connected; the reference server's /ws (no room) echoes.
  function Chat() {
    const state = useConnectionState();
    const send = useTetherSend();
    useTetherMessages((m) => received(m));
    React.useEffect(() => {
      if (state === 'connected') send('hello from the provider');
    }, [state, send]);
    return null;
  }
  const page = createRoot(container);
  await act(async () => {
    page.render(
      React.createElement(
        TetherProvider,
        { url: ws, options: { protocol: true } },
        React.createElement(ConnectionStatus),
        React.createElement(Chat),
      ),
    );
  });
  await act(async () => {
    expect(await echo).toBe('hello from the provider');
  });
  const status = container.querySelector('[data-testid="connection-status"]');
  expect(status.getAttribute('data-state')).toBe('connected');
  await act(async () => page.unmount());
});
