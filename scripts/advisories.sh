#!/usr/bin/env bash
# The RustSec advisory check, offline: `cargo deny check advisories` against
# a snapshot of the advisory database when one is at hand, else against the
# live database when GitHub answers, else it says so (exit 0).
#
#   bash scripts/advisories.sh [SNAPSHOT_DIR]
#
# SNAPSHOT_DIR (default: $GATEKEEPER_ADVISORY_DB, else ../shared/advisory-db
# beside the checkout) holds the database as plain files
# (crates/<name>/RUSTSEC-*.md). cargo-deny reads a git clone under its
# db-path, in a folder named after the database URL, so the snapshot is
# committed into a temporary repository there and deny.toml is copied with
# that db-path.
set -euo pipefail
cd "$(dirname "$0")/.."

snapshot=${1:-${GATEKEEPER_ADVISORY_DB:-../shared/advisory-db}}
if [ -d "$snapshot/crates" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    db="$tmp/db/advisory-db-3157b0e258782691"     # cargo-deny's folder for the default URL
    mkdir -p "$tmp/db"
    cp -r "$snapshot" "$db"
    git -C "$db" init -q
    git -C "$db" add -A
    git -C "$db" -c user.name=gatekeeper -c user.email=ci@localhost commit -qm snapshot
    sed "s|^\[advisories\]|[advisories]\ndb-path = \"$tmp/db\"|" deny.toml >"$tmp/deny.toml"
    echo "advisories: RustSec snapshot at $snapshot ($(git -C "$db" ls-files | grep -c 'RUSTSEC-') advisories)"
    cargo deny --offline --config "$tmp/deny.toml" check advisories
elif timeout 15 git ls-remote -q https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
    cargo deny check advisories
else
    echo "advisories: no snapshot at $snapshot and the RustSec database (github.com) is unreachable; not checked"
fi
