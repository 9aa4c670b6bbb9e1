#!/usr/bin/env bash
# Runs cargo-fuzz targets for N seconds each (default 30).
#
#   scripts/fuzz.sh [seconds-per-target] [target... | all]
#
# Targets: decode_message hocuspocus validate_update state_vector awareness token webhook_verify
# journal_frame (the default list), and apply_update (applies validated updates to a yrs doc: finds yrs integration
# panics; known yrs panic sites are ignored inside the target, see fuzz/README.md). `all` is the
# default list plus apply_update: scripts/test.sh runs `scripts/fuzz.sh 5 all`; for a long run
# use e.g. `scripts/fuzz.sh 600`.
#
# Seeds come from fuzz/corpus/<target> (committed, regenerate with
# crates/protocol/tests/js/make-corpus.mjs); inputs the fuzzer discovers go to fuzz/work/<target>
# (not committed); crashes to fuzz/artifacts/<target>/ (the path is printed). Turn each crash
# into a regression test (see fuzz/README.md). Exits non-zero if any target failed.
#
# cargo-fuzz needs nightly-only flags (sanitizers); on a stable toolchain RUSTC_BOOTSTRAP=1 lets
# them through. Builds use debug assertions + overflow checks (cargo-fuzz's default), so
# arithmetic overflow in yrs shows up as a crash. Limits per input: 512 MiB RSS, 2 s.
set -euo pipefail

cd "$(dirname "$0")/.."
secs="${1:-30}"
shift || true
targets=("$@")
default=(decode_message hocuspocus validate_update state_vector awareness token webhook_verify journal_frame)
if [ ${#targets[@]} -eq 0 ]; then
  targets=("${default[@]}")
elif [ "${targets[*]}" = all ]; then
  targets=("${default[@]}" apply_update)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  start=$(date +%s)
  cargo install cargo-fuzz --locked
  echo "== cargo-fuzz installed in $(($(date +%s) - start)) s" >&2
fi

export RUSTC_BOOTSTRAP=1
mkdir -p fuzz/work
# One build for every target (no target name = all of them): they share the dependency graph,
# and each `cargo fuzz run` below then finds its binary fresh. Same (default) flags as `run`.
start=$(date +%s)
if ! cargo fuzz build > fuzz/work/build.log 2>&1; then
  tail -40 fuzz/work/build.log >&2
  echo "fuzz build FAILED (full log: fuzz/work/build.log)" >&2
  exit 1
fi
echo "== fuzz targets built in $(($(date +%s) - start)) s; fuzzing ${#targets[@]} target(s) for $secs s each" >&2

failed=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/work/$t"
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
  log="fuzz/work/$t.log"
  # The first corpus dir receives new inputs; the committed seeds are only read.
  if ASAN_OPTIONS="$asan" cargo fuzz run "$t" "fuzz/work/$t" "$seeds" -- \
      -max_total_time="$secs" -rss_limit_mb=512 -timeout=2 -print_final_stats=1 "${extra[@]}" \
      > "$log" 2>&1; then
    echo "== $t: ok ($(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}') runs in $secs s)" >&2
  else
    echo "== $t: FAILED (log: $log)" >&2
    grep -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -5 >&2 || true
    # libFuzzer names the input it saved ("Test unit written to fuzz/artifacts/<t>/crash-…").
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    if [ -n "$artifact" ]; then
      echo "   crashing input: $artifact" >&2
      echo "   reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run $t $artifact" >&2
    fi
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz failures: ${failed[*]}" >&2
  exit 1
fi
echo "all fuzz targets ran ${secs}s without a crash" >&2
