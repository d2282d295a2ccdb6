// Where the reference server is: `?server=http://127.0.0.1:PORT` in the page's URL, else
// `/config.json` (written by demo.mjs), else 127.0.0.1:8080, the binary's default.
// `?room=NAME` picks the chat room (default "lobby"), `?name=` the name shown.
export async function loadConfig(location = window.location) {
  const params = new URLSearchParams(location.search);
  let server = params.get('server');
  if (!server) {
    try {
      const res = await fetch(new URL('config.json', location.href));
      if (res.ok) server = (await res.json()).server;
    } catch {
      // No config.json (the Vite dev server): the default below.
    }
  }
  const http = new URL(server || 'http://127.0.0.1:8080');
  http.protocol = http.protocol === 'wss:' || http.protocol === 'https:' ? 'https:' : 'http:';
  const room = params.get('room') || 'lobby';
  const ws = new URL(`/ws?room=${encodeURIComponent(room)}`, http);
  ws.protocol = http.protocol === 'https:' ? 'wss:' : 'ws:';
  return {
    room,
    name: params.get('name') || `guest-${Math.floor(Math.random() * 9000 + 1000)}`,
    api: http.origin,
    url: ws.href,
    pollUrl: new URL(`/poll?room=${encodeURIComponent(room)}`, http).href,
    // No room: the server echoes each message back, which the self-test needs.
    selfTestUrl: new URL('/ws', ws).href,
  };
}
