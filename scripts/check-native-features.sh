#!/usr/bin/env bash
# tether-native's features (see its crate docs): every set below lints clean and passes
# the unit tests, some the integration tests too; without `polling` there is no reqwest in
# the tree; a plain WebSocket
# client (no default features) stays small and free of duplicate versions. The default
# set is linted and tested by the workspace steps of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# `native-tls` builds openssl-sys on Linux: it needs OpenSSL's headers and pkg-config.
if ! pkg-config --exists openssl 2>/dev/null; then
  as_root apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get -o DPkg::Lock::Timeout=600 install -y -qq libssl-dev pkg-config
fi

# The crates a build compiles (normal and build dependencies, tether-native included).
crates() {
  cargo tree -p tether-native -e normal,build --locked --prefix none --no-dedupe \
    --no-default-features --features "$1" | sort -u
}

fail=0
# Each set: lint (warnings denied, so a cfg that leaves something unused fails) and unit
# tests, which check what the set promises (a fallback or a wss:// URL refused without
# the feature that serves it).
for features in "" "rustls-webpki-roots" "polling" "rustls,polling" "native-tls,polling"; do
  echo "--- tether-native, no default features, features [$features]"
  cargo clippy -q -p tether-native --locked --no-default-features --features "$features" --lib -- -D warnings
  cargo test -q -p tether-native --locked --no-default-features --features "$features" --lib
  case ",$features," in
    *,polling,*) ;;
    *)
      if crates "$features" | grep -q '^reqwest '; then
        echo "error: reqwest is in tether-native's tree without the polling feature" >&2
        fail=1
      fi
      ;;
  esac
done
# Integration tests against the reference server: the client's (plain mode, no fallback)
# and the proxy, header and connector knobs in the smallest build and in the rustls build
# without polling; the transport's (sockets, polling, failures mapped faithfully) and the
# knobs again on the platform's TLS.
for features in "" "rustls-webpki-roots"; do
  echo "--- tether-native, no default features, features [$features]: client tests"
  cargo test -q -p tether-native --locked --no-default-features --features "$features" --test client --test network_options --test tls
done
echo "--- tether-native, native-tls and polling: transport, network option and wss:// tests"
cargo test -q -p tether-native --locked --no-default-features --features native-tls,polling --test transport --test network_options --test tls
echo "--- tether-native, all features"
cargo clippy -q -p tether-native --locked --all-features --lib -- -D warnings

# The smallest build: at most 59 crates, so that a plain WebSocket client on it (tokio
# is in already) pulls in at most 60; no crate in two versions.
count=$(crates "" | wc -l)
echo "tether-native with no default features: $count crates"
if [ "$count" -gt 59 ]; then
  echo "error: tether-native with no default features has $count crates (at most 59)" >&2
  fail=1
fi
dups=$(cargo tree -p tether-native -e normal,build --locked --no-default-features -d --depth 0 2>/dev/null | grep -v '^$' || true)
if [ -n "$dups" ]; then
  echo "error: duplicate versions in tether-native with no default features:" >&2
  echo "$dups" >&2
  fail=1
fi
exit $fail
