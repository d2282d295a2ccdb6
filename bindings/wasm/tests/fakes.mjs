// WebSocket constructors played by the tests, no network: `ws`-like sockets of version 7
// or 8 (`on`, `terminate`, `ping`) and browser-like ones (`on…` properties, event objects),
// which the tests drive by hand (`text`, `bytes`, `closed`).
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';

/**
 * A `ws`-like socket (`on`, `terminate`, `ping`) of version `major`. The sockets made are
 * in `sockets`, or handed to `onSocket` instead (which then decides whether anything keeps
 * them); with `echo`, each frame sent is echoed as text.
 */
export function wsLike(major, { echo = false, onSocket } = {}) {
  const sockets = [];
  const made = onSocket ?? ((s) => sockets.push(s));
  class FakeWs extends EventEmitter {
    constructor(url, protocols) {
      super();
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.binaryType = 'nodebuffer';
      this.sent = [];
      made(this);
      setTimeout(() => {
        this.readyState = 1;
        this.emit('open');
      }, 0);
    }

    send(data) {
      this.sent.push(data);
      if (echo && this.readyState === 1) setTimeout(() => this.text(String(data)), 0);
    }

    ping() {}

    close(code, reason) {
      if (this.readyState >= 2) return;
      this.readyState = 2;
      setTimeout(() => this.closed(code, reason), 0);
    }

    terminate() {
      if (this.readyState === 3) return;
      this.readyState = 2;
      setTimeout(() => this.closed(1006, ''), 0);
    }

    closed(code, reason) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.emit('close', code, major >= 8 ? Buffer.from(reason ?? '') : (reason ?? ''));
    }

    /** The server sends a text frame (a string, or its bytes as they came). */
    text(s) {
      if (major >= 8) this.emit('message', Buffer.from(s), false);
      else this.emit('message', typeof s === 'string' ? s : Buffer.from(s).toString());
    }

    /** The server sends a binary frame (binaryType 'arraybuffer', as the shim sets). */
    bytes(b) {
      assert.equal(this.binaryType, 'arraybuffer');
      const copy = new Uint8Array(b).buffer;
      if (major >= 8) this.emit('message', copy, true);
      else this.emit('message', copy);
    }
  }
  return { WebSocket: FakeWs, sockets };
}

/**
 * A browser-like socket: `on…` properties and event objects. With `blobs`, one that
 * ignores binaryType 'arraybuffer' and gives binary frames as Blobs (a browser's default).
 */
export function browserLike({ blobs = false } = {}) {
  const sockets = [];
  class FakeWebSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.binaryType = 'blob';
      this.sent = [];
      sockets.push(this);
      setTimeout(() => {
        this.readyState = 1;
        this.onopen?.({ type: 'open' });
      }, 0);
    }

    send(data) {
      this.sent.push(data);
    }

    close(code, reason) {
      if (this.readyState >= 2) return;
      this.readyState = 2;
      setTimeout(() => this.closed(code ?? 1005, reason ?? ''), 0);
    }

    closed(code, reason) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.onclose?.({ type: 'close', code, reason });
    }

    text(s) {
      this.onmessage?.({ type: 'message', data: s });
    }

    bytes(b) {
      if (blobs) {
        this.onmessage?.({ type: 'message', data: new Blob([new Uint8Array(b)]) });
        return;
      }
      assert.equal(this.binaryType, 'arraybuffer');
      this.onmessage?.({ type: 'message', data: new Uint8Array(b).buffer });
    }
  }
  return { WebSocket: FakeWebSocket, sockets };
}
