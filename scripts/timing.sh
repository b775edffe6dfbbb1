#!/usr/bin/env bash
# dudect-style constant-time check of what gatekeeper does with a presented
# secret (benches/timing.rs): API key classification and digest look-up, the
# Basic verifier's cache look-up, Digest::ct_eq (subtle), HMAC signature
# verification. Two classes of wrong guesses — matching the secret up to its
# last few bytes, or differing at its first — interleaved at random, at least
# 100,000 samples per class, Welch's t-test on all samples and on dudect's
# 100 percentile croppings. Prints |t| against 4.5 (the classic cut-off) and
# 10 (dudect's "definitely leaking"); exits non-zero when any target's |t|
# exceeds the threshold (10 unless --threshold says otherwise).
#
#   bash scripts/timing.sh                      # judged run (release build)
#   bash scripts/timing.sh --samples 400000     # more power
#   bash scripts/timing.sh --threshold 4.5      # the classic cut-off
#   bash scripts/timing.sh --only hmac          # one target
#   bash scripts/timing.sh --bcrypt             # also bcrypt itself (slow: 3,000 per class)
#   bash scripts/timing.sh --selftest           # shows the test sees a leak: a naive
#                                               # `==` on 4 KB must be flagged, subtle not
#
# Timing is noisy on a shared machine; interleaving the classes at random
# keeps load from biasing one of them, and a run takes seconds. Not part of
# scripts/test.sh (`cargo test --all-targets` only smoke-runs it, unjudged).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --locked --bench timing -- "$@"
