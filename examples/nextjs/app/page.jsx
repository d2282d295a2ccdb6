// A server component, rendered on the server for each request: it reads where the Tether
// server is (TETHER_URL, when `next start` runs) and renders the client component below,
// which the server renders too: the provider opens nothing there.
import Live from './live.jsx';

export const dynamic = 'force-dynamic';

export default function Page() {
  return (
    <main>
      <h1>Tether with Next.js</h1>
      <Live url={process.env.TETHER_URL ?? 'ws://127.0.0.1:8080/ws'} />
    </main>
  );
}
