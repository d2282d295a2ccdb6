#!/usr/bin/env bash
# Tests of the npm package @tether/client (bindings/js): builds it (the wasm package in
# release mode, copied in, then the TypeScript), checks its formatting and types, runs its
# Vitest suite (jsdom and Node, against the reference server on 127.0.0.1, started and
# stopped by the tests themselves), its Jest test (jsdom, CommonJS: the README's recipe),
# its CommonJS entries in plain Node, and prints its size.
# Needs `npm ci` first; installs the wasm32 target when missing.
# Usage: bash scripts/test-js.sh            (scripts/test.sh calls it)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "wasm toolchain"
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi

step "reference server"
cargo build --locked -q -p tether-server --bin tether-server

step "build @tether/client"
node bindings/js/scripts/build.mjs

step "format (prettier) and types (tsc)"
(cd bindings/js && ../../node_modules/.bin/prettier --check .)
node_modules/.bin/tsc -p bindings/js/test/tsconfig.json
# The old `moduleResolution: "node"` (typesVersions).
node_modules/.bin/tsc -p bindings/js/test/resolution/tsconfig.json

step "tests (vitest)"
(cd bindings/js && ../../node_modules/.bin/vitest run)

step "Jest (jsdom), as the package's README tells users to run it"
(cd bindings/js && ../../node_modules/.bin/jest -c jest/jest.config.cjs)

step "CommonJS entries in plain Node"
(cd bindings/js && node -e "
  const { TetherClient, ready } = require('@tether/client');
  const react = require('@tether/client/react');
  const { TetherSocket } = require('@tether/client/socket');
  if (typeof TetherClient !== 'function' || typeof ready !== 'function' || typeof react.TetherProvider !== 'function') process.exit(1);
  if (typeof TetherSocket !== 'function' || TetherSocket.OPEN !== 1) process.exit(1);
  console.log('require: ok');
")

step "size (min+gz)"
node bindings/js/scripts/size.mjs
