// Type-checked with the tests' nodenext: a CommonJS module's `require` gets the `.d.cts`
// declarations (the `require` condition), not the ES module's.
import client = require('@tether/client');
import react = require('@tether/client/react');

export const ready: () => Promise<void> = client.ready;
export const make = (url: string): InstanceType<typeof client.TetherClient> => new client.TetherClient(url);
export const Provider = react.TetherProvider;
