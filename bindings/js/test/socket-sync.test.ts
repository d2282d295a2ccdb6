// TetherSocket dispatches no event from inside its own calls, as a WebSocket never does:
// not even when a send() finds the connection closing (the client's write fails within
// send(), and the client's `disconnected` handlers run there). A WebSocket-like socket
// played by the test (the `ws` package's shape), no network.
import { EventEmitter } from 'node:events';
import { expect, test } from 'vitest';

import { TetherSocket } from '@tether/client/socket';

const made: FakeWs[] = [];

class FakeWs extends EventEmitter {
  readyState = 0;
  binaryType = 'nodebuffer';
  sent: unknown[] = [];
  constructor(readonly url: string) {
    super();
    made.push(this);
    setTimeout(() => {
      this.readyState = 1;
      this.emit('open');
    }, 0);
  }
  send(data: unknown): void {
    this.sent.push(data);
  }
  ping(): void {}
  close(code?: number, reason?: string): void {
    if (this.readyState >= 2) return;
    this.readyState = 2;
    setTimeout(() => this.closed(code ?? 1005, reason ?? ''), 0);
  }
  terminate(): void {
    if (this.readyState === 3) return;
    this.readyState = 2;
    setTimeout(() => this.closed(1006, ''), 0);
  }
  closed(code: number, reason: string): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.emit('close', code, Buffer.from(reason));
  }
}

test('a send() that finds the connection closing dispatches its close event later, not inside send()', async () => {
  const socket = new TetherSocket('ws://fake.invalid/ws', undefined, {
    WebSocket: FakeWs as unknown as typeof WebSocket,
    backoff: { initialDelayMs: 50, maxDelayMs: 300, jitter: 'none' },
  });
  try {
    await new Promise((resolve) => socket.addEventListener('open', resolve, { once: true }));
    const log: string[] = [];
    let inside = false;
    const closed = new Promise<CloseEvent>((resolve) =>
      socket.addEventListener('close', (e) => {
        log.push(`close inside=${inside}`);
        resolve(e as CloseEvent);
      }),
    );
    socket.addEventListener('error', () => log.push(`error inside=${inside}`));
    // Closing: a close frame came, its event has not yet.
    made[0]!.readyState = 2;
    inside = true;
    socket.send('into a closing socket');
    inside = false;
    log.push('send returned');
    const e = await closed;
    expect(log).toEqual(['send returned', 'error inside=false', 'close inside=false']);
    expect(e.code).toBe(1006);
    expect(socket.readyState).toBe(TetherSocket.CONNECTING);
  } finally {
    socket.close();
  }
});
