#!/usr/bin/env bash
# Builds the core-only wasm exactly as scripts/build-wasm.sh builds the npm package's
# (the pinned nightly, build-std with optimize_for_size, panic=immediate-abort,
# location-detail=none, opt-level z, LTO, one codegen unit; then wasm-opt with the same
# passes), and prints its gzip -9 size. No wasm-bindgen: the exports are plain extern "C".
# Usage: bash experiments/core-wasm/build.sh [name] [cargo feature flags...]
#   e.g. build.sh no-health --no-default-features --features selftest,handoff,...
# Writes out/<name>.wasm (optimized, names stripped) and out/<name>.names.wasm (the
# same passes, names kept, for twiggy). Needs `npm ci` in the repository's root.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"
name=${1:-full}
shift || true
nightly=nightly-2026-05-20
if ! rustup component list --toolchain "$nightly" --installed 2>/dev/null | grep -q '^rust-src'; then
    rustup toolchain install "$nightly" --profile minimal --component rust-src
fi
remap=""
for index in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/; do
    remap+="${remap:+, }\"--remap-path-prefix=$index=\""
done
cargo "+$nightly" build --locked --target wasm32-unknown-unknown --profile wasm-release \
    -Z build-std=std,panic_abort -Z build-std-features=optimize_for_size \
    --config 'profile.wasm-release.inherits="release"' \
    --config 'profile.wasm-release.opt-level="z"' \
    --config 'profile.wasm-release.lto=true' \
    --config 'profile.wasm-release.codegen-units=1' \
    --config 'profile.wasm-release.debug=0' \
    --config 'profile.wasm-release.strip=false' \
    --config 'profile.wasm-release.panic="abort"' \
    --config "build.rustflags=[$remap${remap:+, }\"-Zunstable-options\", \"-Cpanic=immediate-abort\", \"-Zlocation-detail=none\"]" \
    "$@"
wasm=target/wasm32-unknown-unknown/wasm-release/tether_core_wasm.wasm
mkdir -p out
# What wasm-bindgen's CLI would strip (web-time's unused js-sys descriptors): strip.mjs.
node strip.mjs "$wasm" out/stripped.wasm
wasm=out/stripped.wasm
passes=(--duplicate-function-elimination --merge-similar-functions -Oz --converge
    --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext
    --enable-mutable-globals --enable-reference-types --enable-multivalue)
"$root/node_modules/.bin/wasm-opt" "${passes[@]}" --strip-debug --strip-producers "$wasm" -o "out/$name.wasm"
"$root/node_modules/.bin/wasm-opt" "${passes[@]}" -g "$wasm" -o "out/$name.names.wasm"
rm -f out/stripped.wasm
echo "core-wasm $name: raw=$(wc -c < "out/$name.wasm") gz=$(gzip -9 -c "out/$name.wasm" | wc -c)"
