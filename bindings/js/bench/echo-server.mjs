// The `ws` echo server of the bench, in a process of its own so that neither its CPU nor
// its memory lands in the client's figures: 127.0.0.1, a free port, each message sent
// back as it came (text as text, binary as binary). Tells its port to the parent over
// IPC and exits when the parent disconnects.
import { WebSocketServer } from 'ws';

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
wss.on('listening', () => process.send({ port: wss.address().port }));
process.on('disconnect', () => process.exit(0));
