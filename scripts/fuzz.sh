#!/usr/bin/env bash
# Runs every cargo-fuzz target for N seconds each (default 30).
#
#   scripts/fuzz.sh [seconds-per-target] [target...]
#
# Targets: decode_message validate_update state_vector awareness token webhook_verify (the
# default list), and
# apply_update (applies validated updates to a yrs doc: finds yrs integration panics; run it by
# name; known yrs panic sites are ignored inside the target, see fuzz/README.md). Seeds come from fuzz/corpus/<target> (committed, regenerate with
# crates/protocol/tests/js/make-corpus.mjs); inputs the fuzzer discovers go to
# fuzz/work/<target> (not committed); crashes to fuzz/artifacts/<target>/. Turn each crash into
# a file under crates/protocol/tests/data/fuzz-regressions/ (see tests/hostile.rs).
#
# cargo-fuzz needs nightly-only flags (sanitizers); on a stable toolchain RUSTC_BOOTSTRAP=1 lets
# them through. Builds use debug assertions + overflow checks (cargo-fuzz's default), so
# arithmetic overflow in yrs shows up as a crash. Limits per input: 512 MiB RSS, 2 s.
set -euo pipefail

cd "$(dirname "$0")/.."
secs="${1:-30}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(decode_message validate_update state_vector awareness token webhook_verify)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
failed=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/work/$t"
  start=$(date +%s)
  cargo fuzz build "$t" >/dev/null 2>&1 || cargo fuzz build "$t"
  built=$(date +%s)
  echo "== $t: built in $((built - start)) s, fuzzing for $secs s" >&2
  extra=()
  asan="${ASAN_OPTIONS:-}"
  seeds="fuzz/corpus/$t"
  if [ "$t" = apply_update ]; then
    seeds=fuzz/corpus/validate_update
    # yrs 0.28.1 leaks every doc that contains a subdocument (a parent <-> subdoc reference
    # cycle; tests/yrs_subdoc_leak.rs). Leak reports would stop this target at once, and it is
    # here to find panics.
    extra=(-detect_leaks=0)
    asan="detect_leaks=0${asan:+:$asan}"
  fi
  # The first corpus dir receives new inputs; the committed seeds are only read.
  if ASAN_OPTIONS="$asan" cargo fuzz run "$t" "fuzz/work/$t" "$seeds" -- \
      -max_total_time="$secs" -rss_limit_mb=512 -timeout=2 -print_final_stats=1 "${extra[@]}" \
      > "fuzz/work/$t.log" 2>&1; then
    echo "== $t: ok ($(grep -E '^stat::number_of_executed_units' "fuzz/work/$t.log" | awk '{print $2}') runs)" >&2
  else
    echo "== $t: FAILED, see fuzz/work/$t.log and fuzz/artifacts/$t/" >&2
    grep -E 'panicked at|ERROR: libFuzzer|SUMMARY' "fuzz/work/$t.log" | head -5 >&2 || true
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz failures: ${failed[*]}" >&2
  exit 1
fi
echo "all fuzz targets ran ${secs}s without a crash" >&2
