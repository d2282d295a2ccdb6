#!/usr/bin/env bash
# Runs every test suite of Tether. Installs what it needs first, skipping what is there.
# Usage: bash scripts/test.sh        (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "the core stays free of I/O crates"
bash scripts/check-core-deps.sh

step "tether-native's feature sets (no default features, rustls, polling, native-tls, all)"
bash scripts/check-native-features.sh

# The crates on crates.io, packaged and built as a user would get them (the local crates
# resolve together; the index comes from crates.io, as the build's dependencies do).
step "publishable: cargo publish --dry-run of tether-core, tether-dispatch, tether-native, tether-web, tether-server"
# Cargo unpacks the packaged dependencies (tether-core …) into its source cache under a
# directory named after the package directory's path, and reuses them if they are there:
# a second run from the same checkout would verify against the first run's sources. Only
# our own crates, only in those temporary registries (their directories start with '-').
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/tether-*
cargo publish --workspace --dry-run --locked --allow-dirty --quiet

# The multi-instance tests (crates/tether-server/tests/redis.rs, and
# crates/tether-native/tests/instances.rs and cluster.rs: three instances behind the
# testkit's balancer) start their own redis-server on a loopback port; they fail, not
# skip, without it.
step "redis-server (Debian's package) for the multi-instance tests"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v redis-server >/dev/null 2>&1; then
  as_root apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get -o DPkg::Lock::Timeout=600 install -y -qq redis-server
fi
redis-server --version

step "unit, property, integration and doc tests"
cargo test --workspace --locked --exclude tether-sim

step "deterministic simulation (release mode; TETHER_SIM_SEEDS=${TETHER_SIM_SEEDS:-10000}, TETHER_SIM_SEED=${TETHER_SIM_SEED:-0})"
cargo test --release --locked -p tether-sim -- --nocapture

# Browser and Node: wasm-bindgen tests in Node and headless Chromium, the package size,
# the JavaScript API tests. Installs the wasm target, wasm-bindgen-cli, chromium and the
# npm packages when missing.
bash scripts/test-wasm.sh

# The npm package @tether/client and its React layer (Vitest against the reference server).
bash scripts/test-js.sh

# End to end: the React example in headless Chromium (Playwright) against the reference
# server through a restart and offline/online, and the Node harness with 200 clients.
bash scripts/test-e2e.sh
