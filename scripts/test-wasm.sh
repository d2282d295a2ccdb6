#!/usr/bin/env bash
# Tests of the browser and Node side: the wasm-bindgen tests of tether-web (the Rust
# browser driver) in Node and in
# headless Chromium, the size of the npm package, and the JavaScript tests of the package
# (node --test), all against the reference server behind the fault harness on 127.0.0.1.
# Installs what is missing first: the wasm32 target, wasm-bindgen-cli (the version in
# Cargo.lock), Debian's chromium and chromium-driver, the npm packages (npm ci).
# Usage: bash scripts/test-wasm.sh            (scripts/test.sh calls it)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

step "wasm toolchain"
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi
bindgen=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }')" != "$bindgen" ]; then
    # No --locked: wasm-bindgen-cli's own lock file does not build with this toolchain.
    cargo install wasm-bindgen-cli --version "$bindgen"
fi
wasm-bindgen --version

step "chromium and chromedriver"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    as_root apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium chromium-driver
fi
chromium --version

step "npm packages"
npm ci --no-audit --no-fund

step "reference server"
cargo build --locked -q -p tether-server --bin tether-server
server="${CARGO_TARGET_DIR:-target}/debug/tether-server"

step "fault harness"
harness_log=$(mktemp)
node scripts/wasm-harness.mjs "$server" >"$harness_log" 2>&1 &
harness_pid=$!
stop_harness() {
    kill "$harness_pid" 2>/dev/null || true
    wait "$harness_pid" 2>/dev/null || true
    rm -f "$harness_log"
}
trap stop_harness EXIT
for _ in $(seq 1 300); do
    address=$(sed -n 's/^harness listening on //p' "$harness_log")
    [ -n "$address" ] && break
    kill -0 "$harness_pid" 2>/dev/null || { cat "$harness_log"; exit 1; }
    sleep 0.1
done
[ -n "${address:-}" ] || { cat "$harness_log"; echo "the harness did not start" >&2; exit 1; }
export TETHER_HARNESS=$address
echo "harness on $TETHER_HARNESS"

export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner

step "wasm-bindgen tests in Node"
NODE_OPTIONS="--require $PWD/scripts/node-websocket-global.cjs" \
    cargo test --locked -p tether-web --target wasm32-unknown-unknown

step "wasm-bindgen tests in headless Chromium"
WASM_BINDGEN_USE_BROWSER=1 \
    CHROMEDRIVER="$(command -v chromedriver)" \
    WASM_BINDGEN_TEST_WEBDRIVER_JSON="$PWD/scripts/webdriver.json" \
    cargo test --locked -p tether-web --target wasm32-unknown-unknown

step "the npm package's wasm (tether-wasm) linted for its own target"
cargo clippy --locked -p tether-wasm --target wasm32-unknown-unknown -- -D warnings

step "npm package (release build) and its size"
bash scripts/build-wasm.sh release
node scripts/size.mjs bindings/wasm/pkg

step "TypeScript declarations"
node_modules/.bin/tsc -p bindings/wasm/tests/tsconfig.json

step "JavaScript tests (node --test)"
(cd bindings/wasm && node --test --test-concurrency=1 tests/)
