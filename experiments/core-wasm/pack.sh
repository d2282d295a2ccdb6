#!/usr/bin/env bash
# Packs the npm package of the core-only design into out/pkg, as scripts/build-wasm.sh
# packs today's: the wrapper (bindings/wasm/js/index.js, options.js, guard.js) over
# js/bridge.js in place of wasm-bindgen's glue, bundled by esbuild (minified, guard.js
# injected), next to out/full.wasm (build.sh) as tether_wasm_bg.wasm.
# Usage: bash experiments/core-wasm/pack.sh        (after build.sh)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$here/out/pkg"
rm -rf "$out"
mkdir -p "$out"
cp "$root/bindings/wasm/js/index.js" "$out/wrapper.js"
cp "$root/bindings/wasm/js/options.js" "$root/bindings/wasm/js/guard.js" "$out/"
printf "export * from '%s';\nexport { default } from '%s';\n" "$here/js/bridge.js" "$here/js/bridge.js" > "$out/tether_wasm.js"
"$root/node_modules/.bin/esbuild" "$out/wrapper.js" --bundle --format=esm --target=es2022 \
    --platform=neutral --external:'node:*' --log-level=warning ${MINIFY---minify} \
    --inject:"$out/guard.js" --alias:tether-guard="$out/guard.js" \
    --alias:tether-web-shim="$root/crates/tether-web/src/shim.js" \
    --outfile="$out/index.js"
rm "$out/wrapper.js" "$out/options.js" "$out/guard.js" "$out/tether_wasm.js"
cp "$here/out/full.wasm" "$out/tether_wasm_bg.wasm"
cp "$root/bindings/wasm/js/index.d.ts" "$out/"
echo "packed $out: js_gz=$(gzip -9 -c "$out/index.js" | wc -c) wasm_gz=$(gzip -9 -c "$out/tether_wasm_bg.wasm" | wc -c)"
