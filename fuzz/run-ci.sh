#!/usr/bin/env bash
# Builds every fuzz target once, then runs each for FUZZ_SECONDS (default 12)
# from its seed corpus (fuzz/seeds/<target>/), FUZZ_JOBS targets at a time
# (default: the number of cores). The seeds are copied to a temporary
# working corpus, so nothing is written into the repository. Exits non-zero
# if any target crashes, naming the crashing input; a target without seeds
# fails too.
#
#   fuzz/run-ci.sh                     # every target, 20 s each
#   FUZZ_SECONDS=60 fuzz/run-ci.sh imap_framing pop3_lines
#
# Built with the stable toolchain (RUSTC_BOOTSTRAP=1 for the sanitizer
# flags) by plain `cargo build` with the coverage flags `cargo fuzz build
# --sanitizer none` passes (so CI needs no cargo-fuzz install), at
# opt-level 1, without debug info and with 16 codegen units: a CI run is
# short, and the build is most of its cost. `cargo fuzz run` (the README's
# command) builds with cargo-fuzz's defaults (ASan, opt-level 3) for longer
# runs.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-12}"
jobs="${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"
triple="$(rustc -vV | sed -n 's/^host: //p')"

# The targets: every [[bin]] of fuzz/Cargo.toml.
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -vx pigeonpost-fuzz)
fi

# What `cargo fuzz build --sanitizer none` (cargo-fuzz 0.13) passes to rustc
# for the target triple only (build scripts stay uninstrumented).
export CARGO_ENCODED_RUSTFLAGS
CARGO_ENCODED_RUSTFLAGS=$(printf '%s\x1f' -Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares \
  --cfg fuzzing -Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
  -Cllvm-args=-sanitizer-coverage-stack-depth -Cdebug-assertions -Ccodegen-units=16)
CARGO_ENCODED_RUSTFLAGS=${CARGO_ENCODED_RUSTFLAGS%$'\x1f'}
export CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_DEBUG=0

start=$(date +%s)
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
cargo build --locked --release --target "$triple" "${bins[@]}"
echo "fuzz/run-ci.sh: built ${#targets[@]} targets in $(($(date +%s) - start)) s"

# Removed at the end unless something crashed.
work="$(mktemp -d "${TMPDIR:-/tmp}/pigeonpost-fuzz.XXXXXX")"
bin="$CARGO_TARGET_DIR/$triple/release"

# Runs one target; its log and any crash stay in $work/<target>/.
run_one() {
  local t="$1" dir="$work/$1"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  if ! compgen -G "seeds/$t/*" >/dev/null; then
    echo "no seeds in fuzz/seeds/$t" >"$dir/log"
    return 1
  fi
  cp seeds/"$t"/* "$dir/corpus/"
  # libFuzzer runs every seed as it is first, then mutates.
  "$bin/$t" "$dir/corpus" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$dir/artifacts/" \
    >"$dir/log" 2>&1
}

failed=()
pids=()
names=()
report() {
  local t="$1" rc="$2" dir="$work/$1"
  local runs
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
  if [ "$rc" -eq 0 ]; then
    printf '  %-20s ok (%s runs)\n' "$t" "${runs:-?}"
    return
  fi
  failed+=("$t")
  printf '  %-20s FAILED (exit %s)\n' "$t" "$rc"
  tail -n 40 "$dir/log" | sed 's/^/    /'
  for a in "$dir"/artifacts/*; do
    [ -e "$a" ] || continue
    echo "    crashing input: $a"
    echo "    reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $t $a"
  done
}

echo "fuzz/run-ci.sh: ${#targets[@]} targets, ${seconds} s each, ${jobs} at a time"
for t in "${targets[@]}"; do
  while [ "${#pids[@]}" -ge "$jobs" ]; do
    rc=0
    wait "${pids[0]}" || rc=$?
    report "${names[0]}" "$rc"
    pids=("${pids[@]:1}")
    names=("${names[@]:1}")
  done
  run_one "$t" &
  pids+=($!)
  names+=("$t")
done
for i in "${!pids[@]}"; do
  rc=0
  wait "${pids[$i]}" || rc=$?
  report "${names[$i]}" "$rc"
done

echo "fuzz/run-ci.sh: done in $(($(date +%s) - start)) s"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz/run-ci.sh: crashed: ${failed[*]} (logs and inputs kept in $work)" >&2
  exit 1
fi
rm -rf "$work"
