#!/usr/bin/env bash
# The project's test command (the one the README gives, and what .ci/run runs).
#
# Works on a fresh Debian machine that has only rustup and cargo: it installs
# what the tests need (Mosquitto, VictoriaMetrics, Rust targets and
# components) when missing, then runs every check in order and stops at the
# first failure. Non-interactive: safe under CI=true with no stdin.
#
# Each step is one function named step_*; STEPS below lists them in order.
# To add a step (fuzzing, the browser test, ...), write a function and list it
# in STEPS, at the place marked "plug in".

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export DEBIAN_FRONTEND=noninteractive
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

readonly THUMB=thumbv7em-none-eabihf
readonly RISCV=riscv32imc-unknown-none-elf

# --- helpers -----------------------------------------------------------------

banner() { printf '\n========== %s ==========\n' "$*"; }
note() { printf '  - %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, else through sudo
# without a password prompt (there is no stdin to answer one).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        die "need root to run: $* (run as root, or install the packages by hand)"
    fi
}

pkg_installed() { dpkg -s "$1" >/dev/null 2>&1; }

# Wait for a dpkg lock held by another apt run (e.g. unattended upgrades on a
# fresh machine) instead of failing at once.
readonly APT_OPTS=(-q -o DPkg::Lock::Timeout=300)
APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        note "apt-get update"
        as_root apt-get "${APT_OPTS[@]}" update </dev/null
        APT_UPDATED=1
    fi
    note "apt-get install -y --no-install-recommends $*"
    as_root apt-get "${APT_OPTS[@]}" install -y --no-install-recommends "$@" </dev/null
}

# Whether something listens on a local TCP port (no ss/netstat needed).
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The Debian package starts a system-wide broker on 1883. The tests use their
# own brokers on free ports, but a stray system broker only gets in the way of
# someone running the demo, so stop the one the install just started.
stop_auto_started_mosquitto() {
    port_in_use 1883 || return 0
    note "stopping the mosquitto service the package started on port 1883"
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
        as_root systemctl stop mosquitto || true
    elif command -v service >/dev/null 2>&1; then
        as_root service mosquitto stop >/dev/null 2>&1 || true
    fi
    port_in_use 1883 && note "port 1883 is still taken (harmless: tests use free ports)"
    return 0
}

# --- steps -------------------------------------------------------------------

step_system_packages() {
    local missing=()
    if [ ! -x /usr/sbin/mosquitto ] || ! pkg_installed mosquitto; then missing+=(mosquitto); fi
    if [ ! -x /usr/bin/victoria-metrics ] || ! pkg_installed victoria-metrics; then missing+=(victoria-metrics); fi
    # The TLS self-test makes its certificate with the openssl CLI.
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    # Cargo needs a C toolchain to link, and bundled C libraries need it to build.
    command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
    # The firmware-in-the-loop tests run the Cortex-M image under QEMU (mps2-an386).
    command -v qemu-system-arm >/dev/null 2>&1 || missing+=(qemu-system-arm)
    if [ "${#missing[@]}" -eq 0 ]; then
        note "mosquitto, victoria-metrics, openssl, cc, qemu-system-arm: already installed"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
    apt_install "${missing[@]}"
    case " ${missing[*]} " in *" mosquitto "*) stop_auto_started_mosquitto ;; esac
}

step_rust_toolchain() {
    command -v rustup >/dev/null 2>&1 || die "rustup not found: install Rust with https://rustup.rs"
    # Both commands are no-ops when everything is already there.
    rustup target add "$THUMB" "$RISCV"
    rustup component add rustfmt clippy llvm-tools
}

step_fmt() { cargo fmt --all -- --check; }

# The committed dashboard build (embedded by the gateway) must be what its source builds
# to: rebuilt into a temp dir and compared with gateway/dashboard/dist.
step_dashboard_dist() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        command -v apt-get >/dev/null 2>&1 || die "node/npm missing and no apt-get: install Node.js 20+"
        apt_install nodejs npm
    fi
    bash scripts/check-dashboard.sh
}

step_clippy() { cargo clippy --workspace --all-targets -- -D warnings; }

step_test() { cargo test --workspace; }

step_schemas_no_std() {
    cargo build -p schemas --no-default-features --target "$THUMB"
    cargo build -p schemas --no-default-features --target "$RISCV"
}

step_firmware_no_std() {
    cargo build -p firmware --no-default-features --target "$THUMB"
}

step_boards() {
    if [ -f scripts/build-boards.sh ]; then
        bash scripts/build-boards.sh
    else
        note "scripts/build-boards.sh not present: no board images to build"
    fi
}

# plug in: fuzzing. Runs scripts/fuzz.sh once it exists.
step_fuzz() {
    if [ -f scripts/fuzz.sh ]; then
        bash scripts/fuzz.sh
    else
        note "scripts/fuzz.sh not present: no fuzzing step yet"
    fi
}

# plug in: browser test of the dashboard. Runs scripts/browser-test.sh once it exists.
step_browser() {
    if [ -f scripts/browser-test.sh ]; then
        bash scripts/browser-test.sh
    else
        note "scripts/browser-test.sh not present: no browser test yet"
    fi
}

STEPS=(
    step_system_packages
    step_rust_toolchain
    step_fmt
    step_dashboard_dist
    step_clippy
    step_test
    step_schemas_no_std
    step_firmware_no_std
    step_boards
    # plug in: later steps go here, in the order they should run.
    step_fuzz
    step_browser
)

# --- runner ------------------------------------------------------------------

fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

SUMMARY=()
total_start=$SECONDS
count=${#STEPS[@]}
i=0
for step in "${STEPS[@]}"; do
    i=$((i + 1))
    name=${step#step_}
    banner "[$i/$count] $name"
    start=$SECONDS
    # The step runs in a subshell with `set -e` in force, so its first failing
    # command ends it. Not under `if`: bash ignores `set -e` in a condition.
    set +e
    ( set -euo pipefail; "$step" )
    rc=$?
    set -e
    if [ "$rc" -eq 0 ]; then
        took=$((SECONDS - start))
        SUMMARY+=("$(printf '  ok      %-20s %s' "$name" "$(fmt_secs "$took")")")
        printf -- '---------- %s: ok in %s\n' "$name" "$(fmt_secs "$took")"
    else
        took=$((SECONDS - start))
        SUMMARY+=("$(printf '  FAILED  %-20s %s' "$name" "$(fmt_secs "$took")")")
        banner "FAILED: step $name (exit $rc) after $(fmt_secs "$took")"
        printf '%s\n' "${SUMMARY[@]}"
        printf 'test.sh: FAILED at step %s (%d of %d) after %s\n' \
            "$name" "$i" "$count" "$(fmt_secs $((SECONDS - total_start)))"
        exit "$rc"
    fi
done

banner "summary"
printf '%s\n' "${SUMMARY[@]}"
printf 'test.sh: all %d steps passed in %s\n' "$count" "$(fmt_secs $((SECONDS - total_start)))"
