#!/usr/bin/env bash
# Builds the npm package of the wasm bindings into bindings/wasm/pkg: the core-only wasm
# (bindings/wasm: the core and its dispatcher behind plain `extern "C"` exports) by cargo,
# what web-time's unused wasm-bindgen bindings left in it removed
# (scripts/strip-wasm-imports.mjs), wasm-opt from the npm package `binaryen` (Debian's
# wasm-opt 108 corrupts wasm output), then the JavaScript (js/index.js, the wrapper; its
# driver js/driver.js over tether-web's shim.js; js/options.js, js/guard.js) bundled into
# one ES module by esbuild, minified in release (esbuild, then terser).
# Release builds use a pinned nightly toolchain (installed here when missing, with
# rust-src): the standard library is rebuilt for size (`build-std`, `optimize_for_size`)
# and a panic aborts at once (`panic=immediate-abort`: no panic messages or formatting
# in the binary; a panic still traps, see bindings/wasm/README.md), with no caller
# locations either (`location-detail=none`). About 9.8 kB gzip less than stable
# (BENCHMARKS.md). Dev builds use the default toolchain and keep the names.
# Usage: bash scripts/build-wasm.sh [release|dev] [cargo arguments]     (needs `npm ci`)
# The cargo arguments measure a build without some of tether-wasm's parts, e.g.
# `release --no-default-features --features metrics,quality` (bindings/wasm/Cargo.toml).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-release}
shift || true
# Cargo arguments given: a build that measures leaving parts out (its JavaScript may call
# exports it lacks, so the exports keep their names).
measuring=$#
target_dir=${CARGO_TARGET_DIR:-target}
out=bindings/wasm/pkg

case "$mode" in
release)
    nightly=nightly-2026-05-20
    if ! rustup component list --toolchain "$nightly" --installed 2>/dev/null | grep -q '^rust-src'; then
        rustup toolchain install "$nightly" --profile minimal --component rust-src
    fi
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
        --config 'build.rustflags=["-Zunstable-options", "-Cpanic=immediate-abort", "-Zlocation-detail=none"]' \
        "$@"
    wasm=$target_dir/wasm32-unknown-unknown/wasm-release/tether_wasm.wasm
    ;;
dev)
    cargo build --locked -p tether-wasm --target wasm32-unknown-unknown "$@"
    wasm=$target_dir/wasm32-unknown-unknown/debug/tether_wasm.wasm
    ;;
*)
    echo "usage: $0 [release|dev]" >&2
    exit 2
    ;;
esac

# The export map of an earlier release build goes with it.
rm -rf "$out" bindings/wasm/exports.json
mkdir -p "$out"
node scripts/strip-wasm-imports.mjs "$wasm" "$out/stripped.wasm"
features=(--enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext
    --enable-mutable-globals --enable-reference-types --enable-multivalue)
if [ "$mode" = release ]; then
    # Identical and near-identical functions (monomorphised copies differing in constants)
    # are merged first; the control flow is flattened and rebuilt (`--flatten --rereloop`),
    # which leaves the functions more alike, then -Oz, a second merge of the near-identical
    # ones and -Oz; last, the functions are ordered by name, which puts each module's
    # together where gzip finds what they share. The names, debug info and the list of
    # target features (for tools only) go then.
    # `--low-memory-unused`: no address below 1 KiB is used (Rust puts the 1 MiB stack
    # first, growing down: its last KiB is reached only on the brink of an overflow), so
    # constant offsets fold into loads and stores. Each step's figure is in
    # BENCHMARKS.md ("wasm-opt's passes").
    node_modules/.bin/wasm-opt --low-memory-unused \
        --duplicate-function-elimination --merge-similar-functions \
        --flatten --rereloop -Oz --converge --merge-similar-functions -Oz \
        --reorder-functions-by-name --strip-debug --strip-producers --strip-target-features \
        "${features[@]}" \
        "$out/stripped.wasm" -o "$out/tether_wasm_bg.wasm"
else
    # Only what the stripped exports alone kept (their imports among it).
    node_modules/.bin/wasm-opt --remove-unused-module-elements "${features[@]}" \
        "$out/stripped.wasm" -o "$out/tether_wasm_bg.wasm"
fi
rm "$out/stripped.wasm"
minify=()
[ "$mode" = release ] && minify=(--minify)
# guard.js stands in for the globals `queueMicrotask`, `setTimeout` and `clearTimeout`
# in the whole bundle (the driver and tether-web's shim included): it notices a trap of
# the instance wherever JavaScript calls into it on its own. The wrapper and the driver
# reach tether-web's shim.js (sockets, requests, page hints, the shared timer) as
# `tether-web-shim`.
node_modules/.bin/esbuild bindings/wasm/js/index.js --bundle --format=esm --target=es2022 \
    --platform=neutral --external:'node:*' --log-level=warning "${minify[@]}" \
    --inject:bindings/wasm/js/guard.js --alias:tether-web-shim=./crates/tether-web/src/shim.js \
    --outfile="$out/index.js"
if [ "$mode" = release ]; then
    # terser after esbuild's minifier: three compression passes find what one leaves
    # (0.5 kB gzip less, BENCHMARKS.md).
    node_modules/.bin/terser "$out/index.js" --module --compress passes=3 --mangle \
        --output "$out/index.js"
    # The exports' short names, in the .wasm and the JavaScript alike.
    if [ "$measuring" -eq 0 ]; then
        node scripts/minify-wasm-exports.mjs "$out"
    fi
fi
# What is shipped: index.js (everything JavaScript), the .wasm, and the declarations.
cp bindings/wasm/js/index.d.ts bindings/wasm/js/tether_wasm.d.ts "$out/"
echo "built $out ($mode)"
