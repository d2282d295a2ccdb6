// TetherSocket in plain Node (its Event, MessageEvent and Blob; no CloseEvent before
// Node 23): see socket.cases.ts.
// @vitest-environment node
import { socketTests } from './socket.cases.js';

socketTests();
