// Time to first render and to connected, React with Tether: a <TetherProvider> (plain
// mode) and the connection state from useConnectionState. The provider renders at once;
// the WebAssembly is fetched and compiled when the connection opens.
import { useLayoutEffect } from 'react';
import { createRoot } from 'react-dom/client';
import { TetherProvider, useConnectionState } from '@tether/client/react';

const url = new URLSearchParams(location.search).get('ws');

function Status() {
  const state = useConnectionState();
  useLayoutEffect(() => {
    window.__marks.rendered ??= performance.now();
  }, []);
  if (state === 'connected') window.__marks.connected ??= performance.now();
  return <p data-state={state}>Status: {state}</p>;
}

createRoot(document.getElementById('root')).render(
  <TetherProvider url={url}>
    <Status />
  </TetherProvider>,
);
