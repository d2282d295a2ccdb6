import { useConnectionState, useSendConfirmed, useTetherMessages } from '@tether/client/react';
import { useRef, useState } from 'react';

/** A chat message as it travels: JSON text, broadcast by the server to the whole room. */
function parseChat(raw) {
  if (typeof raw !== 'string') return null;
  try {
    const m = JSON.parse(raw);
    return m?.type === 'chat' && typeof m.text === 'string' ? m : null;
  } catch {
    return null;
  }
}

/**
 * The room's messages, and what this page sent that has not come back yet: typed while
 * offline it waits in the client's queue ("queued"), is written when the connection is
 * back ("sending"), acknowledged by the server ("delivered"), then arrives in the list
 * once, like everyone else's.
 */
export function Chat({ name }) {
  const state = useConnectionState();
  const sendConfirmed = useSendConfirmed();
  const [messages, setMessages] = useState([]);
  const [outbox, setOutbox] = useState([]);
  const [text, setText] = useState('');
  const sent = useRef(0);
  const list = useRef(null);

  useTetherMessages(
    (raw) => {
      const m = parseChat(raw);
      setMessages((all) => [...all, m].slice(-200));
      setOutbox((out) => out.filter((o) => o.id !== m.id));
      requestAnimationFrame(() => list.current?.scrollTo({ top: list.current.scrollHeight }));
    },
    (raw) => parseChat(raw) !== null,
  );

  const mark = (id, status) => setOutbox((out) => out.map((o) => (o.id === id ? { ...o, status } : o)));

  const submit = (event) => {
    event.preventDefault();
    const body = text.trim();
    if (!body) return;
    sent.current += 1;
    const id = `${name}-${Date.now().toString(36)}-${sent.current}`;
    const status = state === 'connected' ? 'sending' : 'queued';
    setOutbox((out) => [...out, { id, text: body, status }]);
    setText('');
    sendConfirmed(JSON.stringify({ type: 'chat', id, from: name, text: body, at: Date.now() })).then(
      () => mark(id, 'delivered'),
      (error) => mark(id, `failed: ${error.kind ?? error.message}`),
    );
  };

  return (
    <div className="chat">
      <ol className="messages" ref={list} data-testid="chat-messages">
        {messages.length === 0 && <li className="muted">No messages yet. Say hello.</li>}
        {messages.map((m) => (
          <li key={m.id} data-testid="chat-message" className={m.from === name ? 'mine' : ''}>
            <span className="from">{m.from}</span>
            <span className="text" data-testid="chat-text">
              {m.text}
            </span>
            <time>{new Date(m.at).toLocaleTimeString()}</time>
          </li>
        ))}
      </ol>
      {outbox.length > 0 && (
        <ul className="outbox" data-testid="chat-outbox" aria-label="Not yet in the room">
          {outbox.map((o) => (
            <li key={o.id} data-testid="chat-pending" data-status={o.status}>
              <span className="text">{o.text}</span>
              <span className="status">{o.status}</span>
            </li>
          ))}
        </ul>
      )}
      <form onSubmit={submit} className="compose">
        <input
          data-testid="chat-input"
          value={text}
          onChange={(e) => setText(e.target.value)}
          placeholder={state === 'connected' ? 'Message' : 'Message (queued until the connection is back)'}
          aria-label="Message"
          maxLength={500}
        />
        <button type="submit" data-testid="chat-send">
          Send
        </button>
      </form>
    </div>
  );
}
