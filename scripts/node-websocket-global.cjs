// Preloaded into Node 20 for the wasm tests: Node 20 has no global WebSocket, so give it
// the `ws` package's, as Node 22 has one of its own. (The JavaScript tests instead pass
// the constructor as the `WebSocket` option.)
if (typeof globalThis.WebSocket === 'undefined') {
  globalThis.WebSocket = require('ws');
}
