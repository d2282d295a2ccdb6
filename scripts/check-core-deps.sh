#!/usr/bin/env bash
# tether-core (and tether-dispatch) must not depend on any I/O, runtime, browser or clock crate. On
# wasm32-unknown-unknown its only dependency is web-time (the Instant type), which
# reaches js-sys solely to implement Instant::now() — a call the core never makes. On
# other targets its only dependency is bytes (payloads share their buffer; the browser
# build has a small Bytes of its own, which measured smaller in the wasm).
set -euo pipefail
cd "$(dirname "$0")/.."
banned='^(tokio|mio|socket2|tungstenite|tokio-tungstenite|async-tungstenite|hyper|reqwest|ureq|web-sys|gloo[a-z-]*|wasm-bindgen-futures|instant|chrono|time|async-std|smol|futures-timer) '
fail=0
for target in x86_64-unknown-linux-gnu wasm32-unknown-unknown; do
  tree=$(cargo tree -p tether-core -e normal --target "$target" --prefix none --format '{p}' --locked | sort -u)
  echo "tether-core normal dependencies on $target:"
  echo "$tree" | sed 's/^/  /'
  if echo "$tree" | grep -Eq "$banned"; then
    echo "error: tether-core depends on an I/O, runtime or clock crate on $target" >&2
    fail=1
  fi
  direct=$(cargo tree -p tether-core -e normal --target "$target" --depth 1 --prefix none --format '{p}' --locked | sed 1d | awk '{print $1}' | sort -u | tr '\n' ' ')
  case "$target" in
    wasm32-*) want="web-time " ;;
    *) want="bytes " ;;
  esac
  if [ "$direct" != "$want" ]; then
    echo "error: tether-core's direct dependencies on $target are '$direct', expected '$want'" >&2
    fail=1
  fi
  # The dispatcher is sans-IO too: the core, tracing, nothing that touches I/O or a clock.
  tree=$(cargo tree -p tether-dispatch -e normal --target "$target" --prefix none --format '{p}' --locked | sort -u)
  if echo "$tree" | grep -Eq "$banned"; then
    echo "error: tether-dispatch depends on an I/O, runtime or clock crate on $target" >&2
    fail=1
  fi
done
exit $fail
