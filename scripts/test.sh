#!/usr/bin/env bash
# Runs every test of tidings: unit, integration (real TCP, WebSocket and HTTP), the binary's, doc
# tests, and the benchmark harness in quick mode (counts every delivery; no speed claims).
# Installs what the tests need where it is missing: Node.js and npm, the Socket.IO peer's packages.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/test.sh: cargo is missing; install Rust from https://rustup.rs" >&2
  exit 1
fi
if ! command -v npm >/dev/null 2>&1; then
  apt-get update -q && apt-get install -y -q nodejs npm
fi
(cd bench/peers/socketio && npm ci --no-audit --no-fund --silent)

cargo test --workspace --locked
cargo build --workspace --locked --bins
target_dir="${CARGO_TARGET_DIR:-target}"
"$target_dir/debug/tidings-bench" suite --quick --servers tidings,bare,socketio \
  --out "$target_dir/bench-quick.md" --command "scripts/test.sh (quick mode)"
