#!/usr/bin/env bash
# Fuzzes every decoder and the topic parser for a short, bounded time: the test
# command's fuzz step (scripts/test.sh runs it), also usable on its own.
#
#   scripts/fuzz.sh                 every target, FUZZ_SECONDS each
#   FUZZ_SECONDS=600 scripts/fuzz.sh senml_cbor tasmota
#
# Environment:
#   FUZZ_SECONDS  fuzzing time per target, in seconds (default 20)
#   FUZZ_JOBS     targets fuzzed at the same time (default: CPU count, at most 2)
#   FUZZ_MAX_LEN  largest generated input, in bytes (default 8192)
#
# Installs cargo-fuzz (and the nightly toolchain) when missing, builds every
# target, then runs each one seeded with fuzz/seeds/<target> (real examples:
# RFC 8428 vectors, firmware packs, Tasmota/UltraLight messages) and
# tests/nasty/<format> (the nasty corpus, crash reproducers included), with the
# dictionary fuzz/dict/<target>.dict. New coverage accumulates in
# fuzz/corpus/<target> (git-ignored) across runs.
#
# Exits non-zero when a target crashes (panic, timeout, out-of-memory) and
# prints the reproducer's path and the command that replays it. A crash input
# becomes a regression case by copying it into tests/nasty/<format>/, where
# `cargo test -p tests --test nasty_inputs` runs it on every test run.
# Targets, oracles and conventions: fuzz/README.md.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly ROOT=$PWD

FUZZ_SECONDS=${FUZZ_SECONDS:-20}
FUZZ_MAX_LEN=${FUZZ_MAX_LEN:-8192}
cpus=$(nproc 2>/dev/null || echo 1)
FUZZ_JOBS=${FUZZ_JOBS:-$((cpus < 2 ? cpus : 2))}
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

note() { printf '  - %s\n' "$*"; }
die() { printf 'fuzz.sh: error: %s\n' "$*" >&2; exit 1; }

# The nasty-corpus folders that hold inputs of a target's format.
nasty_dirs_of() {
    case "$1" in
        ingest_senml) echo tests/nasty/senml-cbor tests/nasty/senml-json ;;
        senml_roundtrip) ;;
        *) echo "tests/nasty/${1//_/-}" ;;
    esac
}

# --- tools ---------------------------------------------------------------------

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    note "installing the nightly toolchain (cargo-fuzz needs it)"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    note "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
note "$(cargo fuzz --version), $(rustup run nightly rustc --version)"

# --- build ---------------------------------------------------------------------

# No sanitizer: the decoders are safe Rust, where libFuzzer's panic detection and
# the RSS/malloc limits below catch what matters (panics, overflows in debug
# assertions, hangs, unbounded allocation); AddressSanitizer would double the
# build time and halve the executions per second. cargo-fuzz keeps debug
# assertions on by default, so integer overflow panics too.
cd fuzz
note "building the fuzz targets"
cargo +nightly fuzz build --sanitizer none
host=$(rustup run nightly rustc -vV | sed -n 's/^host: //p')
readonly BIN_DIR=$ROOT/fuzz/target/$host/release

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
[ "${#targets[@]}" -gt 0 ] || die "no fuzz targets found"
cd "$ROOT"

# --- run -----------------------------------------------------------------------

run_target() {
    local t=$1 log=$2
    local corpus=fuzz/corpus/$t artifacts=fuzz/artifacts/$t
    mkdir -p "$corpus" "$artifacts"
    local args=(
        "-artifact_prefix=$artifacts/"
        "-max_total_time=$FUZZ_SECONDS"
        "-max_len=$FUZZ_MAX_LEN"
        # A single input may take 10 s (a hang otherwise), 1 GiB in all and
        # 64 MiB in one allocation: more from at most 8 KiB is unbounded growth.
        "-timeout=10"
        "-rss_limit_mb=1024"
        "-malloc_limit_mb=64"
        "-print_final_stats=1"
    )
    [ -f "fuzz/dict/$t.dict" ] && args+=("-dict=fuzz/dict/$t.dict")
    local dirs=("$corpus")
    [ -d "fuzz/seeds/$t" ] && dirs+=("fuzz/seeds/$t")
    local nasty
    for nasty in $(nasty_dirs_of "$t"); do
        [ -d "$nasty" ] && dirs+=("$nasty")
    done
    "$BIN_DIR/$t" "${args[@]}" "${dirs[@]}" >"$log" 2>&1
}

report() {
    local t=$1 log=$2 rc=$3
    local runs
    runs=$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" | tail -n1 || true)
    if [ "$rc" -eq 0 ]; then
        printf '  ok      %-18s %s\n' "$t" "${runs:-finished}"
        return 0
    fi
    local repro
    repro=$(grep -o 'Test unit written to [^ ]*' "$log" | tail -n1 | sed 's/^Test unit written to //' || true)
    printf '  CRASH   %-18s exit %s\n' "$t" "$rc"
    # The panic message and the first frames: enough to see what broke.
    grep -m1 -A12 -E "panicked at|ERROR: libFuzzer|SUMMARY|==ERROR" "$log" | sed 's/^/          /' || tail -n 20 "$log"
    if [ -n "$repro" ]; then
        printf '          reproducer: %s\n' "$ROOT/$repro"
        printf '          replay:     (cd fuzz && cargo +nightly fuzz run --sanitizer none %s %s)\n' "$t" "${repro#fuzz/}"
    fi
    printf '          full log:   %s\n' "$ROOT/$log"
    return 1
}

printf 'fuzzing %d targets, %ss each, %d at a time\n' "${#targets[@]}" "$FUZZ_SECONDS" "$FUZZ_JOBS"
for t in "${targets[@]}"; do
    [ -x "$BIN_DIR/$t" ] || die "unknown fuzz target '$t' (see: cd fuzz && cargo +nightly fuzz list)"
done

declare -A pid_of=()
failed=()
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

# Waits for one running target and reports it.
reap_one() {
    local done_pid rc=0
    wait -n -p done_pid "${pids[@]}" || rc=$?
    local t=${pid_of[$done_pid]}
    report "$t" "fuzz/artifacts/$t/fuzz.log" "$rc" || failed+=("$t")
    local keep=()
    for p in "${pids[@]}"; do [ "$p" = "$done_pid" ] || keep+=("$p"); done
    pids=("${keep[@]}")
}

for t in "${targets[@]}"; do
    while [ "${#pids[@]}" -ge "$FUZZ_JOBS" ]; do reap_one; done
    mkdir -p "fuzz/artifacts/$t"
    run_target "$t" "fuzz/artifacts/$t/fuzz.log" &
    pid_of[$!]=$t
    pids+=("$!")
done
while [ "${#pids[@]}" -gt 0 ]; do reap_one; done
trap - EXIT INT TERM

if [ "${#failed[@]}" -gt 0 ]; then
    printf 'fuzz.sh: %d target(s) crashed: %s\n' "${#failed[@]}" "${failed[*]}"
    exit 1
fi
printf 'fuzz.sh: all %d targets ran %ss without a crash\n' "${#targets[@]}" "$FUZZ_SECONDS"
