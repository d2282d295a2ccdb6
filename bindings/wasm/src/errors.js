// The messages of the errors the WebAssembly throws, rejects with or reports: the same
// text as the core's `Display` impls (tether-core's io.rs (a transport's failure is its own `text()`), protocol/mod.rs,
// connection/handoff.rs; tether-web's BuildError), written here from a template number
// and its values (js/decode.js picks them), so that the WebAssembly holds neither the text nor
// `core::fmt`. `$a`, `$b` are numbers, `$s` a string (or the text of an inner error).

// Indexed by the numbers in src/texts.rs and js/decode.js (`T_*`; tests keep them in step).
const TEXTS = [
  // SendError
  'queue full ($a messages, $b bytes)',
  'message of $a bytes exceeds the limit of $b',
  'connection is $s',
  'the connection is closing',
  // DeliveryError
  'message refused: $s',
  'plain mode: the server acknowledges nothing',
  'message dropped: $s',
  'connection stopped: $s',
  'the client is gone',
  // TerminalReason
  'closed by the user (code $a, "$s")',
  'authentication rejected: $s',
  'replaced by a newer connection of the same user: $s',
  'fatal: $s',
  'gave up after $a failed attempts; last: $s',
  'the driver failed: $s',
  // Cause: a close code (or -1), an HTTP status (or -1), the reason.
  (code, status, reason) => {
    const head = code >= 0 ? `close ${code}` : status >= 0 ? `HTTP ${status}` : reason ? '' : 'no code';
    // A reason that only repeats the code ("HTTP 401 (HTTP 401)") says nothing.
    return !head ? reason : reason && reason !== head ? `${head} (${reason})` : head;
  },
  // TetherError
  'invalid frame from the server: $s',
  'protocol violation: $s',
  'discarded an inbound message of $a bytes',
  'token provider failed: $s',
  'connection attempt failed: $s',
  'invalid polling body: $s',
  // DropReason
  'pushed out of the full queue',
  'waited longer than queue.max_age',
  'the connection was closed first',
  'closed before the server acknowledged it (it may have arrived)',
  // DecodeError
  'empty frame',
  (tag) => `unknown envelope tag 0x${tag.toString(16).padStart(2, '0')}`,
  'missing field `$s`',
  'field `$s` is not a valid number',
  'truncated frame or batch',
  'control envelope in a binary frame',
  'message sequence number 0',
  'unexpected data after the fields',
  'unknown batch record kind $a',
  'text record is not UTF-8',
  'protocol version $s is not supported (this is version $a)',
  'field `secret` is not 32 hexadecimal digits',
  // BuildError (a TypeError, no kind)
  'the configuration asks for a token but no token provider was given',
  'the configuration has an HTTP polling fallback but the transport cannot poll',
  'the configuration names a wss:// or https:// URL but the transport has no TLS',
  'a session handoff needs protocol mode',
  'a session handoff names no session',
  "a session handoff's unacknowledged messages are misnumbered",
];

/** The text of template `t` with its values. */
export function text(t, a, b, s) {
  const x = TEXTS[t];
  return typeof x === 'function' ? x(a, b, s) : x.replace(/\$([abs])/g, (_, k) => (k === 'a' ? a : k === 'b' ? b : s));
}

/** An `Error` with a `kind` property, or without `kind` a `TypeError`. */
export function fail(kind, t, a, b, s) {
  if (!kind) return new TypeError(text(t, a, b, s));
  const e = new Error(text(t, a, b, s));
  e.kind = kind;
  return e;
}
