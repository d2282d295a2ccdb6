import { defineConfig } from 'vitest/config';

export default defineConfig({
  oxc: { jsx: { runtime: 'automatic' } },
  test: {
    environment: 'jsdom',
    include: ['test/**/*.test.{ts,tsx}'],
    // The package as Node loads it from node_modules: not transformed (Vite would turn its
    // `new URL(…, import.meta.url)` into an http:// URL of the jsdom page).
    server: { deps: { external: [/bindings\/js\/dist\//] } },
    // Each file starts its own reference server; timing-sensitive counts stay apart.
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
