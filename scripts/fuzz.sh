#!/usr/bin/env bash
# Fuzzes every parser for a bounded time: bash scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 60; 0 only builds and minimises); TARGET names (default all, in order):
# path host credential hmac_header api_key file model_body. Installs cargo-fuzz when
# missing, builds the targets once (stable Rust: libFuzzer without a
# sanitizer, debug assertions and overflow checks on — fuzz/README.md says
# why), runs them one after another (one fuzzer process at a time), then
# minimises each corpus in place under fuzz/corpus/<target>/.
#
# Exit status: 0 when no target failed; 1 when one found a crash, a property
# violation, a timeout or an out-of-memory — the input is printed and kept in
# fuzz/artifacts/<target>/. Replay it with
#   cargo fuzz run --sanitizer none --debug-assertions TARGET FILE
# and add it to tests/fuzz_regressions.rs once understood.
#
# Environment: FUZZ_NO_CMIN=1 keeps the corpora as the run left them.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${1:-60}
shift || true
ALL_TARGETS=(path host credential hmac_header api_key file model_body)
TARGETS=("$@")
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")
# The cargo-fuzz release these scripts were written against.
CARGO_FUZZ_VERSION=0.13.2
# Same flags for every build, run and minimisation, so nothing rebuilds.
FLAGS=(--sanitizer none --debug-assertions)
LOGS=fuzz/target/logs

log() { printf '\n==> %s\n' "$*"; }
die() { printf 'fuzz.sh: %s\n' "$*" >&2; exit 2; }

[[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || die "SECONDS must be a whole number, not '$SECONDS_PER_TARGET'"
for t in "${TARGETS[@]}"; do
  [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || die "unknown target '$t' (${ALL_TARGETS[*]})"
done

# Longest input per target: room for the longest seed, no more.
max_len() {
  case "$1" in
    host) echo 512 ;;
    api_key) echo 1024 ;;
    file) echo 16384 ;;
    *) echo 2048 ;;
  esac
}

ensure_cargo_fuzz() {
  command -v cargo >/dev/null || die "cargo is required (rustup)"
  if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
  fi
  # libFuzzer itself is C++, built by libfuzzer-sys.
  command -v c++ >/dev/null || die "a C++ compiler is required (apt-get install g++)"
}

ensure_seeds() {
  local t=$1
  if [ -z "$(ls -A "fuzz/corpus/$t" 2>/dev/null)" ]; then
    log "$t: seeding fuzz/corpus/$t"
    python3 fuzz/seeds.py "$t"
  fi
}

# Runs one target; prints its final statistics, or its failing input.
run_target() {
  local t=$1 log_file="$LOGS/$1.log" marker
  marker=$(mktemp)
  log "$t: fuzzing for ${SECONDS_PER_TARGET}s"
  local rc=0
  cargo fuzz run "${FLAGS[@]}" "$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -max_len="$(max_len "$t")" -print_final_stats=1 >"$log_file" 2>&1 || rc=$?
  local stats
  stats=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log_file" | tail -n1 || true)
  echo "${stats:-no final statistics (see $log_file)}"
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log_file" || true
  if [ "$rc" -ne 0 ]; then
    echo "FAILED (exit $rc); the end of $log_file:"
    grep -E -A12 'panicked at|ERROR: libFuzzer' "$log_file" | head -n 40 || tail -n 40 "$log_file"
    local found
    found=$(find "fuzz/artifacts/$t" -type f -newer "$marker" 2>/dev/null || true)
    for input in $found; do echo "failing input: $input"; done
    [ -n "$found" ] || echo "failing input: none written (see $log_file)"
    rm -f "$marker"
    return 1
  fi
  rm -f "$marker"
}

# Keeps the seeds, then the fewest other inputs that cover every edge and
# hit-count bucket the corpus covers (libFuzzer's set-cover merge); if that is
# still over MAX_CORPUS files, edges alone.
MAX_CORPUS=300
minimise() {
  local t=$1 dir="fuzz/corpus/$1" bin before after
  bin="fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release/$t"
  before=$(ls "$dir" | wc -l)
  for counters in 1 0; do
    rm -rf "$dir.min" && mkdir "$dir.min"
    find "$dir" -maxdepth 1 -name 'seed-*' -exec cp {} "$dir.min/" \;
    "$bin" -set_cover_merge=1 -use_counters="$counters" -max_len="$(max_len "$t")" \
      "$dir.min" "$dir" >"$LOGS/$t.cmin.log" 2>&1 \
      || { echo "$t: minimising failed (see $LOGS/$t.cmin.log); corpus left as is"; rm -rf "$dir.min"; return 0; }
    [ "$(ls "$dir.min" | wc -l)" -le "$MAX_CORPUS" ] && break
  done
  rm -rf "$dir" && mv "$dir.min" "$dir"
  after=$(ls "$dir" | wc -l)
  echo "$t: corpus minimised from $before to $after files ($(du -sb "$dir" | cut -f1) bytes)"
}

ensure_cargo_fuzz
mkdir -p "$LOGS"
for t in "${TARGETS[@]}"; do ensure_seeds "$t"; done
log "building the fuzz targets (the first build takes minutes)"
cargo fuzz build "${FLAGS[@]}"

failed=()
if [ "$SECONDS_PER_TARGET" -gt 0 ]; then
  for t in "${TARGETS[@]}"; do
    run_target "$t" || failed+=("$t")
  done
fi

if [ -z "${FUZZ_NO_CMIN:-}" ]; then
  log "minimising the corpora"
  for t in "${TARGETS[@]}"; do minimise "$t"; done
fi

if [ "${#failed[@]}" -gt 0 ]; then
  log "FAILED: ${failed[*]} (inputs under fuzz/artifacts/)"
  exit 1
fi
if [ "$SECONDS_PER_TARGET" -gt 0 ]; then
  log "no failure in ${TARGETS[*]} (${SECONDS_PER_TARGET}s each)"
else
  log "built; corpora of ${TARGETS[*]} minimised"
fi
