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

# PostgreSQL (the integration tests need it) and Redis (the coming Redis
# suites) are installed from Debian when missing and started when down.
apt_install() {
  [ "$(id -u)" = 0 ] || { echo "need root to install $*"; exit 1; }
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if ! command -v pg_ctlcluster >/dev/null; then
    log "installing PostgreSQL"
    apt_install postgresql
    # A fresh cluster asks for passwords on loopback; the tests connect as
    # postgres over 127.0.0.1 like the development machines (trust).
    local hba
    hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -n1)
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    log "starting PostgreSQL"
    local version
    version=$(ls /etc/postgresql | head -n1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster "$version" main restart
  fi
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && return 0; sleep 0.2; done
  echo "PostgreSQL is not reachable on 127.0.0.1:5432"; exit 1
}

ensure_redis() {
  command -v redis-server >/dev/null || { log "installing Redis"; apt_install redis-server; }
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    log "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no
  fi
}

# cargo-deny, pinned, built from crates.io when missing (once per machine).
CARGO_DENY_VERSION=0.20.2
ensure_cargo_deny() {
  if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $CARGO_DENY_VERSION" ]; then
    log "installing cargo-deny $CARGO_DENY_VERSION"
    cargo install --locked --quiet cargo-deny --version "$CARGO_DENY_VERSION"
  fi
}

ensure_services() {
  ensure_postgres
  ensure_redis
}

ensure_toolchain
ensure_services

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

log "dependencies: licences, bans, sources (cargo deny; deny.toml)"
ensure_cargo_deny
cargo deny check licenses bans sources
log "dependencies: RustSec advisories (offline, against ../shared/advisory-db)"
bash scripts/advisories.sh

log "layers: every import points down, no module cycle, no Result<_, String> (tests/layers.rs)"
cargo test --locked --test layers

log "cargo test"
cargo test --locked --all-targets

log "benchmarks compile"
cargo bench --locked --no-run

log "end to end through real nginx (scripts/e2e.sh)"
bash scripts/e2e.sh

log "the adversarial suite again, gatekeeper without Redis (in-process limits and nonces)"
E2E_REDIS=0 bash scripts/e2e.sh e2e/test_attack_site.py e2e/test_attack_wire.py \
    e2e/test_attack_models.py e2e/test_attack_credentials.py

log "nginx outage smoke: gatekeeper's own 503 and gatekeeper down (e2e/run_nginx_smoke.sh)"
bash e2e/run_nginx_smoke.sh
