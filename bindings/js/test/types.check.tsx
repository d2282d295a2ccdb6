// Compiled by tsc only (scripts/test-js.sh): the public API as an app writes it.
import { setLogLevel, TetherClient, type TetherMessage, type TetherOptions } from '@tether/client';
import { TetherSocket } from '@tether/client/socket';
import {
  ConnectionHealthDashboard,
  ConnectionStatus,
  ReadyState,
  TetherProvider,
  TetherScope,
  useConnectionState,
  useLifecycleEvents,
  useMetrics,
  useQuality,
  useQueryInvalidation,
  useReconnectCountdown,
  useSendConfirmed,
  useTetherClient,
  useTetherMessages,
  useTetherSend,
  useTether,
  type LifecycleEvent,
  type QueryInvalidator,
  type ReconnectCountdown,
} from '@tether/client/react';

const options: TetherOptions = {
  protocol: true,
  heartbeat: { intervalMs: 1000 },
  tokenProvider: async () => ({ token: 't', expiresAt: Date.now() + 60_000 }),
};
setLogLevel('warn');
const client = new TetherClient('wss://example.com/ws', options);
const off: () => void = client.on('message', (m: TetherMessage) => m);
off();

declare const queryClient: QueryInvalidator;

export function App() {
  return (
    <>
      <TetherProvider url="wss://example.com/ws" options={options}>
        <Widgets />
        <ConnectionStatus className="badge" intervalMs={500} />
        <ConnectionHealthDashboard intervalMs={1000} samples={30} events={5} />
      </TetherProvider>
      <TetherProvider client={client}>
        <Widgets />
      </TetherProvider>
    </>
  );
}

function Widgets() {
  const c: TetherClient | null = useTetherClient();
  const state: 'disconnected' | 'connecting' | 'connected' | 'reconnecting' | 'error' | 'closed' = useConnectionState();
  const quality: 'excellent' | 'good' | 'fair' | 'poor' | 'critical' | null = useQuality();
  const rtt: number | null = useMetrics(1000, (m) => m.rttMs);
  const all = useMetrics();
  const events: readonly LifecycleEvent[] = useLifecycleEvents();
  const countdown: ReconnectCountdown | null = useReconnectCountdown();
  const send: (data: string | Uint8Array | object) => number = useTetherSend();
  const sendConfirmed: (data: string) => Promise<number> = useSendConfirmed();
  useTetherMessages(
    (m) => (typeof m === 'string' ? m.length : m.byteLength),
    (m) => typeof m === 'string',
  );
  useQueryInvalidation(queryClient, [
    { match: 'todo.changed', queryKey: ['todos'] },
    { match: (m) => m !== null, queryKey: (m) => ['thing', m] },
  ]);
  const first = events[0];
  if (first?.type === 'state') first.value.to satisfies string;
  void [c, state, quality, rtt, all?.reliability, countdown?.seconds, send, sendConfirmed];
  return null;
}

// @ts-expect-error: url and client are exclusive
<TetherProvider url="wss://x" client={client} />;

// useTether, as the README shows it; TetherSocket where a WebSocket is expected.
export function Prices({ symbol }: { symbol: string | null }) {
  const { sendJsonMessage, lastJsonMessage, readyState, getSocket, sendMessage, lastMessage } = useTether(
    symbol ? 'wss://example.com/prices' : null,
    {
      share: true,
      queryParams: { symbol: symbol ?? '' },
      onOpen: () => sendJsonMessage({ subscribe: symbol }),
      onClose: (e) => e.code satisfies number,
      protocol: true,
    },
  );
  sendMessage(new Uint8Array([1]), false);
  const data: unknown = lastMessage?.data;
  const socket = getSocket();
  const asWebSocket: Pick<WebSocket, 'readyState' | 'send' | 'close' | 'binaryType' | 'bufferedAmount'> | null = socket;
  void [data, asWebSocket];
  return <p>{readyState === ReadyState.OPEN ? JSON.stringify(lastJsonMessage) : 'connecting…'}</p>;
}
useTether(async () => 'wss://x', { enabled: false });
// @ts-expect-error: an unknown option
useTether('wss://x', { bogus: 1 });
<TetherScope name="chat" />;
new TetherSocket('wss://x', 'chat', { protocol: true }).onmessage = (e) => e.data;
