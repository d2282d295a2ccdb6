// Rendering without a testing library: a root in a detached container, driven by act().
import { act, type ReactNode } from 'react';
import { flushSync } from 'react-dom';
import { createRoot, type Root } from 'react-dom/client';
import WebSocket from 'ws';

import { TetherClient, type TetherEventMap, type TetherState } from '@tether/client';

export { WebSocket };

/**
 * Two ways to drive React here. Against the real server, updates come from the network
 * at any time: no act(), renders forced with flushSync, waits by polling. With a fake
 * client a test calls `useAct()` first, and drives everything through act().
 */
const env = globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean };
env.IS_REACT_ACT_ENVIRONMENT = false;
export function useAct(): void {
  env.IS_REACT_ACT_ENVIRONMENT = true;
}
const acting = () => env.IS_REACT_ACT_ENVIRONMENT === true;
async function apply(update: () => void): Promise<void> {
  if (acting()) await act(async () => update());
  else flushSync(update);
}

export interface Rendered {
  container: HTMLElement;
  rerender(node: ReactNode): Promise<void>;
  unmount(): Promise<void>;
  /** The text of the element with this data-testid (throws when there is none). */
  text(testId: string): string;
  query(testId: string): HTMLElement | null;
}

export async function render(node: ReactNode): Promise<Rendered> {
  const container = document.createElement('div');
  document.body.append(container);
  const root: Root = createRoot(container);
  await apply(() => root.render(node));
  const query = (testId: string) => container.querySelector<HTMLElement>(`[data-testid="${testId}"]`);
  return {
    container,
    query,
    text(testId) {
      const el = query(testId);
      if (!el) throw new Error(`no [data-testid="${testId}"] in ${container.innerHTML}`);
      return el.textContent ?? '';
    },
    rerender: (next) => apply(() => root.render(next)),
    async unmount() {
      await apply(() => root.unmount());
      container.remove();
    },
  };
}

/** Waits `ms`, letting React apply what the client reported meanwhile. */
export function flush(ms = 0): Promise<void> {
  const wait = () => new Promise<void>((r) => setTimeout(r, ms));
  return acting() ? act(wait) : wait();
}

/** Polls `check` until it stops throwing, or throws its last error. */
export async function until<T>(check: () => T, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await flush(20);
    }
  }
}

/** Resolves once `client` is in `state`. */
export function reach(client: TetherClient, state: TetherState, timeoutMs = 5000): Promise<void> {
  if (client.state === state) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for '${state}' (now '${client.state}')`));
    }, timeoutMs);
    const off = client.on('state', ({ to }: TetherEventMap['state']) => {
      if (to !== state) return;
      clearTimeout(timer);
      off();
      resolve();
    });
  });
}

/**
 * Counts the subscriptions made through `TetherClient.prototype.on` and not yet undone,
 * per client, from now until `restore()`.
 */
export function countListeners() {
  const proto = TetherClient.prototype as unknown as { on: (...a: unknown[]) => () => void };
  const original = proto.on;
  const live = new Map<object, number>();
  proto.on = function (this: object, ...args: unknown[]) {
    const off = original.apply(this, args);
    live.set(this, (live.get(this) ?? 0) + 1);
    let done = false;
    return () => {
      if (!done) live.set(this, (live.get(this) ?? 0) - 1);
      done = true;
      off();
    };
  };
  return {
    of: (client: object) => live.get(client) ?? 0,
    total: () => [...live.values()].reduce((a, b) => a + b, 0),
    restore: () => {
      proto.on = original;
    },
  };
}
