#!/usr/bin/env bash
# End-to-end tests of the JavaScript side, against the real reference server on 127.0.0.1:
# SharedTetherClient in three tabs of one Chromium (bindings/js/e2e: every tab receives every
# message once while the leader tab is closed or every tab reloaded, one connection at the
# server), the React example (examples/react-dashboard) in headless Chromium through
# playwright-core (server restart, offline/online, three tabs sharing one connection, a
# screenshot in target/e2e/), the Next.js example
# (examples/nextjs: next build, next start on a free loopback port, GET / answers 200, and
# Chromium sees it connect and receive), then the Node harness with 200 clients through a
# server restart (lost=0 duplicated=0).
# Needs `npm ci` first; builds the reference server, @tether/client (from bindings/wasm/pkg
# when the wasm is built, else the wasm too) and the app. Installs Debian's chromium if
# /usr/bin/chromium is missing. Stops every process it started, whatever happens.
# Usage: bash scripts/test-e2e.sh            (scripts/test.sh calls it)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Each step runs in its own process group, so a stop takes its reference server and
# browser along even if the step itself is killed before it can clean up.
running=""
stop_running() {
    if [ -n "$running" ]; then
        kill -TERM -- "-$running" 2>/dev/null || true
        wait "$running" 2>/dev/null || true
        running=""
    fi
}
trap stop_running EXIT
trap 'stop_running; exit 130' INT
trap 'stop_running; exit 143' TERM
in_group() {
    setsid "$@" &
    running=$!
    local status=0
    wait "$running" || status=$?
    running=""
    return "$status"
}

step "chromium"
if [ ! -x /usr/bin/chromium ]; then
    as_root apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium
fi
/usr/bin/chromium --version

step "format (prettier)"
(cd examples && ../node_modules/.bin/prettier --check .)

step "reference server"
cargo build --locked -q -p tether-server --bin tether-server

step "build @tether/client"
if [ -f bindings/wasm/pkg/tether_wasm_bg.wasm ]; then
    node bindings/js/scripts/build.mjs --no-wasm
else
    node bindings/js/scripts/build.mjs
fi

step "one connection for every tab: @tether/client in three Chromium tabs (playwright-core)"
in_group node --test --test-concurrency=1 bindings/js/e2e/

step "build the React example"
npm run --silent build -w tether-react-dashboard

step "React example in Chromium (playwright-core)"
in_group node --test --test-concurrency=1 examples/react-dashboard/e2e/
echo "screenshots: target/e2e/dashboard.png, target/e2e/page.png, target/e2e/outage.png"

step "Next.js example: next build, next start, Chromium (playwright-core)"
NEXT_TELEMETRY_DISABLED=1 in_group node --test --test-concurrency=1 examples/nextjs/e2e/

step "Node harness: 200 clients through a server restart"
log=$(mktemp)
status=0
in_group node examples/node-harness.mjs --clients 200 >"$log" 2>&1 || status=$?
cat "$log"
summary=$(grep '^summary:' "$log" || true)
rm -f "$log"
case "$status $summary" in
"0 summary:"*" lost=0 duplicated=0 "*) echo "harness: 1 passed, 0 failed" ;;
*)
    echo "harness: 0 passed, 1 failed (exit $status)" >&2
    exit 1
    ;;
esac
