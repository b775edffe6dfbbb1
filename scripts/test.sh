#!/usr/bin/env bash
# The project's test command (the README's, and CI's): installs what the
# tests need on a fresh machine, starts the local services they use, then runs
# formatting, lint and every test. Safe to run again; starts only what is down.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

ensure_toolchain() {
  command -v cargo >/dev/null || { echo "cargo is required (rustup)"; exit 1; }
  # rustfmt and clippy ship with rustup toolchains; add them if this one lacks them.
  cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
  cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
}

# PostgreSQL and Redis are started when installed but down. The DB-less core
# needs neither; the PostgreSQL and Redis suites (coming) will.
ensure_services() {
  if command -v pg_ctlcluster >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  if command -v redis-server >/dev/null && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    log "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no || true
  fi
}

ensure_toolchain
ensure_services

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

log "cargo test"
cargo test --locked --all-targets

log "benchmarks compile"
cargo bench --locked --no-run
