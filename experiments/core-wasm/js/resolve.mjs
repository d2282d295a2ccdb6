// `node --import` hook for test.sh: `tether-wasm` is out/pkg/index.js (the core-only
// design) rather than bindings/wasm's build.
import { register } from 'node:module';
register(
  'data:text/javascript,' +
    encodeURIComponent(`
const target = ${JSON.stringify(new URL('../out/pkg/index.js', import.meta.url).href)};
export async function resolve(specifier, context, next) {
  if (specifier === 'tether-wasm') return { url: target, shortCircuit: true };
  return next(specifier, context);
}`),
);
