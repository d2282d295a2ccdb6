#!/usr/bin/env bash
# Builds the npm package of the wasm bindings into bindings/wasm/pkg: cargo, then
# wasm-bindgen (--target web), then (release) wasm-opt -Oz from the npm package
# `binaryen` (Debian's wasm-opt 108 corrupts wasm-bindgen's output) and short import
# names (scripts/minify-wasm-names.mjs), then the wrapper
# (js/index.js, with js/options.js and js/guard.js), bundled with wasm-bindgen's glue and snippets into one ES module by
# esbuild, minified in release.
# Release builds use a pinned nightly toolchain (installed here when missing, with
# rust-src): the standard library is rebuilt for size (`build-std`, `optimize_for_size`)
# and a panic aborts at once (`panic=immediate-abort`: no panic messages or formatting
# in the binary; a panic still traps, see bindings/wasm/README.md), with no caller
# locations either (`location-detail=none`). About 9.8 kB gzip less than stable
# (BENCHMARKS.md). Dev builds use the default toolchain.
# Usage: bash scripts/build-wasm.sh [release|dev]     (needs `npm ci`)
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-release}
target_dir=${CARGO_TARGET_DIR:-target}
out=bindings/wasm/pkg

case "$mode" in
release)
    nightly=nightly-2026-05-20
    if ! rustup component list --toolchain "$nightly" --installed 2>/dev/null | grep -q '^rust-src'; then
        rustup toolchain install "$nightly" --profile minimal --component rust-src
    fi
    # File names in the binary (log sites) name the crates.io sources by their path
    # relative to the registry (`tracing-core-0.1.36/src/field.rs`), not the builder's
    # home directory.
    remap=""
    for index in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/; do
        remap+="${remap:+, }\"--remap-path-prefix=$index=\""
    done
    # Profiles live in the root manifest only, and its release profile keeps debug info
    # for benchmarks: the size profile is defined here.
    cargo "+$nightly" build --locked -p tether-wasm --target wasm32-unknown-unknown --profile wasm-release \
        -Z build-std=std,panic_abort -Z build-std-features=optimize_for_size \
        --config 'profile.wasm-release.inherits="release"' \
        --config 'profile.wasm-release.opt-level="z"' \
        --config 'profile.wasm-release.lto=true' \
        --config 'profile.wasm-release.codegen-units=1' \
        --config 'profile.wasm-release.debug=0' \
        --config 'profile.wasm-release.strip=false' \
        --config 'profile.wasm-release.panic="abort"' \
        --config "build.rustflags=[$remap${remap:+, }\"-Zunstable-options\", \"-Cpanic=immediate-abort\", \"-Zlocation-detail=none\"]"
    wasm=$target_dir/wasm32-unknown-unknown/wasm-release/tether_wasm.wasm
    ;;
dev)
    cargo build --locked -p tether-wasm --target wasm32-unknown-unknown
    wasm=$target_dir/wasm32-unknown-unknown/debug/tether_wasm.wasm
    ;;
*)
    echo "usage: $0 [release|dev]" >&2
    exit 2
    ;;
esac

rm -rf "$out"
wasm-bindgen --target web --out-dir "$out" --out-name tether_wasm "$wasm"
if [ "$mode" = release ]; then
    # wasm-opt strips the names and debug info (strip=true above would drop the
    # target_features section wasm-bindgen reads).
    # Identical and near-identical functions (monomorphised copies differing in constants)
    # are merged first, then -Oz: about 0.5 kB gzip less than -Oz alone.
    node_modules/.bin/wasm-opt --duplicate-function-elimination --merge-similar-functions \
        -Oz --converge --strip-debug --strip-producers \
        --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
        --enable-mutable-globals --enable-reference-types --enable-multivalue \
        "$out/tether_wasm_bg.wasm" -o "$out/tether_wasm_bg.wasm"
    node scripts/minify-wasm-names.mjs "$out"
fi
minify=()
[ "$mode" = release ] && minify=(--minify)
cp bindings/wasm/js/index.js "$out/wrapper.js"
cp bindings/wasm/js/guard.js "$out/guard.js"
cp bindings/wasm/js/options.js "$out/options.js"
# guard.js stands in for the globals `queueMicrotask`, `setTimeout` and `clearTimeout`
# in the whole bundle (wasm-bindgen's glue included): it notices a trap of the instance
# wherever JavaScript calls into it on its own. The wrapper reaches tether-web's shim.js
# (to end its sockets once the instance is dead) as `tether-web-shim`.
shim=$(echo "$out"/snippets/tether-web-*/src/shim.js)
node_modules/.bin/esbuild "$out/wrapper.js" --bundle --format=esm --target=es2022 \
    --platform=neutral --external:'node:*' --log-level=warning "${minify[@]}" \
    --inject:"$out/guard.js" --alias:tether-web-shim="./$shim" \
    --outfile="$out/index.js"
# What is shipped: index.js (everything JavaScript), the .wasm, and the declarations.
rm -rf "$out/wrapper.js" "$out/guard.js" "$out/options.js" "$out/tether_wasm.js" "$out/snippets" "$out/tether_wasm_bg.wasm.d.ts"
cp bindings/wasm/js/index.d.ts "$out/"
echo "built $out ($mode)"
