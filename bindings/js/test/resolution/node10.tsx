// Type-checked with `moduleResolution: "node"` (tsconfig.json here) and with the tests'
// nodenext: both entries and their types resolve.
import { TetherClient, ready, type TetherOptions } from '@tether/client';
import { ConnectionStatus, TetherProvider } from '@tether/client/react';

const options: TetherOptions = { protocol: true };
export async function open(url: string): Promise<TetherClient> {
  await ready();
  return new TetherClient(url, options);
}
export const page = (
  <TetherProvider url="ws://127.0.0.1:8080/ws">
    <ConnectionStatus />
  </TetherProvider>
);
