#!/usr/bin/env bash
# Bundles the JavaScript of a core-only design as scripts/build-wasm.sh bundles the npm
# package's (esbuild, minified, guard.js injected): the package's wrapper (js/index.js,
# js/options.js, js/guard.js, src/errors.js, src/emitter.js) over js/bridge.js in place of
# wasm-bindgen's glue, js/driver.js and js/snapshots.js in place of tether-web's driver,
# and tether-web's shim.js for fetch and page hints (its WebSocket part unused). Prints
# its gzip -9 size. Usage: bash experiments/core-wasm/estimate.sh [lite]
# (lite: js/bridge.js bundled with LITE=true, without health, handoff, the self-test and
# log lines).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
lite=false
[ "${1:-}" = lite ] && lite=true
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$root/bindings/wasm/js/index.js" "$root/bindings/wasm/js/options.js" "$root/bindings/wasm/js/guard.js" "$tmp/"
printf "export * from '%s';\nexport { default } from '%s';\n" "$here/js/bridge.js" "$here/js/bridge.js" > "$tmp/tether_wasm.js"
"$root/node_modules/.bin/esbuild" "$tmp/index.js" --bundle --format=esm --target=es2022 \
    --platform=neutral --external:'node:*' --log-level=warning --minify --define:LITE=$lite \
    --inject:"$tmp/guard.js" --alias:tether-web-shim="$root/crates/tether-web/src/shim.js" \
    --outfile="$here/out/index.js"
echo "core-only js${1:+ $1}: min=$(wc -c < "$here/out/index.js") gz=$(gzip -9 -c "$here/out/index.js" | wc -c)"
