import { useEffect, useState } from 'react';

/** The server's side, from its `GET /api/websocket/metrics` every two seconds. */
export function ServerCard({ api }) {
  const [metrics, setMetrics] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    let live = true;
    const load = async () => {
      try {
        const res = await fetch(`${api}/api/websocket/metrics`);
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        const m = await res.json();
        if (!live) return;
        setMetrics(m);
        setError(null);
      } catch (e) {
        if (live) setError(e.message === 'Failed to fetch' ? 'unreachable' : e.message);
      }
    };
    load();
    const timer = setInterval(load, 2000);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [api]);
  // Figures from a server that no longer answers are not shown as if they were current.
  if (error)
    return (
      <p className="unreachable" data-testid="server-unreachable">
        Server unreachable{error === 'unreachable' ? '' : ` (${error})`}; its figures will be back when it answers.
      </p>
    );
  if (!metrics) return <p className="muted">loading…</p>;
  const figures = [
    ['Active connections', metrics.active_connections],
    ['Sessions kept', metrics.sessions],
    ['Connections since start', metrics.total_connections],
    ['Connection reliability', `${metrics.connection_reliability.toFixed(1)} %`],
    ['Messages in / out', `${metrics.messages_in_total} / ${metrics.messages_out_total}`],
    ['Average latency', metrics.latency_samples ? `${metrics.average_latency_ms.toFixed(1)} ms` : '–'],
  ];
  return (
    <dl className="figures" data-testid="server-metrics">
      {figures.map(([label, value]) => (
        <div key={label}>
          <dt>{label}</dt>
          <dd>{value}</dd>
        </div>
      ))}
    </dl>
  );
}
