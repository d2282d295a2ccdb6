import { ConnectionHealthDashboard, ConnectionStatus, ReliabilitySelfTest, TetherProvider } from '@tether/client/react';

import { Chat } from './Chat.jsx';
import { ServerCard } from './ServerCard.jsx';

export function App({ config }) {
  // One connection for the whole page. Protocol mode: acknowledgements, resend and resume,
  // so what is typed while offline is delivered once when the connection is back; HTTP
  // polling takes over if WebSockets keep failing. A ping a second keeps the figures fresh.
  const options = {
    protocol: true,
    pollUrl: config.pollUrl,
    heartbeat: { intervalMs: 1000, timeoutMs: 1000 },
  };
  return (
    <TetherProvider url={config.url} options={options}>
      <header className="bar">
        <h1>
          Tether <span>React dashboard</span>
        </h1>
        <ConnectionStatus />
      </header>
      <main className="grid">
        <section className="card chat-card">
          <h2>
            Room <code>{config.room}</code> <span className="muted">as {config.name}</span>
          </h2>
          <Chat name={config.name} />
        </section>
        <section className="card">
          <h2>Connection health</h2>
          <ConnectionHealthDashboard />
        </section>
        <section className="card">
          <h2>
            Server <code>{config.api}</code>
          </h2>
          <ServerCard api={config.api} />
        </section>
        <section className="card">
          <h2>Reliability self-test</h2>
          {/* A connection of its own, to the echoing endpoint: the page's stays as it is. */}
          <ReliabilitySelfTest url={config.selfTestUrl} options={{ protocol: true }} />
        </section>
      </main>
    </TetherProvider>
  );
}
