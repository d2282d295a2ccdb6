// TetherSocket in a page (jsdom): see socket.cases.ts.
import { socketTests } from './socket.cases.js';

socketTests();
