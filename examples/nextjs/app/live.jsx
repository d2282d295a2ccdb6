'use client';
// The one client component: the provider (one connection for everything below it), the
// connection badge, and a line that sends a message once connected and shows the last
// one received (the reference server's /ws, in protocol mode, echoes). And the same with
// useTether, react-use-websocket's shape, which needs no provider.
import { useEffect, useState } from 'react';
import {
  ConnectionStatus,
  ReadyState,
  TetherProvider,
  useConnectionState,
  useTether,
  useTetherMessages,
  useTetherSend,
} from '@tether/client/react';

export default function Live({ url }) {
  return (
    <TetherProvider url={url} options={{ protocol: true }}>
      <ConnectionStatus />
      <Echo />
      <Standalone url={url} />
    </TetherProvider>
  );
}

function Standalone({ url }) {
  const { sendMessage, lastMessage, readyState } = useTether(url, { protocol: true });
  useEffect(() => {
    if (readyState === ReadyState.OPEN) sendMessage('hello from useTether');
  }, [readyState, sendMessage]);
  return <p data-testid="use-tether">{lastMessage?.data ?? '(nothing yet)'}</p>;
}

function Echo() {
  const state = useConnectionState();
  const send = useTetherSend();
  const [last, setLast] = useState(null);
  useTetherMessages((m) => setLast(String(m)));
  useEffect(() => {
    if (state === 'connected') send('hello from Next.js');
  }, [state, send]);
  return <p data-testid="received">{last ?? '(nothing yet)'}</p>;
}
