// A stand-in for TetherClient with the same surface, driven by the test: events are
// emitted synchronously, as the real client does, and every call is recorded.
import type {
  TetherClient,
  TetherEventMap,
  TetherHealth,
  TetherMetrics,
  TetherQuality,
  TetherState,
} from '@tether/client';

type Handler = (value: never) => void;

export const METRICS: TetherMetrics = {
  state: 'connected',
  attempt: 0,
  reconnects: 0,
  uptimeMs: 1000,
  totalUptimeMs: 1000,
  lastCloseCode: null,
  lastCloseReason: null,
  rttMs: 42,
  rttMeanMs: 42,
  rttP50Ms: 42,
  rttP99Ms: 42,
  jitterMs: 3,
  loss: 0,
  quality: 'excellent',
  reliability: 98,
  messagesIn: 0,
  messagesOut: 0,
  bytesIn: 0,
  bytesOut: 0,
  queueDepth: 0,
  queueBytes: 0,
  fallbackActive: false,
  readingPaused: false,
  unreadBytesPeak: 0,
  terminalReason: null,
};

export class FakeClient {
  state: TetherState = 'connecting';
  quality: TetherQuality | null = null;
  clientId = 'fake';
  figures: TetherMetrics = { ...METRICS };
  advice: TetherHealth = { alerts: [], recommendations: [] };
  closes = 0;
  reconnects = 0;
  sent: unknown[] = [];
  metricsCalls = 0;
  private readonly handlers = new Map<string, Set<Handler>>();

  on<K extends keyof TetherEventMap>(event: K, handler: (value: TetherEventMap[K]) => void): () => void {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    const h = handler as Handler;
    set.add(h);
    return () => {
      set.delete(h);
    };
  }

  emit<K extends keyof TetherEventMap>(event: K, value: TetherEventMap[K]): void {
    for (const h of [...(this.handlers.get(event) ?? [])]) (h as (v: TetherEventMap[K]) => void)(value);
  }

  /** Changes the state and says so, as the client does. */
  become(to: TetherState): void {
    const from = this.state;
    this.state = to;
    this.figures = { ...this.figures, state: to };
    this.emit('state', { from, to });
  }

  listeners(event?: string): number {
    if (event) return this.handlers.get(event)?.size ?? 0;
    return [...this.handlers.values()].reduce((n, s) => n + s.size, 0);
  }

  metrics(): TetherMetrics {
    this.metricsCalls += 1;
    return { ...this.figures };
  }

  health(): TetherHealth {
    return { alerts: [...this.advice.alerts], recommendations: [...this.advice.recommendations] };
  }

  send(data: unknown): number {
    this.sent.push(data);
    return this.sent.length;
  }

  sendConfirmed(data: unknown): Promise<number> {
    return Promise.resolve(this.send(data));
  }

  close(): Promise<void> {
    this.closes += 1;
    if (this.state !== 'closed') this.become('closed');
    return Promise.resolve();
  }

  reconnect(): void {
    this.reconnects += 1;
  }

  /** Typed as the real thing, for the provider's `client` prop. */
  get asClient(): TetherClient {
    return this as unknown as TetherClient;
  }
}
