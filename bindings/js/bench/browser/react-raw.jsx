// Time to first render and to connected, React alone: a WebSocket opened in an effect.
import { useEffect, useLayoutEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';

const url = new URLSearchParams(location.search).get('ws');

function App() {
  const [state, setState] = useState('connecting');
  useLayoutEffect(() => {
    window.__marks.rendered ??= performance.now();
  }, []);
  useEffect(() => {
    const ws = new WebSocket(url);
    ws.onopen = () => {
      window.__marks.connected ??= performance.now();
      setState('connected');
    };
    return () => ws.close();
  }, []);
  return <p data-state={state}>Status: {state}</p>;
}

createRoot(document.getElementById('root')).render(<App />);
