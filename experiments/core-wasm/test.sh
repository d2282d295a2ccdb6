#!/usr/bin/env bash
# Runs the npm package's JavaScript tests (bindings/wasm/tests) against the core-only
# design (out/pkg, pack.sh), behind the fault harness on 127.0.0.1 as
# scripts/test-wasm.sh runs them against today's package.
# Usage: bash experiments/core-wasm/test.sh [test files...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
cargo build --locked -q -p tether-server --bin tether-server
log=$(mktemp)
node scripts/wasm-harness.mjs "${CARGO_TARGET_DIR:-target}/debug/tether-server" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 300); do
    address=$(sed -n 's/^harness listening on //p' "$log")
    [ -n "$address" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
done
export TETHER_HARNESS=$address
cd bindings/wasm
if [ $# -gt 0 ]; then files=("$@"); else files=(tests/); fi
node --import "$here/js/resolve.mjs" --test --test-concurrency=1 "${files[@]}"
